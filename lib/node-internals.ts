// Everything that reaches into Node's private socket internals lives here, so that a
// Node release that moves them breaks one file.
// - The fd behind a net.Socket (`_handle.fd`) or a dgram.Socket (its symbol-keyed state;
//   the `_handle` getter is deprecated, DEP0112). The number is Node's, valid only until
//   Node closes the socket: callers duplicate it at once.
// - Whether a socket's bytes pass through a protocol layer (TLS, a JS stream, HTTP/2's
//   proxy socket), where writing to the fd would put raw bytes under that layer, and
//   how an HTTP/1 response frames its body (chunked, or none at all).
// - The write gate: wrapping a net.Socket's `_write`/`_final` so that Node's own writes
//   and the zero-copy sends keep call order; every owner's wrapping is one layer, removed
//   without touching the others (overrideOwn).
// - For relays: stopping libuv's reads of a socket (`_handle.readStop()`, `_read`),
//   taking what Node had buffered (and a FIN it had read) without emitting it
//   (`read(n)` with 'data' muted, `_readableState.ended`), and holding Node's writes to
//   it (`_write`/`_final`) while the relay thread uses its fd; and telling Node's idle
//   timeout that a relayed socket is active (`_unrefTimer()`, what Node's own reads and
//   writes call; on net.Socket in Node 20-26).
import * as dgram from 'node:dgram'
import type * as http from 'node:http'
import * as net from 'node:net'
import * as tls from 'node:tls'
import { Writable } from 'node:stream'
import { types } from 'node:util'

/**
 * Restarts `socket`'s idle timeout (`setTimeout`) as Node's own reads and writes do;
 * without `_unrefTimer`, the public re-arm with the same delay.
 */
export function refreshIdleTimer(socket: net.Socket): void {
  const s = socket as unknown as { _unrefTimer?: () => void }
  if (typeof s._unrefTimer === 'function') s._unrefTimer()
  else if (socket.timeout) socket.setTimeout(socket.timeout)
}

interface HasFd {
  fd?: number
}

export function netSocketFd(socket: net.Socket): number | undefined {
  const handle = (socket as unknown as { _handle?: HasFd | null })._handle
  return validFd(handle?.fd)
}

export function dgramSocketFd(socket: dgram.Socket): number | undefined {
  const state = Object.getOwnPropertySymbols(socket)
    .filter((s) => s.description === 'state symbol')
    .map((s) => (socket as unknown as Record<symbol, { handle?: HasFd | null }>)[s])[0]
  return validFd(state?.handle?.fd)
}

function validFd(fd: unknown): number | undefined {
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : undefined
}

/** A protocol layer between a net.Socket's writes and its fd. */
export interface ProtocolLayer {
  /** What writing to the fd would bypass. */
  reason: string
  /**
   * The stream whose own write() is the honest path (the TLS socket encrypts, a JS
   * stream carries its bytes on); undefined where there is none: the fd carries HTTP/2
   * frames, which only the HTTP/2 session may write.
   */
  through: Writable | undefined
}

/**
 * The protocol layer above this socket's fd, or undefined for a plain kernel socket
 * (libuv's TCP or Pipe handle and nothing above it).
 */
export function protocolLayer(socket: net.Socket): ProtocolLayer | undefined {
  if (types.isProxy(socket)) {
    return { reason: 'the socket is an HTTP/2 session\'s (compatibility API): its fd carries HTTP/2 frames; send to the response or its stream', through: undefined }
  }
  if (socket instanceof tls.TLSSocket || (socket as { encrypted?: boolean }).encrypted === true) {
    return { reason: 'TLS: the fd carries encrypted records, so the bytes go through the TLS socket as copies', through: socket }
  }
  const handle = (socket as unknown as { _handle?: object | null })._handle
  const kind = handle?.constructor?.name
  if (handle && kind !== 'TCP' && kind !== 'Pipe') {
    return { reason: `the socket's handle is a ${kind}, not a kernel socket, so the bytes go through the socket as copies`, through: socket }
  }
  const session = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'session')
  if (session !== undefined && (socket as unknown as Record<symbol, unknown>)[session] !== undefined) {
    return { reason: 'an HTTP/2 session owns this socket: its fd carries HTTP/2 frames; send to a response or stream', through: undefined }
  }
  return undefined
}

