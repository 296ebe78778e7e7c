// ZeroCopySocket: MSG_ZEROCOPY sends on a socket Node already has, each a Promise that
// settles only once the kernel has released the caller's pages.
//
// How it stays safe on Node's sockets (see docs/architecture.md):
// - It works on a private duplicate of the socket's fd, never on Node's number, which
//   Node closes and the kernel reuses at once.
// - Its sends and Node's own writes go out in call order: a send made while Node still
//   buffers data waits behind a marker written into Node's stream; a Node write made
//   while sends are unsent is held until they are in the kernel; end() likewise.
// - Completions are read from the error queue when the reactor (lib/reactor.ts) says
//   there are some; every buffer is referenced by its request until its ids complete.
import * as dgram from 'node:dgram'
import * as net from 'node:net'
import * as os from 'node:os'
import { CompletionTracker } from './completions'
import { native, type ByteView, type NativeMapping } from './native'
import * as reactor from './reactor'
import { dgramSocketFd, netSocketFd } from './socket-fd'

const { MSG_ZEROCOPY, MSG_DONTWAIT, MSG_NOSIGNAL, SO_EE_ORIGIN_ZEROCOPY, SO_EE_CODE_ZEROCOPY_COPIED } = native.constants
const { EPOLLERR, EPOLLOUT, SOCK_DGRAM } = native.constants
const { EAGAIN, ENOBUFS, EINTR } = os.constants.errno
const SHUT_WR = 1
// Bytes per sendmsg from a file mapping. Measured here (1 GiB cached file, loopback):
// MSG_ZEROCOPY sends of 256 KiB run about twice as fast as 4 MiB ones, in C too.
const MAPPED_CHUNK = 256 * 1024
// A request with at least this many send calls to go (a sendEach batch, a file window)
// is sent with the socket out of the reactor's epoll set. The kernel wakes every waiter
// on the socket for every completion (sk_error_report runs even when the notification
// merges into a queued one), and with our epoll registered that cost about 0.7 us per
// datagram into the namespace sink, where completions fire inside the send call
// itself. The completions are read right after the burst instead, as a C loop does.
const BURST_MESSAGES = 16

/** Options for {@link ZeroCopySocket.from}. */
export interface ZeroCopyOptions {
  /**
   * After this many consecutive send ids the kernel reports as COPIED (it had to copy
   * after all, as for loopback and other local delivery), switch this socket to plain
   * copying sends, as the kernel documentation advises. Default 32; `Infinity` never
   * switches.
   */
  copiedThreshold?: number
  /**
   * When Node closes the socket while sends still wait for their completions, how long
   * (ms) to let the kernel finish them (a graceful FIN follows the queued data) before
   * resetting the connection, which frees the pages and rejects those sends.
   * Default 30000.
   */
  lingerMs?: number
}

/** Options for {@link ZeroCopySocket.send}. */
export interface SendOptions {
  /**
   * Send with a plain copy instead (e.g. small HTTP headers before a zero-copy body):
   * the Promise resolves as soon as the kernel has the bytes, and order with the other
   * sends is kept.
   */
  copy?: boolean
}

/** How a send went, from what the kernel said. */
export interface SendResult {
  /** Bytes sent. */
  bytes: number
  /** Every byte went with MSG_ZEROCOPY and no completion said the kernel copied. */
  zeroCopy: boolean
  /** Some bytes were copied: sent as a copy, or the kernel reported COPIED. */
  copied: boolean
  /** How the bytes were handed to the kernel. */
  mechanism: 'msg_zerocopy' | 'copy' | 'mixed'
  /** sendmsg calls it took (partial sends and retries). */
  calls: number
  /** Why bytes were copied though zero-copy was asked for, if they were. */
  fallback?: string
}

