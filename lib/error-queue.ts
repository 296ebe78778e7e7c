// Reading MSG_ZEROCOPY completions from a socket's error queue (recvmsg MSG_ERRQUEUE,
// native/socket.cc): 64 entries per native call, until the queue is empty.
import { native } from './native'

const { SO_EE_ORIGIN_ZEROCOPY, SO_EE_CODE_ZEROCOPY_COPIED } = native.constants
const ENTRIES = 64

/** One completion: the inclusive id range [lo, hi] (mod 2^32), and whether the kernel copied. */
export type OnCompletion = (lo: number, hi: number, copied: boolean) => void

export class ErrorQueueReader {
  private readonly words = new Uint32Array(4 * ENTRIES)

  /**
   * Reads the whole error queue of `fd`, calling `onCompletion` for every MSG_ZEROCOPY
   * notification (other entries, such as ICMP errors under IP_RECVERR, are skipped).
   * Returns the notifications read.
   */
  drain(fd: number, onCompletion: OnCompletion): number {
    let read = 0
    for (;;) {
      const n = native.readErrorQueue(fd, this.words)
      if (n <= 0) return read
      for (let i = 0; i < n; i++) {
        const head = this.words[4 * i]!
        if ((head & 0xff) !== SO_EE_ORIGIN_ZEROCOPY) continue
        read++
        onCompletion(this.words[4 * i + 2]!, this.words[4 * i + 3]!, ((head >>> 8) & SO_EE_CODE_ZEROCOPY_COPIED) !== 0)
      }
      if (n < ENTRIES) return read
    }
  }
}
