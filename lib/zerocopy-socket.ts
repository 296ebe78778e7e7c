// ZeroCopySocket: MSG_ZEROCOPY sends on a socket Node already has, each a Promise that
// settles only once the kernel has released the caller's pages. This class is the
// public face and its lifetime: options, validation, attach and close. The sending
// itself is the socket's SendChannel (lib/send-channel.ts), shared by every instance
// and fd naming the same kernel socket (lib/socket-registry.ts).
import * as dgram from 'node:dgram'
import * as net from 'node:net'
import { Writable } from 'node:stream'
import { engineOption, type EngineName, type EngineOption } from './engine'
import { codedError, invalidArgType, promised, socketClosed } from './errors'
import type { ByteView } from './native'
import { dgramSocketFd, isConstructedWritable, netSocketFd, protocolLayer } from './node-internals'
import { channelFor } from './socket-registry'
import { isResponse, sendToResponse, type ResponseBody, type ResponseTarget } from './http-response'
import type { ChannelCounters, SendChannel } from './send-channel'
import type { NotificationObserver } from './channel-types'
import { COPY_CHUNK, copierFor, type StreamCopier } from './stream-copy'
import { BytesRequest, EachRequest, type SendRequest, type SendResult } from './send-requests'
import { booleanOption, dataViews, integerOption, messageViews, optionsArg, totalBytes } from './validate'

export type { SendResult } from './send-requests'
export { libuvReadsUdpErrorQueue } from './socket-registry'

const MAX_TIMER_MS = 2 ** 31 - 1

/** Options for {@link ZeroCopySocket.from}. */
export interface ZeroCopyOptions {
  /**
   * After this many consecutive send ids the kernel reports as COPIED (it had to copy
   * after all, as for loopback and other local delivery), switch this socket to plain
   * copying sends, as the kernel documentation advises. An integer >= 1, default 32;
   * `Infinity` never switches.
   */
  copiedThreshold?: number
  /**
   * When Node closes the socket while sends still wait for their completions, how long
   * (ms) to let the kernel finish them (a graceful FIN follows the queued data) before
   * resetting the connection, which frees the pages and rejects those sends. An integer
   * from 0 to 2^31 - 1, default 30000; `Infinity` never resets.
   */
  lingerMs?: number
  /**
   * Which engine sends (when this call attaches): 'io_uring' (IORING_OP_SEND_ZC, one
   * ring per environment), 'epoll' (MSG_ZEROCOPY and the error queue), or 'auto'
   * (default: io_uring where it can run, else epoll; ZEROCOPY_ENGINE=epoll|io_uring
   * sets what 'auto' means). An explicit 'io_uring' where it cannot run throws
   * ERR_ZEROCOPY_ENGINE_UNAVAILABLE.
   */
  engine?: EngineOption
  /**
   * Called (synchronously, on the event loop) for every release the kernel reports, with
   * its inclusive id range `[first, last]` (modulo 2^32) and whether the kernel copied
   * after all: with the epoll engine each error-queue notification and its MSG_ZEROCOPY
   * ids, with io_uring each run of notification CQEs and their send sequence numbers (a
   * send that failed took a number too). For diagnostics, as the kernel selftest prints
   * them; what it throws becomes a process warning. Applies when this call attaches.
   */
  onNotification?: (first: number, last: number, copied: boolean) => void
}

/** Options for {@link ZeroCopySocket.send}. */
export interface SendOptions {
  /**
   * Send with a plain copy instead (e.g. small HTTP headers before a zero-copy body):
   * the Promise resolves as soon as the kernel has the bytes, and order with the other
   * sends is kept.
   */
  copy?: boolean
  /**
   * For an HTTP response target only (`sendZeroCopy(res, data)`): end the response after
   * the data (default true). With `end`, a response whose headers were not sent yet
   * gets Content-Length.
   */
  end?: boolean
}

/** Counters of one socket (since it was attached); a snapshot. */
export interface ZeroCopyStats extends ChannelCounters {
  /** 'zerocopy' until the policy or the socket type made it copy. */
  mode: 'zerocopy' | 'copy'
  /** Why mode became 'copy'. */
  fallbackReason: string | undefined
  /**
   * The engine this socket sends with, and why not io_uring when 'auto' fell back;
   * 'stream' for a protocol layer (TLS, HTTP/2, a Writable): copies through its write().
   */
  engine: EngineName | 'stream'
  engineFallback: string | undefined
  /** Requests not yet fully handed to the kernel, and ids the kernel still holds. */
  unsent: number
  outstandingIds: number
}

