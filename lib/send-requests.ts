// The requests a socket's queue holds, one class per kind, each a cursor over what it
// still has to hand to the kernel:
//   BytesRequest  send(): views sent as one stream of bytes (one datagram on UDP)
//   EachRequest   sendEach(): every view its own send call (own datagram, own id)
//   FileRequest   sendFileZeroCopy(): pieces (file-mapping windows, or copied chunks of
//                 a file that cannot be mapped) supplied over time by lib/send-file.ts
//   RelayTurn     a relay writing into the socket (lib/relay-turn.ts): sends nothing,
//                 holds its place in the order while the relay thread writes
// The channel (lib/send-channel.ts) decides when and with which flags; a request only
// knows its own bytes. Every request holds the memory the kernel may read until it
// settles, and settles exactly once.
import type { EngineName } from './engine'
import { keepable, sendDetached } from './errors'
import type { NativeMapping } from './native'
import type { SendOps } from './send-ops'
import { viewDetached } from './validate'

// Bytes per sendmsg from a file mapping. Measured here (1 GiB cached file, loopback):
// MSG_ZEROCOPY sends of 256 KiB run about twice as fast as 4 MiB ones, in C too.
export const MAPPED_CHUNK = 256 * 1024

/** How a send went, from what the kernel said. */
export interface SendResult {
  /** Bytes sent. */
  bytes: number
  /** Every byte went with MSG_ZEROCOPY and no completion said the kernel copied. */
  zeroCopy: boolean
  /** Some bytes were copied: sent as a copy, or the kernel reported COPIED. */
  copied: boolean
  /**
   * How the bytes were handed to the kernel: `msg_zerocopy` (the epoll engine),
   * `io_uring` (IORING_OP_SEND_ZC), `copy`, or `mixed`.
   */
  mechanism: 'msg_zerocopy' | 'io_uring' | 'copy' | 'mixed'
  /** sendmsg calls it took (partial sends and retries). */
  calls: number
  /** Why bytes were copied though zero-copy was asked for, if they were. */
  fallback?: string
}

/** How a file send went, from what the kernel said. */
export interface SendFileResult {
  /** Bytes sent. */
  bytes: number
  /** Every byte went with MSG_ZEROCOPY and no completion said the kernel copied. */
  zeroCopy: boolean
  /** Some bytes were copied (by policy, because the file cannot be mapped, or the kernel reported COPIED). */
  copied: boolean
  /**
   * `mmap+msg_zerocopy` (the epoll engine) or `mmap+io_uring` (IORING_OP_SEND_ZC);
   * `mmap+copy` (sendmsg copying from the mapping); `read+copy` (a pipe, FIFO or /proc
   * file, read into memory and sent as copies); or `mixed`.
   */
  mechanism: 'mmap+msg_zerocopy' | 'mmap+io_uring' | 'mmap+copy' | 'read+copy' | 'mixed'
  /** Windows mapped. */
  windows: number
  /** sendmsg calls. */
  calls: number
  /** Why bytes were copied though zero-copy was asked for, if they were. */
  fallback?: string
}

/** Whoever a MSG_ZEROCOPY id belongs to: a request, or one piece of a file request. */
export interface IdOwner {
  readonly request: SendRequest
  /** `calls` send calls took one id each for this owner (the request's own count is kept by the channel). */
  idsTaken(calls: number): void
  /** One of this owner's ids completed. */
  idReleased(): void
}

/** Common state of every kind; `kind` names the cursor. */
export abstract class SendRequest implements IdOwner {
  abstract readonly kind: 'bytes' | 'each' | 'file' | 'turn'
  readonly request: SendRequest = this
  /** False while Node still buffers earlier bytes (see `marker`). */
  ready = true
  /**
   * Node's bytes written before it are in the kernel already (its owner saw to that):
   * it needs no marker behind them.
   */
  afterNode = false
  /** The empty chunk written into Node's stream behind its buffered bytes. */
  marker: Buffer | undefined
  calls = 0
  zcBytes = 0
  copyBytes = 0
  /** Ids handed out and not yet completed. */
  pendingIds = 0
  kernelCopied = false
  /** Nothing more of it goes to the kernel (all of it went, or it was cut short). */
  handedOver = false
  settled = false
  /** Why it failed; it rejects with this once the kernel released what it had. */
  error: Error | undefined
  fallback: string | undefined
  /** TCP: the stream offset just past its last byte (-1 unknown), for the reset check. */
  endOffset = -1
  /** The engine of the channel it was queued on (names its zero-copy mechanism). */
  engine: EngineName = 'epoll'