/**
 * The fd of the TCP connection under a TLS socket (its TLSWrap handle over a TCP handle),
 * or undefined (not TLS, over a JS stream, closed). Only for resetting that connection:
 * nothing may be written to it.
 */
export function tcpFdUnderTls(stream: Writable): number | undefined {
  if (!(stream instanceof tls.TLSSocket)) return undefined
  const handle = (stream as unknown as { _handle?: { _parent?: { constructor?: { name?: string }; fd?: number } } | null })._handle
  const parent = handle?._parent
  return parent?.constructor?.name === 'TCP' ? validFd(parent.fd) : undefined
}

/** An HTTP/2 stream (Node does not export its class): it has a session and an RST code. */
export function isHttp2Stream(stream: unknown): stream is Writable & { close(code: number): void } {
  const s = stream as { session?: unknown; close?: unknown } | null
  return s instanceof Writable && s.session !== undefined && typeof s.close === 'function' && 'rstCode' in s
}

/**
 * How an HTTP/1 response frames its body, read after its headers were sent: whether it
 * has one at all (HEAD, 204 and 304 have none) and whether it is chunked.
 */
export function responseFraming(res: http.ServerResponse): { hasBody: boolean; chunked: boolean } {
  const r = res as unknown as { _hasBody?: boolean; chunkedEncoding?: boolean }
  return { hasBody: r._hasBody !== false, chunked: r.chunkedEncoding === true }
}

/**
 * Whether `stream` is a Writable that was constructed (it has its write state): an object
 * made with `Object.create(Writable.prototype)` passes `instanceof` yet throws on use.
 */
export function isConstructedWritable(stream: Writable): boolean {
  const state = (stream as unknown as { _writableState?: unknown })._writableState
  return typeof state === 'object' && state !== null
}

/** The error a stream was destroyed with, if any (Node 18+ `errored`). */
export function streamError(stream: Writable | undefined): Error | undefined {
  const err = (stream as { errored?: Error | null } | undefined)?.errored
  return err instanceof Error ? err : undefined
}

type WriteCb = (err?: Error | null) => void

/** What the gate asks its owner about each of Node's writes and its end. */
export interface GateHooks {
  /**
   * Node hands a chunk to the kernel-bound write path. Return true when the owner took
   * it (a marker of its own, or a write it holds to call `pass` later); false lets it
   * through now.
   */
  onWrite(chunk: unknown, pass: () => void, cb: WriteCb): boolean
  /** Node ends the stream (FIN). Return true to hold `pass` for later. */
  onFinal(pass: () => void): boolean
}

interface StreamInternals {
  _write(chunk: unknown, encoding: string, cb: WriteCb): void
  _writev?: ((chunks: { chunk: unknown; encoding: string }[], cb: WriteCb) => void) | null
  _final(cb: WriteCb): void
}

/** A gate installed on a stream: its undo, and a write that goes around the gate. */
export interface StreamGate {
  undo(): void
  /** Hands `chunk` to the stream's own `_write` (TLS encrypts it, HTTP/2 frames it). */
  write(chunk: Buffer, cb: WriteCb): void
}

/**
 * Every owner that wraps a stream's write path (a channel's gate, a relay's hold) is a
 * layer over the one before it, so that removing one, in any order, never removes
 * another's. Each layer remembers the own properties it replaced; removing the top layer
 * puts them back, removing one under another hands them to the layer above (which puts
 * them back when it goes) and leaves its wrappers in that layer's hands: they must then
 * pass every call straight through.
 */
interface Layer {
  readonly saved: Map<string, PropertyDescriptor | undefined>
}