/**
 * A socket to attach: a connected net.Socket, a connected dgram.Socket, or a socket fd;
 * or a stream whose bytes Node transforms or frames (a TLS socket, an HTTP/2 stream, any
 * Writable that is not a plain kernel socket), which gets honest copies through its own
 * write().
 */
export type SocketTarget = net.Socket | dgram.Socket | number | Writable

const attached = new WeakMap<object, ZeroCopySocket>()

/** Checks the options of {@link ZeroCopySocket.from}; throws coded TypeError/RangeError. */
export function checkSocketOptions(
  options: unknown,
  name = 'options',
): { copiedThreshold: number; lingerMs: number; engine: EngineOption; onNotification: NotificationObserver | undefined } {
  const o = optionsArg<ZeroCopyOptions>(options, name)
  const onNotification = o.onNotification
  if (onNotification !== undefined && typeof onNotification !== 'function') {
    throw invalidArgType(`${name}.onNotification`, 'of type function', onNotification)
  }
  return {
    copiedThreshold: integerOption(`${name}.copiedThreshold`, o.copiedThreshold, 32, 1, Number.MAX_SAFE_INTEGER, true),
    lingerMs: integerOption(`${name}.lingerMs`, o.lingerMs, 30000, 0, MAX_TIMER_MS, true),
    engine: engineOption(`${name}.engine`, o.engine),
    onNotification,
  }
}

/**
 * MSG_ZEROCOPY sends on one socket: a connected `net.Socket`, a connected
 * `dgram.Socket`, or a socket fd. Get one with {@link ZeroCopySocket.from}.
 */
export class ZeroCopySocket {
  /**
   * Attaches to a socket: the same instance for the same kernel socket while attached,
   * however it is named (the Node socket or an fd of it). `net.Socket`s and
   * `dgram.Socket`s are followed through their lifetime; for an fd the caller keeps
   * ownership and calls {@link close} before closing it. Options apply when this call
   * attaches. Throws coded errors (a synchronous API).
   */
  static from(target: SocketTarget, options?: ZeroCopyOptions): ZeroCopySocket {
    return attach(target, options).zc
  }

  private closing = false
  /**
   * The object `from()` cached this instance for, weakly: the channel keeps its attached
   * instance, and must not keep a socket Node closed through it.
   */
  private readonly source: WeakRef<object> | undefined

  /**
   * Exactly one of `channel` (a kernel socket: MSG_ZEROCOPY through the send state
   * machine) and `copier` (a protocol layer: copies through the stream's own write).
   * @internal
   */
  constructor(
    /** @internal */ readonly channel: SendChannel | undefined,
    source: object | undefined,
    /** @internal */ readonly copier?: StreamCopier,
  ) {
    this.source = source === undefined ? undefined : new WeakRef(source)
    channel?.handle({ type: 'hold' })
  }

  /**
   * Whether from() hands this instance out again: until close(), even after the
   * connection failed (its sends then reject with the socket's error). @internal
   */
  get isOpen(): boolean {
    return !this.closing
  }

  /** A snapshot of this socket's counters. */
  get stats(): ZeroCopyStats {
    const ch = this.channel
    if (ch === undefined) {
      const c = this.copier!
      return { mode: 'copy', fallbackReason: c.reason, engine: 'stream', engineFallback: c.reason, ...c.counters, unsent: c.unsent, outstandingIds: 0 }
    }
    return {
      mode: ch.policy.mode,
      fallbackReason: ch.policy.fallbackReason,
      engine: ch.engine,
      engineFallback: ch.engineFallback,
      ...ch.counters,
      unsent: ch.unsent,
      outstandingIds: ch.outstandingIds,
    }
  }