/** Counters of one ZeroCopySocket; a snapshot. */
export interface ZeroCopyStats {
  /** 'zerocopy' until the policy or the socket type made it copy. */
  mode: 'zerocopy' | 'copy'
  /** Why mode became 'copy'. */
  fallbackReason: string | undefined
  /** send() calls accepted. */
  sends: number
  /** sendmsg calls with MSG_ZEROCOPY that sent bytes (each took one id). */
  zeroCopyCalls: number
  /** sendmsg calls without it. */
  copyCalls: number
  /** Error-queue notifications read (one may complete many ids). */
  notifications: number
  /** Ids completed, and of those how many the kernel said it copied. */
  completedIds: number
  copiedIds: number
  /** Bytes sent each way. */
  zeroCopyBytes: number
  copyBytes: number
  /** Times the kernel said EAGAIN (waited for room) or ENOBUFS (waited for completions). */
  eagain: number
  enobufs: number
  /** Sends not yet fully handed to the kernel, and ids the kernel still holds. */
  unsent: number
  outstandingIds: number
}

/** Node's own stream methods that the ordering gate wraps while attached. */
interface StreamInternals {
  _write(chunk: unknown, encoding: string, cb: (err?: Error | null) => void): void
  _writev?: unknown
  _final(cb: (err?: Error | null) => void): void
}

class SendRequest {
  sent = 0
  calls = 0
  zcBytes = 0
  copyBytes = 0
  pendingIds = 0
  kernelCopied = false
  fullySent = false
  settled = false
  fallback: string | undefined
  /** False while Node still has earlier data buffered; see `marker`. */
  ready: boolean
  /** The empty chunk written into Node's stream behind its buffered data. */
  marker: Buffer | undefined
  /** Instead of views: bytes [offset, offset + total) of a file mapping (held likewise). */
  mapped: { mapping: NativeMapping; offset: number } | undefined
  /** sendEach: every view is its own send call (datagram); `index`/`offset` is where it is. */
  each = false
  index = 0
  offset = 0
  /** Set when a datagram of a sendEach batch failed: rejects once the earlier ones are released. */
  error: Error | undefined

  constructor(
    /** Held until settled: the kernel may read these pages until then. */
    readonly views: Uint8Array[],
    readonly total: number,
    readonly copy: boolean,
    readonly resolve: (r: SendResult) => void,
    readonly reject: (e: Error) => void,
    ready: boolean,
  ) {
    this.ready = ready
  }

  /** The bytes not yet sent, as views (no copying). */
  remaining(): Uint8Array | Uint8Array[] {
    if (this.views.length === 1) return this.sent === 0 ? this.views[0]! : this.views[0]!.subarray(this.sent)
    const out: Uint8Array[] = []
    let skip = this.sent
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

  /**
   * sendEach on a stream: moves index/offset over `bytes` sent, and past every message
   * that is finished or empty (the native call skips empty ones without a send, so
   * they must not hold the batch: bytes alone would never move past them).
   */
  advance(bytes: number): void {
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

  /** About how many send calls the rest will take. */
  callsLeft(): number {
    if (this.each) return this.views.length - this.index
    if (this.mapped !== undefined) return Math.ceil((this.total - this.sent) / MAPPED_CHUNK)
    return 1
  }

  /** Nothing of it is left to hand to the kernel. */
  done(datagram: boolean): boolean {
    // An empty datagram is still a datagram to send; an empty stream write is nothing.
    if (this.each) return this.index >= this.views.length
    return datagram ? this.calls > 0 : this.sent >= this.total
  }

  result(): SendResult {
    const mechanism = this.zcBytes === this.total ? 'msg_zerocopy' : this.copyBytes === this.total ? 'copy' : 'mixed'
    const r: SendResult = {
      bytes: this.total,
      zeroCopy: this.total > 0 && this.zcBytes === this.total && !this.kernelCopied,
      copied: this.copyBytes > 0 || this.kernelCopied,
      mechanism,
      calls: this.calls,
    }
    if (this.fallback !== undefined) r.fallback = this.fallback
    return r
  }
}

const DATA_TYPES = 'a Buffer, TypedArray, DataView or ArrayBuffer, or an Array of them'
const MESSAGES_TYPES = 'an Array of Buffers, TypedArrays, DataViews or ArrayBuffers'

/** Uint8Array views of a list of byte views; `expected` completes the TypeError. */
function toBytes(list: readonly unknown[], name: string, expected: string): Uint8Array[] {
  return list.map((v) => {
    if (v instanceof Uint8Array) return v // Buffers too: no new view needed
    if (v instanceof ArrayBuffer) return new Uint8Array(v)
    if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength)
    throw invalidType(name, expected)
  })
}

function invalidType(name: string, expected: string): Error {
  return Object.assign(new TypeError(`The "${name}" argument must be ${expected}`), { code: 'ERR_INVALID_ARG_TYPE' })
}

function codedError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code })
}