const layers = new WeakMap<object, Layer[]>()

/** Sets `values` as own properties of `target`, as one layer; returns its removal. */
function overrideOwn(target: object, values: Record<string, unknown>): () => void {
  let stack = layers.get(target)
  if (stack === undefined) layers.set(target, (stack = []))
  const layer: Layer = { saved: new Map() }
  for (const [key, value] of Object.entries(values)) {
    layer.saved.set(key, Object.getOwnPropertyDescriptor(target, key))
    Object.defineProperty(target, key, { value, writable: true, configurable: true, enumerable: false })
  }
  stack.push(layer)
  return () => {
    const at = stack.indexOf(layer)
    if (at < 0) return
    stack.splice(at, 1)
    const above = stack[at]
    for (const [key, descriptor] of layer.saved) {
      if (above?.saved.has(key)) above.saved.set(key, descriptor)
      else if (descriptor === undefined) delete (target as Record<string, unknown>)[key]
      else Object.defineProperty(target, key, descriptor)
    }
    if (stack.length === 0) layers.delete(target)
  }
}

/**
 * Calls `onSet` after every `socket.setTimeout()` made while followed (a relay's idle
 * watch learns of a timeout set after it started). One layer over whatever `setTimeout`
 * the socket had (see {@link overrideOwn}); once undone, a wrapper still under another
 * layer passes calls straight through.
 */
export function followSetTimeout(socket: net.Socket, onSet: () => void): () => void {
  const below = socket.setTimeout as (...args: unknown[]) => unknown
  let following = true
  const remove = overrideOwn(socket, {
    setTimeout(this: net.Socket, ...args: unknown[]): unknown {
      const result = below.apply(this, args)
      if (following) onSet()
      return result
    },
  })
  return () => {
    following = false
    remove()
  }
}

/**
 * Wraps a Writable's `_write` and `_final` as own properties, as one layer (see
 * {@link overrideOwn}: the prototype's stay as they are, the undo puts back any own
 * ones, as `new Writable({ write })` makes, and never another owner's), and turns off
 * `_writev`, so that every chunk, a marker too, passes `_write`
 * one at a time in order. A stream that implements only `_writev` keeps working: its
 * chunks go to that one at a time. Returns the undo and a write past the gate, for an
 * owner that holds Node's write (its marker) while it writes chunks of its own.
 */
export function installStreamGate(stream: Writable, hooks: GateHooks): StreamGate {
  const inner = stream as unknown as StreamInternals
  const write = inner._write
  const writev = inner._writev
  const final = inner._final
  let open = true
  const direct = (chunk: unknown, encoding: string, cb: WriteCb) => {
    if (write === Writable.prototype._write && typeof writev === 'function') writev.call(stream, [{ chunk, encoding }], cb)
    else write.call(stream, chunk, encoding, cb)
  }
  const remove = overrideOwn(stream, {
    _write: (chunk: unknown, encoding: string, cb: WriteCb) => {
      const pass = () => direct(chunk, encoding, cb)
      if (!open || !hooks.onWrite(chunk, pass, cb)) pass()
    },
    _writev: null,
    _final: (cb: WriteCb) => {
      const pass = () => final.call(stream, cb)
      if (!open || !hooks.onFinal(pass)) pass()
    },
  })
  return {
    undo: () => {
      open = false // a layer above may still call these wrappers: they pass through
      remove()
    },
    write: (chunk, cb) => direct(chunk, 'buffer', cb),
  }
}

/** {@link installStreamGate} for a net.Socket whose fd the owner writes itself. Returns the undo. */
export function installWriteGate(socket: net.Socket, hooks: GateHooks): () => void {
  return installStreamGate(socket, hooks).undo
}