  /**
   * Sends `data` (a view or an Array of at most 1024 views, sent as one stream of
   * bytes; for UDP one datagram) and resolves once the kernel has released every page
   * of it: overwriting the buffer after that cannot change what the peer receives.
   * Partial sends, EAGAIN and ENOBUFS are handled inside; a dead socket rejects. Never
   * throws: bad arguments reject too.
   */
  send(data: ByteView | readonly ByteView[], options?: SendOptions): Promise<SendResult> {
    return promised(() => {
      const copy = booleanOption('options.copy', optionsArg<SendOptions>(options).copy)
      const views = dataViews(data, 'data')
      if (this.copier !== undefined) return this.copy(() => this.copier!.sendViews(views, false))
      return this.submit<SendResult>((settled) => new BytesRequest(views, totalBytes(views), copy, settled))
    })
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
  sendEach(messages: readonly ByteView[], options?: SendOptions): Promise<SendResult> {
    return promised(() => {
      const copy = booleanOption('options.copy', optionsArg<SendOptions>(options).copy)
      const views = messageViews(messages, 'messages')
      if (this.copier !== undefined) return this.copy(() => this.copier!.sendViews(views, true))
      return this.submit<SendResult>((settled) => new EachRequest(views, totalBytes(views), copy, settled))
    })
  }

  /**
   * Queues a request made by `make` (given its settle callback) at this point of the
   * socket's byte order, now. @internal
   */
  submit<R>(make: (settled: (req: SendRequest, err: Error | undefined) => void) => SendRequest): Promise<R> {
    if (this.closing) return Promise.reject(socketClosed('This ZeroCopySocket was closed'))
    return new Promise<R>((resolve, reject) => {
      const req = make((r, err) => {
        if (err !== undefined) reject(err)
        else resolve(r.result() as R)
      })
      this.channel!.handle({ type: 'enqueue', req })
    })
  }

  /** A send through the copier (a protocol layer), unless this instance was closed. @internal */
  copy<R>(send: () => Promise<R>): Promise<R> {
    if (this.closing) return Promise.reject(socketClosed('This ZeroCopySocket was closed'))
    return send()
  }

  /**
   * Stops taking sends through this instance; resolves once every send made on the
   * socket before this call (through any instance) has settled. The socket's private fd
   * is closed once no instance uses it and the kernel holds nothing of it; the Node
   * socket itself stays open. A later from() attaches again and carries on where this
   * left off.
   */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = true
      const source = this.source?.deref()
      if (source !== undefined && attached.get(source) === this) attached.delete(source)
      const ch = this.channel
      if (ch !== undefined) {
        if (ch.attachedHandle === this) ch.attachedHandle = undefined
        ch.handle({ type: 'release' })
      }
    }
    return this.copier !== undefined ? this.copier.barrier() : this.channel!.settledBarrier()
  }
}

/**
 * The attached instance for `target`, made (and `created`) if there is none. Throws:
 * ERR_INVALID_ARG_TYPE, ERR_SOCKET_CLOSED, ERR_SOCKET_NOT_CONNECTED,
 * ERR_SOCKET_DGRAM_NOT_CONNECTED, ERR_ZEROCOPY_PROTOCOL_LAYER, or a SystemError
 * (ENOTSOCK, EBADF) for an fd.
 * @internal
 */
export function attach(target: SocketTarget, options?: ZeroCopyOptions, shared = true): { zc: ZeroCopySocket; created: boolean } {
  const checked = checkSocketOptions(options)
  if (target instanceof net.Socket && target.destroyed) throw socketClosed()
  if (typeof target === 'object' && target !== null) {
    const existing = attached.get(target)
    if (existing !== undefined && existing.isOpen) return { zc: existing, created: false }
  }
  const through = honestStream(target)
  if (through !== undefined) {
    const zc = new ZeroCopySocket(undefined, shared ? target as object : undefined, copierFor(through.stream, through.reason))
    if (shared) attached.set(target as object, zc)
    return { zc, created: true }
  }
  const { fd, source } = resolveTarget(target)
  const channel = channelFor(fd, source, checked)
  const current = channel.attachedHandle as ZeroCopySocket | undefined
  if (current !== undefined && current.isOpen) {
    if (source !== undefined) attached.set(source, current)
    return { zc: current, created: false }
  }
  channel.policy.copiedThreshold = checked.copiedThreshold
  channel.lingerMs = checked.lingerMs
  channel.onNotification = checked.onNotification
  // A call's own instance (a bare-fd convenience call, closed when it settles) is
  // never handed to anyone else.
  const zc = new ZeroCopySocket(channel, shared ? source : undefined)
  if (!shared) return { zc, created: true }
  channel.attachedHandle = zc
  if (source !== undefined) attached.set(source, zc)
  return { zc, created: true }
}

/**
 * For a target Node transforms or frames: the stream whose own write() carries its
 * bytes, and why. Undefined for a kernel socket (or an fd). Throws
 * ERR_ZEROCOPY_PROTOCOL_LAYER where no honest path exists (the socket of an HTTP/2
 * session).
 */
