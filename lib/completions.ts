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
  /**
   * Owners by id, in a ring indexed by id modulo its length (a power of two, so the
   * index survives the 2^32 wrap). Every outstanding id lies in [base, next): `base`
   * is the oldest id not yet completed, or `next` when none is. Ids the engine skipped
   * (a failed io_uring SQE) are empty slots. A ring, not a Map: one array store per
   * send and one load per completion, which matters at a million datagrams a second.
   */
  private slots: Array<T | undefined> = new Array<T | undefined>(64).fill(undefined)
  private mask = 63
  private base: number
  private count = 0
  /** Completed ids that matched no outstanding send (never expected; counted for stats). */
  unknown = 0

  constructor(firstId = 0) {
    this.next = firstId >>> 0
    this.base = this.next
  }

  /** The ids that are sent and not yet completed. */
  get outstanding(): number {
    return this.count
  }

  /** The id the next successful send will take. */
  get nextId(): number {
    return this.next
  }

  /** Records that a successful MSG_ZEROCOPY send call took the next id for `owner`. */
  take(owner: T): number {
    const id = this.next
    this.place(id, owner)
    return id
  }

  /**
   * Records that the send numbered `id` belongs to `owner`, for an engine that numbers
   * its sends itself (io_uring: a sequence number per SQE, failed ones included; `id`
   * is never below the last one taken).
   */
  takeAt(id: number, owner: T): void {
    this.place(id >>> 0, owner)
  }

  private place(id: number, owner: T): void {
    if (this.count === 0) this.base = id // nothing older is outstanding (ids skipped since need no slots)
    while (((id - this.base) >>> 0) >= this.slots.length) this.grow()
    this.slots[id & this.mask] = owner
    this.count++
    this.next = (id + 1) >>> 0
  }

  /** Doubles the ring, keeping every outstanding id at its new index. */
  private grow(): void {
    const old = this.slots
    const span = (this.next - this.base) >>> 0
    this.slots = new Array<T | undefined>(old.length * 2).fill(undefined)
    this.mask = this.slots.length - 1
    for (let i = 0; i < span; i++) {
      const id = (this.base + i) >>> 0
      this.slots[id & this.mask] = old[id & (old.length - 1)]
    }
  }

  /** The owners of the outstanding ids (one entry per id), oldest first. */
  *pendingOwners(): IterableIterator<T> {
    const span = (this.next - this.base) >>> 0
    for (let i = 0; i < span; i++) {
      const owner = this.slots[(this.base + i) & this.mask]
      if (owner !== undefined) yield owner
    }
  }

  /**
   * The kernel holds no page of any outstanding send any more (the socket was closed
   * abortively): calls `onId` once for every outstanding id, oldest first.
   */
  releaseAll(onId: (owner: T) => void): void {
    const owners = [...this.pendingOwners()]
    this.slots.fill(undefined)
    this.count = 0
    this.base = this.next
    for (const owner of owners) onId(owner)
  }

  /**
   * Applies one completion range [lo, hi] (inclusive, modulo 2^32): calls `onId` once
   * for every outstanding id in it. Returns how many ids it completed.
   */
  complete(lo: number, hi: number, copied: boolean, onId: OnIdComplete<T>): number {
    const count = ((hi - lo) >>> 0) + 1
    // Only the part of the range inside the window [base, next) can name an outstanding
    // id, so a corrupt huge range costs no more than the ids outstanding. The range is
    // contiguous: starting outside the window, it can only enter it at `base`.
    const span = (this.next - this.base) >>> 0
    let i = (lo - this.base) >>> 0
    let end: number
    if (i < span) {
      end = Math.min(span, i + count)
    } else {
      const before = (this.base - lo) >>> 0 // range ids before the window
      i = 0
      end = before < count ? Math.min(span, count - before) : 0
    }
    // Ids are taken from `base` as it is now: an `onId` that sends again may move it.
    const base = this.base
    let done = 0
    for (; i < end; i++) {
      const slot = (base + i) & this.mask
      const owner = this.slots[slot]
      if (owner === undefined) continue
      this.slots[slot] = undefined
      this.count--
      onId(owner, copied)
      done++
      // Nothing left outstanding: the rest of the range names no send. (An `onId` that
      // sent again took ids beyond it, and may have moved `base`.)
      if (this.count === 0) break
    }
    this.unknown += count - done
    this.advanceBase()
    return done
  }

  /** Moves `base` past completed and skipped ids. */
  private advanceBase(): void {
    if (this.count === 0) {
      this.base = this.next
      return
    }
    while (this.base !== this.next && this.slots[this.base & this.mask] === undefined) this.base = (this.base + 1) >>> 0
  }
}