const attached = new WeakMap<object, ZeroCopySocket>()

/**
 * Whether this process's libuv drains the error queue of the UDP sockets it watches
 * (libuv 1.52 and later, so Node 24+): it would consume the MSG_ZEROCOPY completions of
 * a dgram.Socket, and Node would emit each one as an empty 'message'. Such sockets
 * send copies instead.
 * @internal
 */
export function libuvReadsUdpErrorQueue(uvVersion = process.versions.uv ?? '0.0.0'): boolean {
  const [major = 0, minor = 0] = uvVersion.split('.').map(Number)
  return major > 1 || (major === 1 && minor >= 52)
}

/**
 * MSG_ZEROCOPY sends on one socket: a connected `net.Socket`, a connected
 * `dgram.Socket`, or a socket fd. Get one with {@link ZeroCopySocket.from}.
 */
export class ZeroCopySocket {
  /**
   * Attaches to a socket (the same instance for the same socket object while attached).
   * `net.Socket`s and `dgram.Socket`s are followed through their lifetime; for an fd
   * the caller keeps ownership and calls {@link close} when done.
   */
  static from(target: net.Socket | dgram.Socket | number, options: ZeroCopyOptions = {}): ZeroCopySocket {
    if (typeof target === 'object' && target !== null) {
      const existing = attached.get(target)
      if (existing !== undefined && !existing.closing) return existing
    }
    const zc = new ZeroCopySocket(target, options)
    if (typeof target === 'object') attached.set(target, zc)
    return zc
  }

  private readonly fd: number
  private readonly token: number
  private readonly isDatagram: boolean
  private readonly stream: (net.Socket & StreamInternals) | undefined
  private readonly source: net.Socket | dgram.Socket | undefined
  private readonly tracker = new CompletionTracker<SendRequest>()
  private readonly unsent: SendRequest[] = []
  private readonly heldNodeCalls: Array<() => void> = []
  private readonly errq = new Uint32Array(4 * 64)
  /** trySendEach's second result: [bytes, calls]. */
  private readonly eachOut = new Float64Array(2)
  private readonly copiedThreshold: number
  private readonly lingerMs: number
  private readonly counters: Omit<ZeroCopyStats, 'mode' | 'fallbackReason' | 'unsent' | 'outstandingIds'> = {
    sends: 0,
    zeroCopyCalls: 0,
    copyCalls: 0,
    notifications: 0,
    completedIds: 0,
    copiedIds: 0,
    zeroCopyBytes: 0,
    copyBytes: 0,
    eagain: 0,
    enobufs: 0,
  }
  private mode: 'zerocopy' | 'copy' = 'zerocopy'
  /** SO_ZEROCOPY is on (false where the socket type refused it). */
  private zeroCopyEnabled = true
  private fallbackReason: string | undefined
  private consecutiveCopied = 0
  private waitingWritable = false
  /** The fd is in the reactor's epoll set (see BURST_MESSAGES). */
  private watched = true
  private waitingCompletion = false
  private busy = false
  private closing = false
  private finished = false
  private socketError: Error | undefined
  private lingerTimer: NodeJS.Timeout | undefined
  private readonly closeWaiters: Array<() => void> = []
  private readonly detachFromSource: () => void