/**
 * Calls `onClosed` once, when Node closes the socket. A net.Socket is followed from
 * inside its `_destroy` (an own property over the prototype's, as the write gate's
 * wrappers are): every close of one goes through destroy(), and its fd is closed there,
 * so no 'close' listener that the application removes, or that throws before ours,
 * can hide it. A dgram.Socket, which has no `_destroy`, by its first 'close' listener.
 * Returns the undo (the wrapper is taken out, or the listener removed).
 */
export function followClose(socket: net.Socket | dgram.Socket, onClosed: () => void): () => void {
  if (!(socket instanceof net.Socket)) {
    socket.prependOnceListener('close', onClosed)
    return () => void socket.off('close', onClosed)
  }
  type Destroy = (err: Error | null, cb: (err?: Error | null) => void) => void
  const own = Object.getOwnPropertyDescriptor(socket, '_destroy')
  const destroy = (socket as unknown as { _destroy: Destroy })._destroy
  let fired = false
  const wrapped: Destroy = function (this: net.Socket, err, cb) {
    destroy.call(this, err, (e) => {
      cb(e)
      if (fired) return
      fired = true
      onClosed()
    })
  }
  ;(socket as unknown as { _destroy: Destroy })._destroy = wrapped
  return () => {
    const target = socket as unknown as Record<string, unknown>
    if (target._destroy !== wrapped) return // replaced since: leave theirs
    if (own === undefined) delete target._destroy
    else Object.defineProperty(socket, '_destroy', own)
  }
}

/** Bytes Node still buffers for this socket (written, not yet in the kernel). */
export function nodeBuffered(socket: net.Socket): number {
  return socket.writableLength
}

interface ReadingHandle {
  reading?: boolean
  readStop?(): number
}

/** The readable state fields a held socket touches (present, as getters/setters or plain, in Node 20-26). */
interface ReadableInternals {
  highWaterMark: number
  length: number
  ended: boolean
  endEmitted: boolean
  reading: boolean
  needReadable: boolean
  destroyed: boolean
}

function readableState(socket: net.Socket): ReadableInternals {
  return (socket as unknown as { _readableState: ReadableInternals })._readableState
}

/** A net.Socket whose reads a relay holds (see {@link holdReads}). */
export interface HeldReads {
  /**
   * Takes up to `n` bytes of what Node had read and buffered (an unshift()ed head
   * first), for the relay to send first; null for none. Emits nothing: no 'data' (the
   * bytes are the relay's, not the application's), no 'end'. If that empties the buffer
   * after Node had read the EOF, the EOF is taken too, as if it had arrived after the
   * call (the relay reads it from the kernel again); `release` puts it back.
   */
  take(n: number): Buffer | null
  /**
   * Undoes the hold (the first call only). With `resume`, Node reads again if it was
   * reading or was asked to meanwhile; a stream whose EOF Node had read is not read
   * again but finishes as Node would have ('readable', its remaining bytes, then 'end'),
   * from the next turn of the event loop on.
   */
  release(resume: boolean): void
}

/**
 * Stops Node reading a net.Socket's fd, for a relay that reads it natively: libuv's
 * read is stopped (`_handle.readStop()`) and the stream's `_read` (the only way Node
 * restarts it on a plain socket: `resume()`, `read()`, a new 'data' listener all go
 * through it) is replaced by one that only remembers it was asked.
 */