  constructor(
    readonly copy: boolean,
    private readonly onSettled: (req: SendRequest, err: Error | undefined) => void,
  ) {}

  /** Bytes handed to the kernel so far. */
  get sent(): number {
    return this.zcBytes + this.copyBytes
  }

  idsTaken(): void {}
  idReleased(): void {}

  /** Everything it has is handed over (it may still wait for completions). */
  abstract finished(datagram: boolean): boolean
  /** Its next bytes are not there yet (a file window still being mapped). */
  waitingForSource(): boolean {
    return false
  }
  /** It is the head of the queue: everything queued before it is in the kernel. */
  atHead(): void {}
  /** About how many send calls the rest takes (decides a burst out of the epoll set). */
  abstract callsLeft(): number
  /** Whether its next bytes may go with MSG_ZEROCOPY at all. */
  zeroCopyAllowed(): boolean {
    return !this.copy
  }
  /**
   * One native send of what comes next, through the channel's engine, with `flags`.
   * Returns -errno, or >= 0 with out[0] = bytes, out[1] = send calls made (each took one
   * id under MSG_ZEROCOPY). Throws when the native layer refuses its memory (a buffer
   * detached while queued).
   */
  abstract sendNext(ops: SendOps, fd: number, flags: number, datagram: boolean, out: Float64Array): number
  /** Records that `bytes` went in `calls` calls (after sendNext said so). */
  abstract advance(bytes: number, calls: number, datagram: boolean): void
  /** Who owns the ids of the calls just made. */
  idOwner(): IdOwner {
    return this
  }
  /** Stops handing bytes over (abort, or a failure): what was not sent never will be. */
  cut(err: Error): void {
    this.error ??= keepable(err)
    this.handedOver = true
  }
  abstract result(): SendResult | SendFileResult

  settle(err: Error | undefined): void {
    if (this.settled) return
    this.settled = true
    this.onSettled(this, err)
  }
}

/** A request over the caller's views (send and sendEach). */
abstract class ViewsRequest extends SendRequest {
  constructor(
    /** Held until settled: the kernel may read these pages until then. */
    readonly views: Uint8Array[],
    readonly total: number,
    copy: boolean,
    onSettled: (req: SendRequest, err: Error | undefined) => void,
  ) {
    super(copy, onSettled)
  }

  result(): SendResult {
    const total = this.total
    const zeroCopy = this.engine === 'io_uring' ? 'io_uring' : 'msg_zerocopy'
    const mechanism = this.zcBytes === total ? zeroCopy : this.copyBytes === total ? 'copy' : 'mixed'
    const r: SendResult = {
      bytes: total,
      zeroCopy: total > 0 && this.zcBytes === total && !this.kernelCopied,
      copied: this.copyBytes > 0 || this.kernelCopied,
      mechanism,
      calls: this.calls,
    }
    if (this.fallback !== undefined) r.fallback = this.fallback
    return r
  }
}

/** send(): views as one stream of bytes, or one datagram. */
export class BytesRequest extends ViewsRequest {
  readonly kind = 'bytes'

  finished(datagram: boolean): boolean {
    // An empty datagram is still a datagram to send; an empty stream write is nothing.
    return this.handedOver || (datagram ? this.calls > 0 : this.sent >= this.total)
  }

  callsLeft(): number {
    return 1
  }

  sendNext(ops: SendOps, fd: number, flags: number, datagram: boolean, out: Float64Array): number {
    const r = ops.send(fd, this.remaining(), flags)
    // A datagram is all or nothing (an empty one too); a stream may take part, never 0.
    const went = r > 0 || (r === 0 && datagram)
    out[0] = went ? (datagram ? this.total : r) : 0
    out[1] = went ? 1 : 0
    return r
  }

  advance(): void {}