  private constructor(target: net.Socket | dgram.Socket | number, options: ZeroCopyOptions) {
    this.copiedThreshold = options.copiedThreshold ?? 32
    this.lingerMs = options.lingerMs ?? 30000
    let nodeFd: number | undefined
    if (typeof target === 'number') {
      nodeFd = target
    } else if (target instanceof net.Socket) {
      if (target.destroyed) throw codedError('ERR_SOCKET_CLOSED', 'The socket is closed')
      if (target.pending || target.connecting) throw codedError('ERR_SOCKET_NOT_CONNECTED', 'The socket is not connected')
      nodeFd = netSocketFd(target)
      this.stream = target as net.Socket & StreamInternals
      this.source = target
    } else if (target instanceof dgram.Socket) {
      try {
        target.remoteAddress()
      } catch {
        throw codedError('ERR_SOCKET_DGRAM_NOT_CONNECTED', 'The dgram socket must be connected (socket.connect) before attaching')
      }
      nodeFd = dgramSocketFd(target)
      this.source = target
    } else {
      throw codedError('ERR_INVALID_ARG_TYPE', 'The "target" argument must be a net.Socket, a dgram.Socket or an fd')
    }
    if (nodeFd === undefined) throw codedError('ERR_SOCKET_CLOSED', 'The socket has no open fd')
    const kind = native.socketKind(nodeFd) // ENOTSOCK for anything else
    this.isDatagram = kind.type === SOCK_DGRAM
    this.fd = native.dupFd(nodeFd)
    if (target instanceof dgram.Socket && libuvReadsUdpErrorQueue()) {
      this.zeroCopyEnabled = false
      this.switchToCopy(
        `libuv ${process.versions.uv} reads this dgram socket's error queue (it would take the MSG_ZEROCOPY completions and Node would emit them as empty messages); sending copies`,
      )
    } else {
      try {
        native.setZeroCopy(this.fd, true)
      } catch (err) {
        this.zeroCopyEnabled = false
        this.switchToCopy(`SO_ZEROCOPY is not supported on this socket (${(err as NodeJS.ErrnoException).code})`)
      }
    }
    this.token = reactor.register(this.fd, this)
    this.detachFromSource = this.followSource()
  }

  /** A snapshot of this socket's counters. */
  get stats(): ZeroCopyStats {
    return {
      mode: this.mode,
      fallbackReason: this.fallbackReason,
      ...this.counters,
      unsent: this.unsent.length,
      outstandingIds: this.tracker.outstanding,
    }
  }

  /**
   * Sends `data` (a view or an array of views, sent as one stream of bytes; for UDP one
   * datagram) and resolves once the kernel has released every page of it: overwriting
   * the buffer after that cannot change what the peer receives. Partial sends, EAGAIN
   * and ENOBUFS are handled inside; a dead socket rejects.
   */
  send(data: ByteView | readonly ByteView[], options: SendOptions = {}): Promise<SendResult> {
    let views: Uint8Array[]
    try {
      views = toBytes(Array.isArray(data) ? data : [data], 'data', DATA_TYPES)
    } catch (err) {
      return Promise.reject(err)
    }
    return this.enqueue(views, views.reduce((n, v) => n + v.length, 0), options.copy === true, undefined)
  }

  /**
   * Sends every view of `messages` with its own send call - on a UDP socket each is one
   * datagram - as a loop of {@link send} would, but batched: one crossing into native
   * code per up to 256 messages (sendmmsg for datagrams) and one Promise for all. It
   * resolves once the kernel has released every page of every message, so the views
   * (which may repeat one buffer) may then be reused. `calls` in the result counts the
   * send calls, each of which took one MSG_ZEROCOPY id.
   *
   * A datagram the kernel refuses (EMSGSIZE, ECONNREFUSED, ...) stops the batch: the
   * Promise rejects with that error, once the datagrams before it were released;
   * `err.sent` says how many went.
   */
  sendEach(messages: readonly ByteView[], options: SendOptions = {}): Promise<SendResult> {
    if (!Array.isArray(messages)) return Promise.reject(invalidType('messages', MESSAGES_TYPES))
    let views: Uint8Array[]
    try {
      views = toBytes(messages, 'messages', MESSAGES_TYPES)
    } catch (err) {
      return Promise.reject(err)
    }
    return this.enqueue(views, views.reduce((n, v) => n + v.length, 0), options.copy === true, undefined, true)
  }

