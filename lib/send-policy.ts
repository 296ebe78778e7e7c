// When a socket sends with MSG_ZEROCOPY and when it copies. The kernel copies anyway
// whenever the data is delivered locally (loopback, a veth into a namespace that
// receives it) and says so in each completion; a deferred copy costs more than a plain
// send, so after `copiedThreshold` consecutive copied ids the socket switches to plain
// sends, as the kernel documentation advises. Sockets without SO_ZEROCOPY copy from
// the start. Every copy made where zero-copy was asked for names its reason.
import type { SendRequest } from './send-requests'

export class SendPolicy {
  mode: 'zerocopy' | 'copy' = 'zerocopy'
  fallbackReason: string | undefined
  /** SO_ZEROCOPY is on (false where the socket type or libuv rules it out). */
  zeroCopyEnabled = true
  private consecutiveCopied = 0

  constructor(public copiedThreshold: number) {}

  /** The socket cannot do MSG_ZEROCOPY at all. */
  disable(reason: string): void {
    this.zeroCopyEnabled = false
    this.switchToCopy(reason)
  }

  /**
   * Whether `req`'s next bytes go with MSG_ZEROCOPY. File mappings keep it under the
   * copy mode: measured here (1 GiB cached file, loopback), mapping + MSG_ZEROCOPY beats
   * mapping + copying send even where the kernel reports a deferred copy.
   */
  zeroCopyFor(req: SendRequest): boolean {
    if (!this.zeroCopyEnabled || req.fallback !== undefined || !req.zeroCopyAllowed()) return false
    return this.mode === 'zerocopy' || req.kind === 'file'
  }

  /** `ids` more ids completed, copied or not. */
  completed(ids: number, copied: boolean): void {
    this.consecutiveCopied = copied ? this.consecutiveCopied + ids : 0
    if (this.consecutiveCopied >= this.copiedThreshold) {
      this.switchToCopy(
        `the kernel copied the last ${this.consecutiveCopied} zero-copy sends (local delivery such as loopback copies); sending plain copies`,
      )
    }
  }

  private switchToCopy(reason: string): void {
    if (this.mode === 'copy') return
    this.mode = 'copy'
    this.fallbackReason = reason
  }
}