  /**
   * The one view of what is left to send, if it is one view with bytes in it (or any
   * datagram of one view, empty too): what a same-tick batch can take (send-batch.ts).
   * None if its memory was detached: the request then goes alone, and is refused.
   */
  nextView(datagram: boolean): Uint8Array | undefined {
    if (this.views.length !== 1 || this.handedOver || this.views[0]!.byteLength !== this.total) return undefined
    if (datagram) return this.calls === 0 ? this.views[0] : undefined
    const sent = this.sent
    return sent < this.total ? (sent === 0 ? this.views[0] : this.views[0]!.subarray(sent)) : undefined
  }

  /**
   * The bytes not yet sent, as views (no copying). Throws ERR_INVALID_STATE if the
   * caller detached their memory meanwhile: a detached view reads as empty, and would be
   * skipped or sliced into a TypeError of V8's.
   */
  private remaining(): Uint8Array | Uint8Array[] {
    const sent = this.sent
    if (this.views.some(viewDetached)) throw sendDetached(sent, this.total)
    if (this.views.length === 1) return sent === 0 ? this.views[0]! : this.views[0]!.subarray(sent)
    if (sent === 0) return this.views
    const out: Uint8Array[] = []
    let skip = sent
    for (const v of this.views) {
      if (skip >= v.length) {
        skip -= v.length
        continue
      }
      out.push(skip > 0 ? v.subarray(skip) : v)
      skip = 0
    }
    return out
  }
}

/** sendEach(): every view its own send call; up to 256 per native call. */
export class EachRequest extends ViewsRequest {
  readonly kind = 'each'
  /** The message being sent, and how far into it (streams may take part of one). */
  private index = 0
  private offset = 0

  /** How many messages went (for err.sent on a refused datagram). */
  get messagesSent(): number {
    return this.index
  }

  finished(): boolean {
    return this.handedOver || this.index >= this.views.length
  }

  callsLeft(): number {
    return this.views.length - this.index
  }

  sendNext(ops: SendOps, fd: number, flags: number, datagram: boolean, out: Float64Array): number {
    const r = ops.sendEach(fd, this.views, this.index, this.offset, flags, datagram, out)
    if (r >= 0 && datagram) this.index += r
    return r
  }

  /**
   * On a stream, moves index/offset over `bytes`, and past every message that is
   * finished or empty (the native call skips empty ones without a send: bytes alone
   * would never move past them).
   */
  advance(bytes: number, _calls: number, datagram: boolean): void {
    if (datagram) return
    for (;;) {
      while (this.index < this.views.length && this.offset === this.views[this.index]!.length) {
        this.index++
        this.offset = 0
      }
      if (bytes === 0 || this.index >= this.views.length) return
      const take = Math.min(bytes, this.views[this.index]!.length - this.offset)
      this.offset += take
      bytes -= take
    }
  }

}

/** One piece of a file: a mapped window (kernel-read only) or a copied chunk. */
export class FilePiece implements IdOwner {
  sent = 0
  pendingIds = 0
  released = false
  constructor(
    readonly request: FileRequest,
    readonly length: number,
    /** A window and the offset of the piece's first byte in it; or a chunk read into memory. */
    readonly mapping: NativeMapping | undefined,
    readonly offset: number,
    readonly chunk: Buffer | undefined,
  ) {}

  idsTaken(calls: number): void {
    this.pendingIds += calls
  }

  idReleased(): void {
    this.pendingIds--
    this.request.pieceMaybeReleased(this)
  }
}

/**
 * sendFileZeroCopy(): takes its place in the queue at call time; its pieces arrive as
 * lib/send-file.ts maps or reads them. A mapped piece is unmapped the moment the kernel
 * released it; at most the producer's window budget is mapped at once.
 */
export class FileRequest extends SendRequest {
  readonly kind = 'file'
  private readonly pieces: FilePiece[] = []
  /** Pieces not yet released (mapped or holding a chunk): the producer's budget. */
  private live = 0
  private sourceDone = false
  private roomWaiter: (() => void) | undefined
  windows = 0
  copiedPieces = 0

  constructor(onSettled: (req: SendRequest, err: Error | undefined) => void) {
    super(false, onSettled)
  }