  /**
   * Sends `length` bytes of a file mapping from `offset` (lib/send-file.ts). Same
   * ordering and Promise rules as {@link send}; the kernel reads the mapping, so a
   * truncated file is an EFAULT rejection, never a SIGBUS.
   * @internal
   */
  sendMapped(mapping: NativeMapping, offset: number, length: number, copy: boolean): Promise<SendResult> {
    return this.enqueue([], length, copy, { mapping, offset })
  }

  private enqueue(
    views: Uint8Array[],
    total: number,
    copy: boolean,
    mapped: SendRequest['mapped'],
    each = false,
  ): Promise<SendResult> {
    if (this.closing) {
      return Promise.reject(this.socketError ?? codedError('ERR_SOCKET_CLOSED', 'The socket is closed'))
    }
    if (this.stream?.writableEnded) {
      return Promise.reject(codedError('ERR_STREAM_WRITE_AFTER_END', 'write after end'))
    }
    this.counters.sends++
    return new Promise<SendResult>((resolve, reject) => {
      // Node's own buffered bytes go first: queue a marker behind them and send only
      // when Node hands it to _write (all earlier chunks are in the kernel by then).
      // Behind a request that still waits for its marker, a request waits too: ready
      // requests are always a prefix of the queue.
      const behindNode = this.stream !== undefined && this.stream.writableLength > 0
      const last = this.unsent[this.unsent.length - 1]
      const ready = !behindNode && (last === undefined || last.ready)
      const req = new SendRequest(views, total, copy, resolve, reject, ready)
      req.mapped = mapped
      req.each = each
      if (behindNode) {
        req.marker = Buffer.alloc(0)
        this.stream!.write(req.marker)
      }
      this.unsent.push(req)
      this.updateBusy()
      this.pump()
    })
  }

  /**
   * Stops using the socket: no new sends; resolves when every send has settled and the
   * private fd is closed. The Node socket itself stays open.
   */
  close(): Promise<void> {
    if (this.finished) return Promise.resolve()
    this.closing = true
    const done = new Promise<void>((resolve) => this.closeWaiters.push(resolve))
    this.maybeFinish()
    return done
  }

  /** Reactor callback. */
  onEvents(events: number): void {
    if (this.finished) return
    if (events & EPOLLERR) this.drain()
    if (events & EPOLLOUT && this.waitingWritable) {
      this.waitingWritable = false
      if (this.watched) reactor.wantWritable(this.fd, this.token, false)
    }
    this.pump()
  }

  // ---- sending ----------------------------------------------------------------

  private pump(): void {
    const head = this.unsent[0]
    if (this.watched && head !== undefined && head.ready && head.callsLeft() >= BURST_MESSAGES) this.setWatched(false)
    for (;;) {
      this.sendQueued()
      if (this.watched || this.finished) return
      // After a burst: read what completed meanwhile, go on if that unblocked sending,
      // else watch again (an edge-triggered add reports what is already pending).
      if (this.drain() > 0 && this.canSend()) continue
      if (!this.finished) this.setWatched(true)
      return
    }
  }

  private setWatched(watched: boolean): void {
    this.watched = watched
    reactor.setWatched(this.fd, this.token, watched, this.waitingWritable)
  }

  private canSend(): boolean {
    return this.hasReadyUnsent() && !this.waitingWritable && !this.waitingCompletion
  }

