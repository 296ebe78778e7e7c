// Close barriers of a send channel (lib/send-channel.ts): close() waits for every
// request queued before it, by whichever holder, and for none queued after it.
import type { SendRequest } from './send-requests'

export class SettleBarriers {
  /** Requests queued and not yet settled, each with its queue number. */
  private readonly unsettled = new Map<SendRequest, number>()
  private enqueued = 0
  private readonly waiting: Array<{ upTo: number; resolve: () => void }> = []

  /** The requests queued and not yet settled. */
  get size(): number {
    return this.unsettled.size
  }

  queued(req: SendRequest): void {
    this.unsettled.set(req, ++this.enqueued)
  }

  /** Resolves once every request queued so far has settled. */
  barrier(): Promise<void> {
    const upTo = this.enqueued
    if (!this.pendingUpTo(upTo)) return Promise.resolve()
    return new Promise((resolve) => this.waiting.push({ upTo, resolve }))
  }

  /** `req` settles: it leaves the count, `tell` tells its holder, then the barriers it held up resolve. */
  settled(req: SendRequest, tell: () => void): void {
    this.unsettled.delete(req)
    tell()
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const b = this.waiting[i]!
      if (this.pendingUpTo(b.upTo)) continue
      this.waiting.splice(i, 1)
      b.resolve()
    }
  }

  private pendingUpTo(upTo: number): boolean {
    for (const n of this.unsettled.values()) if (n <= upTo) return true
    return false
  }
}
