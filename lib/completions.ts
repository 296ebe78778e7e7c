// MSG_ZEROCOPY id bookkeeping, free of I/O so it can be tested on its own.
//
// The kernel gives every successful MSG_ZEROCOPY send call on a socket the next 32-bit
// id (a short send takes one too; a failed call or one that sent nothing takes none)
// and later reports completed ids as inclusive ranges [lo, hi]. Ranges wrap at 2^32,
// may be coalesced over many sends, and may arrive out of order or with gaps.

/** What one completed id tells its owner. */
export type OnIdComplete<T> = (owner: T, copied: boolean) => void

export class CompletionTracker<T> {
  /** The id the kernel will give the next successful MSG_ZEROCOPY send call. */
  private next: number
  private readonly owners = new Map<number, T>()
  /** Completed ids that matched no outstanding send (never expected; counted for stats). */
  unknown = 0

  constructor(firstId = 0) {
    this.next = firstId >>> 0
  }

  /** The ids that are sent and not yet completed. */
  get outstanding(): number {
    return this.owners.size
  }

  /** The id the next successful send will take. */
  get nextId(): number {
    return this.next
  }

  /** Records that a successful MSG_ZEROCOPY send call took the next id for `owner`. */
  take(owner: T): number {
    const id = this.next
    this.owners.set(id, owner)
    this.next = (id + 1) >>> 0
    return id
  }

  /**
   * Records that the send numbered `id` belongs to `owner`, for an engine that numbers
   * its sends itself (io_uring: a sequence number per SQE, failed ones included).
   */
  takeAt(id: number, owner: T): void {
    this.owners.set(id >>> 0, owner)
    this.next = (id + 1) >>> 0
  }

  /** The owners of the outstanding ids (one entry per id). */
  pendingOwners(): IterableIterator<T> {
    return this.owners.values()
  }

  /**
   * The kernel holds no page of any outstanding send any more (the socket was closed
   * abortively): calls `onId` once for every outstanding id, oldest first.
   */
  releaseAll(onId: (owner: T) => void): void {
    const owners = [...this.owners.values()]
    this.owners.clear()
    for (const owner of owners) onId(owner)
  }

  /**
   * Applies one completion range [lo, hi] (inclusive, modulo 2^32): calls `onId` once
   * for every outstanding id in it. Returns how many ids it completed.
   */
  complete(lo: number, hi: number, copied: boolean, onId: OnIdComplete<T>): number {
    const count = ((hi - lo) >>> 0) + 1
    let done = 0
    // A range never spans more ids than are outstanding; walking the map instead of a
    // corrupt huge range keeps a bad notification from stalling the event loop.
    if (count > this.owners.size) {
      for (const [id, owner] of [...this.owners]) {
        if (((id - lo) >>> 0) < count) {
          this.owners.delete(id)
          onId(owner, copied)
          done++
        }
      }
      this.unknown += count - done
      return done
    }
    for (let i = 0; i < count; i++) {
      const id = (lo + i) >>> 0
      const owner = this.owners.get(id)
      if (owner === undefined) {
        this.unknown++
        continue
      }
      this.owners.delete(id)
      onId(owner, copied)
      done++
    }
    return done
  }
}