  /** Hands queued requests to the kernel until one has to wait. */
  private sendQueued(): void {
    while (this.unsent.length > 0 && !this.waitingWritable && !this.waitingCompletion) {
      const req = this.unsent[0]!
      if (!req.ready) return
      if (req.done(this.isDatagram)) {
        this.finishSending(req)
        continue
      }
      // File mappings keep MSG_ZEROCOPY under the copy policy: measured here (1 GiB cached
      // file, loopback), mapping + MSG_ZEROCOPY beats mapping + copying send even where
      // the kernel reports a deferred copy, unlike sends from user buffers.
      const policyAllows = this.mode === 'zerocopy' || (req.mapped !== undefined && this.zeroCopyEnabled)
      const zeroCopy = policyAllows && !req.copy && req.fallback === undefined
      const flags = MSG_DONTWAIT | MSG_NOSIGNAL | (zeroCopy ? MSG_ZEROCOPY : 0)
      const m = req.mapped
      let r: number
      let n: number // bytes handed to the kernel
      let calls: number // send calls that took them
      if (req.each) {
        r = native.trySendEach(this.fd, req.views, req.index, req.offset, flags, this.isDatagram, this.eachOut)
        n = this.eachOut[0]!
        calls = this.eachOut[1]!
        if (r >= 0) {
          if (this.isDatagram) req.index += r
          else req.advance(n)
        }
      } else {
        r =
          m === undefined
            ? native.trySend(this.fd, req.remaining(), flags)
            : native.trySendMapped(this.fd, m.mapping, m.offset + req.sent, Math.min(req.total - req.sent, MAPPED_CHUNK), flags)
        // A datagram is all or nothing (an empty one too); a stream may take part of
        // the bytes, and never 0.
        const sent = r > 0 || (r === 0 && this.isDatagram)
        n = sent ? (this.isDatagram ? req.total - req.sent : r) : 0
        calls = sent ? 1 : 0
      }
      // A batch that only skipped empty stream writes (r 0, no call) still moved on.
      const progressed = req.each ? r >= 0 : calls > 0
      if (progressed) {
        req.sent += n
        req.calls += calls
        if (zeroCopy) {
          for (let i = 0; i < calls; i++) this.tracker.take(req)
          req.pendingIds += calls
          req.zcBytes += n
          this.counters.zeroCopyCalls += calls
          this.counters.zeroCopyBytes += n
        } else {
          req.copyBytes += n
          this.counters.copyCalls += calls
          this.counters.copyBytes += n
          if (!req.copy && req.fallback === undefined) req.fallback = this.fallbackReason
        }
        if (req.done(this.isDatagram)) this.finishSending(req)
        continue
      }
      if (r === -EAGAIN) {
        this.counters.eagain++
        this.waitingWritable = true
        if (this.watched) reactor.wantWritable(this.fd, this.token, true)
        return
      }
      if (r === -ENOBUFS) {
        // Option memory is full of unread notifications or in-flight sends: read
        // completions and retry; with none to read, wait for the next; with nothing in
        // flight at all, this send goes as a copy.
        this.counters.enobufs++
        if (this.drain() > 0) continue
        if (this.tracker.outstanding > 0) {
          this.waitingCompletion = true
          return
        }
        req.fallback = 'ENOBUFS with no zero-copy send in flight (net.core.optmem_max too small?)'
        continue
      }
      if (r === -EINTR) continue
      const err = native.systemError(-r, req.each && this.isDatagram ? 'sendmmsg' : 'sendmsg')
      if (this.isDatagram) {
        // A datagram fails alone (EMSGSIZE, or ECONNREFUSED from an earlier ICMP
        // error); the socket and the datagrams behind it go on. A batch stops there
        // and rejects once the datagrams it already sent are released.
        req.error = Object.assign(err, { sent: req.index })
        this.finishSending(req)
        continue
      }
      this.failUnsent(err)
      return
    }
  }

  /** All bytes of `req` are in the kernel; it settles when its ids complete. */
  private finishSending(req: SendRequest): void {
    this.unsent.shift()
    req.fullySent = true
    this.maybeSettle(req)
    if (!this.hasReadyUnsent()) this.releaseNodeCalls()
  }