  /** The producer adds the next piece (in file order). */
  supply(piece: FilePiece): void {
    if (this.handedOver) {
      this.releasePiece(piece) // cut short meanwhile: the kernel never sees it
      return
    }
    this.pieces.push(piece)
    this.live++
    if (piece.mapping !== undefined) this.windows++
    else this.copiedPieces++
  }

  /** The producer has supplied every piece. */
  endOfSource(): void {
    this.sourceDone = true
  }

  /** Resolves once fewer than `max` pieces are held (mapped or in memory). */
  room(max: number): Promise<void> {
    if (this.live < max || this.handedOver) return Promise.resolve()
    return new Promise((resolve) => (this.roomWaiter = resolve))
  }

  finished(): boolean {
    return this.handedOver || (this.sourceDone && this.pieces.length === 0)
  }

  waitingForSource(): boolean {
    return this.pieces.length === 0 && !this.sourceDone && !this.handedOver
  }

  callsLeft(): number {
    const head = this.pieces[0]
    return head === undefined ? 0 : Math.ceil((head.length - head.sent) / MAPPED_CHUNK) + this.pieces.length - 1
  }

  zeroCopyAllowed(): boolean {
    return this.pieces[0]?.mapping !== undefined
  }

  sendNext(ops: SendOps, fd: number, flags: number, _datagram: boolean, out: Float64Array): number {
    const p = this.pieces[0]!
    // A mapped piece goes in MAPPED_CHUNK calls, as many at once as the engine makes.
    if (p.mapping !== undefined) return ops.sendMapped(fd, p.mapping, p.offset + p.sent, p.length - p.sent, MAPPED_CHUNK, flags, out)
    const len = Math.min(p.length - p.sent, MAPPED_CHUNK)
    const r = ops.send(fd, p.chunk!.subarray(p.sent, p.sent + len), flags)
    out[0] = r > 0 ? r : 0
    out[1] = r > 0 ? 1 : 0
    return r
  }

  /** The ids of the call just made belong to the head piece (advance runs after). */
  idOwner(): IdOwner {
    return this.pieces[0]!
  }

  advance(bytes: number): void {
    const p = this.pieces[0]!
    p.sent += bytes
    if (p.sent >= p.length) {
      this.pieces.shift()
      this.pieceMaybeReleased(p)
    }
  }

  /** A piece the kernel holds nothing of any more (all sent and completed, or never sent) is let go. */
  pieceMaybeReleased(p: FilePiece): void {
    if (p.released || p.pendingIds > 0) return
    if (p.sent < p.length && !this.handedOver) return // still to be sent
    if (this.pieces[0] === p && !this.handedOver) return
    this.releasePiece(p)
    this.live--
    const wake = this.roomWaiter
    this.roomWaiter = undefined
    wake?.()
  }

  private releasePiece(p: FilePiece): void {
    p.released = true
    p.mapping?.unmap()
  }

  cut(err: Error): void {
    super.cut(err)
    // Pieces never handed over (and the unsent part of the head) are the kernel's no
    // more than they ever were: let them go now; a piece with ids out waits for them.
    for (const p of this.pieces.splice(0)) {
      if (p.pendingIds === 0) {
        this.releasePiece(p)
        this.live--
      } else {
        p.sent = p.length // nothing more goes; it is released when its ids complete
      }
    }
    const wake = this.roomWaiter
    this.roomWaiter = undefined
    wake?.()
  }

  result(): SendFileResult {
    const total = this.sent
    const mechanism =
      this.copiedPieces > 0
        ? this.windows > 0
          ? 'mixed'
          : 'read+copy'
        : this.zcBytes === total
          ? this.engine === 'io_uring'
            ? 'mmap+io_uring'
            : 'mmap+msg_zerocopy'
          : this.copyBytes === total
            ? 'mmap+copy'
            : 'mixed'
    const r: SendFileResult = {
      bytes: total,
      zeroCopy: total > 0 && this.zcBytes === total && !this.kernelCopied,
      copied: this.copyBytes > 0 || this.kernelCopied,
      mechanism,
      windows: this.windows,
      calls: this.calls,
    }
    if (this.fallback !== undefined) r.fallback = this.fallback
    return r
  }
}
