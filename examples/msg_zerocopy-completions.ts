// The msg_zerocopy selftest's look at each completion notification (its
// do_recv_completion), shared by the example's two senders: the ZeroCopySocket one
// (through ZeroCopyOptions.onNotification) and the corked one on the raw layer
// (examples/msg_zerocopy-cork.ts). Same lines, same rules, same order:
//   gap: <lo>..<hi> does not append to <next>       -v, a range that does not follow the last
//   serr: ee_code: <zerocopy> != expected <-Z>      -Z given and the kernel said otherwise
//   completed: <range> (h=<hi> l=<lo>)              -v -v, every notification

/** What the selftest keeps across notifications. */
export class CompletionCheck {
  /** Completed ids: the sum of the ranges (the selftest's `completions`, printed as txc=). */
  completions = 0
  /** 1 once a notification disagreed with -Z (the selftest's exit code). */
  exitcode = 0
  /** The id the next range should start at (the selftest's next_completion). */
  private next = 0

  /**
   * @param expectZerocopy - -Z (1: not copied, 0: copied; -1 not given). On a mismatch
   *   it becomes what the kernel said, so the line is printed once per change.
   * @param verbose - -v's count.
   * @param gapsMeanDrops - whether a range that does not follow the last one is worth a
   *   `gap:` line: true for MSG_ZEROCOPY ids; io_uring numbers failed sends too, so
   *   there a jump is not a lost notification.
   */
  constructor(
    public expectZerocopy: -1 | 0 | 1,
    private readonly verbose: number,
    public gapsMeanDrops = true,
  ) {}

  /** One notification: the inclusive id range [lo, hi] (mod 2^32) and whether the kernel copied. */
  readonly notification = (lo: number, hi: number, copied: boolean): void => {
    const range = ((hi - lo) >>> 0) + 1
    if (this.verbose > 0 && this.gapsMeanDrops && lo !== this.next) {
      console.error(`gap: ${lo}..${hi} does not append to ${this.next}`)
    }
    this.next = (hi + 1) >>> 0
    const zerocopy = copied ? 0 : 1
    if (this.expectZerocopy !== -1 && this.expectZerocopy !== zerocopy) {
      console.error(`serr: ee_code: ${zerocopy} != expected ${this.expectZerocopy}`)
      this.exitcode = 1
      this.expectZerocopy = zerocopy
    }
    if (this.verbose >= 2) console.error(`completed: ${range} (h=${hi} l=${lo})`)
    this.completions += range
  }
}

/** The sender's last line, as the selftest prints it; zc=y only with -z and -Z 1 held. */
export function txLine(packets: number, bytes: number, completions: number, zeroCopied: boolean): string {
  return `tx=${packets} (${Math.floor(bytes / (1 << 20))} MB) txc=${completions} zc=${zeroCopied ? 'y' : 'n'}`
}