  /** Ready requests form a prefix of the queue, so the head says it all. */
  private hasReadyUnsent(): boolean {
    return this.unsent.length > 0 && this.unsent[0]!.ready
  }

  private maybeSettle(req: SendRequest): void {
    if (req.settled || !req.fullySent || req.pendingIds > 0) return
    req.settled = true
    // The pages are released either way; a socket that failed meanwhile means the
    // bytes may never have reached the peer, so say so.
    if (req.error !== undefined) req.reject(req.error)
    else if (this.socketError !== undefined && req.zcBytes > 0) req.reject(this.socketError)
    else req.resolve(req.result())
    this.updateBusy()
  }

  private failUnsent(err: Error): void {
    this.socketError ??= err
    for (const req of this.unsent.splice(0)) {
      // Bytes already handed over as MSG_ZEROCOPY keep their pages in the kernel: such
      // a send rejects only when its ids complete (maybeSettle sees socketError).
      req.fullySent = true
      if (req.pendingIds === 0) {
        req.settled = true
        req.reject(err)
      }
    }
    this.releaseNodeCalls()
    this.updateBusy()
    this.maybeFinish()
  }

  private switchToCopy(reason: string): void {
    if (this.mode === 'copy') return
    this.mode = 'copy'
    this.fallbackReason = reason
  }

  // ---- completions --------------------------------------------------------------

  private readonly onIdComplete = (req: SendRequest, copied: boolean): void => {
    req.pendingIds--
    this.counters.completedIds++
    if (copied) {
      req.kernelCopied = true
      this.counters.copiedIds++
    }
    this.maybeSettle(req)
  }

  /** Reads the whole error queue; returns the notifications read. */
  private drain(): number {
    let read = 0
    for (;;) {
      const n = native.readErrorQueue(this.fd, this.errq)
      if (n <= 0) break
      for (let i = 0; i < n; i++) {
        const origin = this.errq[4 * i]! & 0xff
        const code = this.errq[4 * i]! >>> 8
        if (origin !== SO_EE_ORIGIN_ZEROCOPY) continue // e.g. ICMP errors with IP_RECVERR
        const copied = (code & SO_EE_CODE_ZEROCOPY_COPIED) !== 0
        this.counters.notifications++
        const ids = this.tracker.complete(this.errq[4 * i + 2]!, this.errq[4 * i + 3]!, copied, this.onIdComplete)
        this.consecutiveCopied = copied ? this.consecutiveCopied + ids : 0
      }
      read += n
      if (n < this.errq.length / 4) break
    }
    if (this.consecutiveCopied >= this.copiedThreshold) {
      this.switchToCopy(
        `the kernel copied the last ${this.consecutiveCopied} zero-copy sends (local delivery such as loopback copies); sending plain copies`,
      )
    }
    if (read > 0 && this.waitingCompletion) this.waitingCompletion = false
    if (read > 0) this.maybeFinish()
    return read
  }

  // ---- Node's socket: ordering and lifetime ---------------------------------------

  /** Wraps the stream's write path and follows close/error; returns the undo. */
  private followSource(): () => void {
    const source = this.source
    if (source === undefined) return () => {}
    const onError = (err: Error) => {
      this.socketError ??= err
    }
    const onClose = () => this.onSourceClosed()
    source.on('error', onError)
    source.on('close', onClose)
    const stream = this.stream
    if (stream === undefined) {
      return () => {
        source.off('error', onError)
        source.off('close', onClose)
      }
    }
    const write = stream._write
    const final = stream._final
    const gated = stream as unknown as Record<string, unknown>
    gated._write = (chunk: unknown, encoding: string, cb: (err?: Error | null) => void) => {
      const at = (chunk as Buffer).length === 0 ? this.unsent.findIndex((r) => r.marker === chunk) : -1
      if (at >= 0) {
        // Node's earlier bytes are all in the kernel: this send may go now, and so may
        // the requests queued behind it without a marker of their own.
        this.unsent[at]!.marker = undefined
        for (let i = at; i < this.unsent.length && this.unsent[i]!.marker === undefined; i++) this.unsent[i]!.ready = true
        cb()
        this.pump()
        return
      }
      if (this.hasReadyUnsent()) this.heldNodeCalls.push(() => write.call(stream, chunk, encoding, cb))
      else write.call(stream, chunk, encoding, cb)
    }
    // Chunks one at a time through _write, so a marker is never inside a batch.
    gated._writev = null
    gated._final = (cb: (err?: Error | null) => void) => {
      if (this.unsent.length > 0) this.heldNodeCalls.push(() => final.call(stream, cb))
      else final.call(stream, cb)
    }
    return () => {
      source.off('error', onError)
      source.off('close', onClose)
      for (const key of ['_write', '_writev', '_final']) delete gated[key]
    }
  }

