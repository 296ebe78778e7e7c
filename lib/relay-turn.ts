// A relay's place in the write order of the socket it writes into. A socket has one
// order: its SendChannel's queue (lib/send-channel.ts), which already orders the sends
// with Node's own writes. A relay into it enters that queue as a RelayTurn: the turn
// reaches the head once everything queued before it is in the kernel (bytes written to
// a socket are ordered once in its send queue), the relay thread writes then, and the
// sends and Node writes made meanwhile wait behind it until the relay ends.
//
// A relay into a socket with no channel yet leaves its turn here, under the socket's
// kernel identity; a channel made for that socket during the relay (a ZeroCopySocket
// attached by any name) takes the turn as its first request.
import { SendRequest, type SendResult } from './send-requests'

export class RelayTurn extends SendRequest {
  readonly kind = 'turn'
  /** Resolves when the relay may write; rejects if the socket's order failed first. */
  readonly started: Promise<void>
  private begun = false
  private ended = false
  private wake: (() => void) | undefined
  private resolveStart!: () => void

  constructor() {
    let rejectStart!: (err: Error) => void
    // Cut before it began (the channel failed, the socket closed): the relay must not start.
    super(true, (_req, err) => {
      if (err !== undefined) rejectStart(err)
    })
    this.started = new Promise<void>((resolve, reject) => {
      this.resolveStart = resolve
      rejectStart = reject
    })
    this.started.catch(() => {}) // a relay that no longer waits for it
  }

  /** The channel it entered: `wake` tells it the turn ended. */
  entered(wake: () => void): void {
    this.wake = wake
  }

  /** The relay wrote its last byte, or never will: what waits behind it may go. */
  end(): void {
    if (this.ended) return
    this.ended = true
    this.begin() // nothing waits for a turn that is over
    this.wake?.()
  }

  override atHead(): void {
    this.begin()
  }

  /** Everything before it is in the kernel: the relay may write. */
  begin(): void {
    if (this.begun) return
    this.begun = true
    this.resolveStart()
  }

  finished(): boolean {
    return this.handedOver || this.ended
  }

  /** It never sends: it waits for the relay's end. */
  override waitingForSource(): boolean {
    return true
  }

  callsLeft(): number {
    return 0
  }

  sendNext(): number {
    throw new Error('a relay turn sends nothing')
  }

  advance(): void {}

  result(): SendResult {
    return { bytes: 0, zeroCopy: false, copied: false, mechanism: 'copy', calls: 0 }
  }
}

/** Turns of running relays into sockets that had no channel, by kernel identity. */
const waiting = new Map<string, RelayTurn>()

/** Leaves `turn` for a channel made for the socket `key` while the relay runs. */
export function awaitChannel(key: string, turn: RelayTurn): () => void {
  waiting.set(key, turn)
  return () => {
    if (waiting.get(key) === turn) waiting.delete(key)
  }
}

/** The turn a new channel for the socket `key` must put first, if a relay writes into it. */
export function takeWaitingTurn(key: string): RelayTurn | undefined {
  const turn = waiting.get(key)
  waiting.delete(key)
  return turn
}