function honestStream(target: SocketTarget): { stream: Writable; reason: string } | undefined {
  if (target instanceof net.Socket) {
    const layer = protocolLayer(target)
    if (layer === undefined) return undefined
    if (layer.through === undefined) throw codedError('ERR_ZEROCOPY_PROTOCOL_LAYER', `Cannot send on this socket: ${layer.reason}`)
    return { stream: layer.through, reason: layer.reason }
  }
  if (typeof target === 'object' && target !== null && !(target instanceof dgram.Socket) && target instanceof Writable) {
    if (!isConstructedWritable(target)) throw invalidArgType('target', 'a constructed stream.Writable (this one has no write state)', target)
    const http2 = (target as { session?: unknown }).session !== undefined
    const reason = http2
      ? 'HTTP/2: the stream\'s bytes are framed by its session, so they go through the stream as copies'
      : 'the target is a stream, not a kernel socket: its bytes go through its write() as copies'
    return { stream: target, reason }
  }
  return undefined
}

function resolveTarget(target: SocketTarget): { fd: number; source: net.Socket | dgram.Socket | undefined } {
  if (typeof target === 'number') {
    if (!Number.isInteger(target) || target < 0 || target > 2 ** 31 - 1) {
      throw invalidArgType('target', 'a net.Socket, a dgram.Socket or an fd (an integer >= 0)', target)
    }
    return { fd: target, source: undefined }
  }
  if (target instanceof net.Socket) {
    if (target.destroyed) throw socketClosed()
    if (target.pending || target.connecting) throw codedError('ERR_SOCKET_NOT_CONNECTED', 'The socket is not connected')
    const fd = netSocketFd(target)
    if (fd === undefined) throw socketClosed('The socket has no open fd')
    return { fd, source: target }
  }
  if (target instanceof dgram.Socket) {
    const fd = dgramSocketFd(target)
    if (fd === undefined) throw socketClosed('The socket is closed (it has no fd)')
    try {
      target.remoteAddress()
    } catch {
      throw codedError('ERR_SOCKET_DGRAM_NOT_CONNECTED', 'The dgram socket must be connected (socket.connect) before attaching')
    }
    return { fd, source: target }
  }
  throw invalidArgType('target', 'a net.Socket, a dgram.Socket or an fd', target)
}

/**
 * Sends `data` on `socket` with MSG_ZEROCOPY and resolves once the kernel has released
 * its pages. Shorthand for `ZeroCopySocket.from(socket).send(data, options)`; for an
 * fd, the instance this call makes is closed again once the send settles. On a TLS
 * socket or another stream Node transforms, an honest copy through its write(). On an
 * HTTP response (HTTPS and HTTP/2 too): after the headers (with Content-Length), as the
 * body, ending the response unless `options.end` is false. Never throws: every error
 * rejects.
 */
export function sendZeroCopy(socket: SocketTarget | ResponseTarget, data: ByteView | readonly ByteView[], options?: SendOptions): Promise<SendResult> {
  return promised(() => {
    if (isResponse(socket)) {
      const o = optionsArg<SendOptions>(options)
      const copy = booleanOption('options.copy', o.copy)
      const end = o.end === undefined ? true : booleanOption('options.end', o.end)
      const views = dataViews(data, 'data')
      return sendToResponse(socket, viewsBody(views, copy), end, (t) => attach(t).zc)
    }
    const { zc, created } = attach(socket, undefined, typeof socket !== 'number')
    const sent = zc.send(data, options)
    return created && typeof socket === 'number' ? closeAfter(sent, zc) : sent
  })
}

/**
 * `p`, with the call's own instance `zc` closed once it settles (its hold on the
 * socket's channel is let go then; other holders' sends are not waited for). @internal
 */
export function closeAfter<T>(p: Promise<T>, zc: ZeroCopySocket): Promise<T> {
  const release = () => void zc.close()
  p.then(release, release)
  return p
}

/** Views as an HTTP response's body. */
function viewsBody(views: Uint8Array[], copy: boolean): ResponseBody<SendResult> {
  return {
    prepare: () => Promise.resolve(totalBytes(views)),
    send: (zc) => zc.send(views, { copy }),
    done: () => Promise.resolve(),
    none: (reason) => ({ bytes: 0, zeroCopy: false, copied: false, mechanism: 'copy', calls: 0, fallback: reason }),
    async *copies() {
      for (const v of views) for (let at = 0; at < v.length; at += COPY_CHUNK) yield Buffer.from(v.subarray(at, at + COPY_CHUNK))
    },
    copied: (bytes, calls, why) => ({ bytes, zeroCopy: false, copied: true, mechanism: 'copy', calls, fallback: why }),
  }
}