export function holdReads(socket: net.Socket): HeldReads {
  const own = socket as unknown as Record<string, unknown>
  const handle = (socket as unknown as { _handle?: ReadingHandle | null })._handle
  const wasReading = handle?.reading === true
  let asked = false
  let tookEof = false
  let held = true
  const ownRead = Object.getOwnPropertyDescriptor(own, '_read')
  own._read = () => {
    asked = true
  }
  if (wasReading && handle) {
    handle.reading = false
    handle.readStop?.()
  }
  return {
    take(n) {
      if (n <= 0 || socket.readableLength === 0) return takeEof()
      const state = readableState(socket)
      const highWaterMark = state.highWaterMark
      // read(n) itself, not the buffer by hand: every Node line keeps its own layout
      // consistent (the chunk array and its index; Node 26's chunk prefetched during a
      // 'data' event, which readableLength counts but the array does not hold). Only
      // its side effects are undone: the 'data' event (below) and the raised
      // highWaterMark a read past it leaves. With n <= readableLength it returns n bytes
      // and schedules no 'end'; its `_read` call is the held one.
      const emit = socket.emit as (...args: unknown[]) => boolean
      const ownEmit = Object.getOwnPropertyDescriptor(own, 'emit')
      own.emit = function (this: net.Socket, event: string | symbol, ...args: unknown[]): boolean {
        return event === 'data' ? false : emit.call(this, event, ...args)
      }
      let bytes: Buffer | null
      try {
        bytes = socket.read(n) as Buffer | null
      } finally {
        if (ownEmit) Object.defineProperty(own, 'emit', ownEmit)
        else delete own.emit
        state.highWaterMark = highWaterMark
      }
      takeEof()
      return bytes
    },
    release(resume) {
      if (!held) return
      held = false
      if (ownRead) Object.defineProperty(own, '_read', ownRead)
      else delete own._read
      const state = readableState(socket)
      if (tookEof && !state.destroyed) {
        // As Node's own EOF push leaves it: ended, no read in flight.
        state.ended = true
        state.reading = false
      }
      if (!resume || socket.destroyed || !(wasReading || asked || tookEof)) return
      if (!state.ended) return void (socket as unknown as { _read(n: number): void })._read(socket.readableHighWaterMark)
      // Node never calls _read on an ended stream, and after its EOF it no longer waits
      // for 'readable' (needReadable is off): asked for one, read(0) finishes the stream
      // as Node's EOF push does: 'end' if nothing is left, else 'readable' and the flow
      // of what is (bytes after `length`), then 'end'. Not before the relay's Promise
      // settled and the code awaiting it ran (as a FIN read on a later poll would come).
      setImmediate(() => {
        if (socket.destroyed) return
        state.needReadable = true
        socket.read(0)
      })
    },
  }

  /** With the buffer empty and Node's EOF read but 'end' not emitted: the relay takes the EOF. */
  function takeEof(): null {
    const state = readableState(socket)
    if (state.length === 0 && state.ended && !state.endEmitted) {
      state.ended = false
      tookEof = true
    }
    return null
  }
}

/**
 * Holds Node's writes to a net.Socket while a relay writes to its fd: each chunk that
 * reaches `_write` (one at a time: `_writev` is off meanwhile), and `_final` (end()),
 * waits in order. Chunks up to and including `passUntil` (a marker written before the
 * hold began to flush what Node had buffered) go through (`onPassed` is told when it
 * does). The returned function puts
 * back exactly what was there and lets the held ones go on to the kernel, or, given an
 * error (the socket was destroyed), fails their callbacks with it.
 */
export function holdWrites(socket: net.Socket, passUntil?: unknown, onPassed?: () => void): (error?: Error) => void {
  const stream = socket as unknown as StreamInternals
  const write = stream._write
  const final = stream._final
  const held: Array<{ pass: () => void; cb: WriteCb }> = []
  let holding = true
  let passing = passUntil !== undefined
  const remove = overrideOwn(socket, {
    _write: (chunk: unknown, encoding: string, cb: WriteCb) => {
      const pass = () => write.call(stream, chunk, encoding, cb)
      if (!holding) return pass()
      if (!passing) return void held.push({ pass, cb })
      if (chunk === passUntil) {
        passing = false
        onPassed?.()
      }
      pass()
    },
    _writev: null,
    _final: (cb: WriteCb) => {
      const pass = () => final.call(stream, cb)
      if (!holding) return pass()
      held.push({ pass, cb })
    },
  })
  return (error) => {
    if (!holding) return
    holding = false // a layer above may still call these wrappers: they pass through
    remove()
    for (const h of held.splice(0)) {
      if (error) h.cb(error)
      else h.pass()
    }
  }
}