  private releaseNodeCalls(): void {
    if (this.heldNodeCalls.length === 0) return // the common case, on every send
    const calls = this.heldNodeCalls.splice(0)
    for (const call of calls) call()
  }

  /** Node closed its fd (ours stays open until every send has settled). */
  private onSourceClosed(): void {
    this.closing = true
    this.failUnsent(this.socketError ?? codedError('ERR_SOCKET_CLOSED', 'The socket was closed before this send went out'))
    if (this.tracker.outstanding === 0) return this.maybeFinish()
    // As close(2) would: the queued bytes still go, followed by a FIN.
    if (!this.isDatagram) {
      try {
        native.shutdownSocket(this.fd, SHUT_WR)
      } catch {
        // not connected any more: the kernel is dropping the queue anyway
      }
    }
    this.drain()
    if (this.finished) return
    this.lingerTimer = setTimeout(() => this.abort(), this.lingerMs)
  }

  /** Linger expired: reset the connection, which frees the queued pages now. */
  private abort(): void {
    if (this.finished) return
    const err = codedError(
      'ERR_ZEROCOPY_ABORTED',
      `The socket closed with zero-copy sends still in flight; after ${this.lingerMs} ms the connection was reset`,
    )
    this.finish(err)
  }

  private maybeFinish(): void {
    if (!this.closing || this.finished) return
    if (this.unsent.length > 0 || this.tracker.outstanding > 0) return
    this.finish(undefined)
  }

  private finish(abortError: Error | undefined): void {
    this.finished = true
    if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer)
    reactor.unregister(this.fd, this.token)
    this.waitingWritable = false
    if (abortError !== undefined) native.abortiveClose(this.fd)
    else native.closeFd(this.fd)
    // After close (abortive or not) the kernel holds no page of ours any more.
    const stranded = new Set<SendRequest>()
    this.tracker.complete(0, 0xffffffff, false, (req) => stranded.add(req))
    for (const req of stranded) {
      if (!req.settled) {
        req.settled = true
        req.reject(abortError ?? this.socketError ?? codedError('ERR_SOCKET_CLOSED', 'The socket closed'))
      }
    }
    this.detachFromSource()
    if (this.source !== undefined && attached.get(this.source) === this) attached.delete(this.source)
    this.releaseNodeCalls()
    this.updateBusy()
    for (const resolve of this.closeWaiters.splice(0)) resolve()
  }

  private updateBusy(): void {
    const busy = !this.finished && (this.unsent.length > 0 || this.tracker.outstanding > 0)
    if (busy !== this.busy) {
      this.busy = busy
      reactor.setBusy(busy)
    }
  }
}

/**
 * Sends `data` on `socket` with MSG_ZEROCOPY and resolves once the kernel has released
 * its pages. Shorthand for `ZeroCopySocket.from(socket).send(data, options)`.
 */
export function sendZeroCopy(
  socket: net.Socket | dgram.Socket,
  data: ByteView | readonly ByteView[],
  options?: SendOptions,
): Promise<SendResult> {
  return ZeroCopySocket.from(socket).send(data, options)
}
