// HTTP responses as targets: sendZeroCopy(res, data) and sendFileZeroCopy(res, file) on
// an http(s) `ServerResponse` or an HTTP/2 compatibility `Http2ServerResponse`.
//
// A response is not a socket: it may not have one yet (a pipelined request's response
// gets its socket only once the earlier responses finished), its status line and
// headers must go first, its body may need chunk framing, and a HEAD, 204 or 304 has no
// body at all. So each call, in the order it was made:
//   1. waits for the response's socket (HTTP/1) or checks its stream (HTTP/2);
//   2. sends the headers if they were not sent, with Content-Length when the call ends
//      the response and the body's length is known;
//   3. queues the body on the socket (zero-copy on a plain TCP socket, honest copies
//      through TLS) or on the HTTP/2 stream (copies, framed by the session), with
//      chunk framing when the response is chunked;
//   4. ends the response (unless `end: false`), which Node's writes then keep behind the
//      body, so the connection is ready for the next keep-alive request at once.
// The call's Promise settles with its body's: resolved once the kernel (or the stream)
// released every byte. Node's own res.write()/res.end() made while a call waits for its
// turn are queued behind it, so a file send followed at once by a write keeps its order.
// A body that fails after the headers went destroys the response: the client must not
// take a cut body for a whole one.
import * as http from 'node:http'
import * as http2 from 'node:http2'
import type * as net from 'node:net'
import { abortError, codedError, socketClosed, writeAfterEnd } from './errors'
import { responseFraming } from './node-internals'
import { resetStream } from './stream-copy'
import type { SendFileResult, SendResult } from './send-requests'
import type { ZeroCopySocket } from './zerocopy-socket'
import { writePathReplaced, writeThrough, type CopiedBody } from './wrapped-response'

export type ResponseTarget = http.ServerResponse | http2.Http2ServerResponse

export function isResponse(target: unknown): target is ResponseTarget {
  return target instanceof http.ServerResponse || target instanceof http2.Http2ServerResponse
}

/** A body to send on a response (as copies too: {@link CopiedBody}, for a replaced write path). */
export interface ResponseBody<R> extends CopiedBody<R> {
  /** Opens what it needs and returns its length if known (for Content-Length). */
  prepare(): Promise<number | undefined>
  /** Queues the body on `zc` now (in order with whatever is queued after it). */
  send(zc: ZeroCopySocket): Promise<R>
  /** Lets go of what prepare() opened (once prepare() has settled, if it is running). */
  done(): Promise<void>
  /** The result of a response that has no body (HEAD, 204, 304). */
  none(reason: string): R
  /** The call's signal: an abort before the headers went leaves the response untouched. */
  signal?: AbortSignal
}

const CRLF = Buffer.from('\r\n')
const EMPTY = Buffer.alloc(0)

/**
 * Sends `body` on `res` as the module comment describes. `attach` gives the
 * ZeroCopySocket of the response's socket or stream.
 */
export function sendToResponse<R extends SendResult | SendFileResult>(
  res: ResponseTarget,
  body: ResponseBody<R>,
  end: boolean,
  attach: (target: net.Socket | http2.Http2Stream) => ZeroCopySocket,
): Promise<R> {
  if (res.writableEnded) return Promise.reject(writeAfterEnd())
  if (body.signal?.aborted) return Promise.reject(abortError(body.signal))
  const sent = laneOf(res).run(async (direct, replaced) => {
    if (body.signal?.aborted) throw abortError(body.signal) // while an earlier call went
    // Until the headers go, an abort rejects at once and leaves the response as it was.
    const abort = abortWatch(body.signal)
    let prepared = false
    let queued = false
    try {
      const length = await abort.race(body.prepare().finally(() => (prepared = true)))
      if (res.writableEnded) throw writeAfterEnd()
      const target = res instanceof http.ServerResponse ? await socketOf(res, body.signal) : streamOf(res)
      abort.stop()
      if (body.signal?.aborted) throw abortError(body.signal)
      if (replaced) {
        queued = true
        if (!mayHaveBody(res)) {
          // Nothing goes through the write path (it would read the whole source for a
          // body Node drops); the middleware's end finishes the response.
          if (end) direct(() => res.end())
          return { settled: finished(body, Promise.resolve(body.none(NO_BODY))) }
        }
        // A middleware's write path (compression()): the body goes through it, and it
        // and Node decide the headers (lib/wrapped-response.ts).
        const settled = finished(body, writeThrough(res, body, end, direct, body.signal))
        settled.catch(() => {})
        return { settled, after: settled.then(() => {}, () => {}) }
      }
      sendHeaders(res, length, end)
      const framing = framingOf(res)
      if (!framing.hasBody || length === 0) {
        queued = true
        if (end) direct(() => res.end())
        const why = framing.hasBody ? 'an empty body' : NO_BODY
        return { settled: finished(body, Promise.resolve(body.none(why))) }
      }
      const zc = attach(target)
      if (framing.chunked && length === undefined) {
        throw codedError('ERR_ZEROCOPY_LENGTH_REQUIRED', 'A chunked response needs the body\'s length: pass options.length for a pipe or FIFO')
      }
      let sent: Promise<R>
      if (framing.chunked) {
        void zc.send(Buffer.from(`${length!.toString(16)}\r\n`), { copy: true }).catch(() => {})
        sent = body.send(zc)
        void zc.send(CRLF, { copy: true }).catch(() => {})
      } else {
        sent = body.send(zc)
      }
      queued = true
      let failed = false
      const settled = finished(body, sent, () => {
        failed = true
        // The headers went: the client must not take a cut body for a whole one.
        direct(() => (res instanceof http.ServerResponse ? res.destroy() : resetStream(res.stream)))
      })
      settled.catch(() => {}) // the caller takes it once this step returns
      // Node's end (and through it the response's 'finish', which arms the keep-alive
      // timer and hands the connection to the next pipelined response) waits until the
      // body is in the kernel or the stream, as with Node's own writes; so does the lane.
      const after = handedOver(target, zc).then(async () => {
        await new Promise((resolve) => setImmediate(resolve)) // a body cut meanwhile has rejected
        if (end && !failed) direct(() => res.end())
      })
      return { settled, after }
    } finally {
      abort.stop()
      if (!queued) {
        // A prepare() still running (an abort won the race) closes what it opened later.
        const closing = body.done()
        if (prepared) await closing
      }
    }
  })
  if (body.signal === undefined) return sent
  // An abort rejects the call at once, also while it waits behind an earlier call on the
  // response; its step then finds the signal aborted and sends nothing.
  sent.catch(() => {})
  const abort = abortWatch(body.signal)
  return abort.race(sent).finally(() => abort.stop())
}

/** The body's settlement, after what it opened was let go; `onError` runs first on a failure. */
function finished<R>(body: ResponseBody<R>, sent: Promise<R>, onError?: () => void): Promise<R> {
  return sent.then(
    async (r) => {
      await body.done()
      return r
    },
    async (err: unknown) => {
      onError?.()
      await body.done()
      throw err
    },
  )
}

/**
 * Resolves once everything queued on `zc` so far is in the kernel (a kernel socket: Node
 * writes are held until then, so an empty write's callback says so) or has gone through
 * the stream (a copier: its sends settled), or has failed.
 */
function handedOver(target: net.Socket | http2.Http2Stream, zc: ZeroCopySocket): Promise<void> {
  if (zc.copier !== undefined) return zc.copier.barrier()
  const socket = target as net.Socket
  if (socket.destroyed || socket.writableEnded) return Promise.resolve()
  return new Promise<void>((resolve) => socket.write(EMPTY, () => resolve()))
}

/** Rejections for an abort while a call waits; `race` adds one to a wait. */
function abortWatch(signal: AbortSignal | undefined): { race<T>(p: Promise<T> | T): Promise<T>; stop(): void } {
  if (signal === undefined) return { race: (p) => Promise.resolve(p), stop: () => {} }
  let onAbort: (() => void) | undefined
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(abortError(signal))
    if (signal.aborted) onAbort()
    else signal.addEventListener('abort', onAbort, { once: true })
  })
  aborted.catch(() => {})
  return {
    race: (p) => Promise.race([p, aborted]),
    stop: () => signal.removeEventListener('abort', onAbort!),
  }
}

/**
 * Headers first: with Content-Length when this call ends the response and knows the
 * length. flushHeaders() also when headersSent is true: after writeHead() the header
 * block waits in the response for its first write, and must go before our body.
 */
function sendHeaders(res: ResponseTarget, length: number | undefined, end: boolean): void {
  // A 204 (or 1xx) must not carry Content-Length (RFC 9110, 8.6); a HEAD or 304 says the
  // length the body would have.
  const forbidden = res.statusCode === 204 || (res.statusCode >= 100 && res.statusCode < 200)
  if (!res.headersSent && end && length !== undefined && !forbidden && !res.hasHeader('transfer-encoding')) {
    const set = res.getHeader('content-length')
    if (set === undefined) res.setHeader('content-length', length)
    else if (Number(set) !== length) {
      throw codedError('ERR_HTTP_CONTENT_LENGTH_MISMATCH', `Response body's content-length of ${length} byte(s) does not match the content-length of ${String(set)} specified`)
    }
  }
  ;(res as { flushHeaders(): void }).flushHeaders()
}

const NO_BODY = 'the response has no body (a HEAD request, or status 204 or 304)'

/**
 * Whether the response may carry a body, before its headers went (as Node decides when
 * it writes them: a HEAD request, status 204 or 304, or 1xx, has none).
 */
function mayHaveBody(res: ResponseTarget): boolean {
  const status = res.statusCode
  if (status === 204 || status === 304 || (status >= 100 && status < 200)) return false
  if ((res.req as { method?: string } | undefined)?.method === 'HEAD') return false
  return res instanceof http.ServerResponse ? responseFraming(res).hasBody : true
}

function framingOf(res: ResponseTarget): { hasBody: boolean; chunked: boolean } {
  if (res instanceof http.ServerResponse) return responseFraming(res)
  const status = res.statusCode
  const head = (res.req as { method?: string } | undefined)?.method === 'HEAD'
  return { hasBody: !head && status !== 204 && status !== 205 && status !== 304, chunked: false }
}

/**
 * The HTTP/1 response's socket, once it has it (a pipelined response waits for its
 * turn); an abort of `signal` meanwhile rejects at once.
 */
function socketOf(res: http.ServerResponse, signal: AbortSignal | undefined): Promise<net.Socket> | net.Socket {
  if (res.socket !== null && res.socket !== undefined) return res.socket
  if (signal?.aborted) return Promise.reject(abortError(signal))
  // A queued response gets no 'close' of its own if the connection dies first; its
  // request's socket is the same connection.
  const conn = (res.req as { socket?: net.Socket } | undefined)?.socket
  return new Promise<net.Socket>((resolve, reject) => {
    const onSocket = (socket: net.Socket) => {
      cleanup()
      resolve(socket)
    }
    const onClose = () => {
      cleanup()
      reject(socketClosed('The connection closed before the response got its turn'))
    }
    const onAbort = () => {
      cleanup()
      reject(abortError(signal!))
    }
    const cleanup = () => {
      res.removeListener('socket', onSocket)
      res.removeListener('close', onClose)
      conn?.removeListener('close', onClose)
      signal?.removeEventListener('abort', onAbort)
    }
    res.once('socket', onSocket)
    res.once('close', onClose)
    signal?.addEventListener('abort', onAbort, { once: true })
    if (conn !== undefined) {
      if (conn.destroyed) return onClose()
      conn.once('close', onClose)
    }
  })
}

function streamOf(res: http2.Http2ServerResponse): http2.Http2Stream {
  const stream = res.stream
  if (stream.destroyed || stream.closed) throw socketClosed('The HTTP/2 stream is closed')
  return stream
}

/** A step of a lane: its body's settlement, and what the lane waits for before the next step. */
interface Step<R> {
  settled: Promise<R>
  after?: Promise<void>
}

/**
 * One per response: runs the calls made on it in order, and holds Node's res.write()
 * and res.end() made meanwhile behind them.
 */
class ResponseLane {
  private tail: Promise<unknown> = Promise.resolve()
  private pending = 0
  private replaying = false
  private restore: (() => void) | undefined
  /** The response's write and end under the hold: Node's own, or a middleware's. */
  private inner: { write: unknown; end: unknown } | undefined

  constructor(private readonly res: ResponseTarget) {}

  /**
   * Runs `step` once every earlier step finished; resolves with its body's settlement.
   * The lane moves on once the step's `after` (the body in the kernel and the end) is
   * done, not when the body settles.
   */
  run<R>(step: (direct: (fn: () => void) => void, replaced: boolean) => Promise<Step<R>>): Promise<R> {
    const queued = this.queue(() => step((fn) => this.direct(fn), writePathReplaced(this.inner?.write, this.inner?.end)))
    return queued.then((q) => q.settled)
  }

  /** Calls Node's own res.write/res.end inside `fn`, past the hold. */
  private direct(fn: () => void): void {
    this.replaying = true
    try {
      fn()
    } finally {
      this.replaying = false
    }
  }

  private queue<R>(step: () => Promise<Step<R>>): Promise<Step<R>> {
    this.hold()
    this.pending++
    const p = this.tail.then(step)
    const done = () => this.stepDone()
    this.tail = p.then((q) => q.after).then(done, done)
    return p
  }

  private stepDone(): void {
    if (--this.pending === 0) {
      this.restore?.()
      this.restore = undefined
    }
  }

  /** Wraps res.write/res.end (own properties) so calls made while steps wait queue behind them. */
  private hold(): void {
    if (this.restore !== undefined) return
    const res = this.res as unknown as Record<string, unknown>
    // A wrapper someone put there before (compression-style middleware) comes back as it was.
    const own = (['write', 'end'] as const).map((key) => [key, Object.getOwnPropertyDescriptor(res, key)] as const)
    const write = res.write as (...args: unknown[]) => boolean
    const end = res.end as (...args: unknown[]) => unknown
    this.inner = { write, end }
    const replay = (fn: (...args: unknown[]) => unknown, args: unknown[]) => () => {
      this.direct(() => fn.apply(this.res, args))
      return Promise.resolve({ settled: Promise.resolve() })
    }
    res.write = (...args: unknown[]) => {
      if (this.replaying) return write.apply(this.res, args)
      void this.queue(replay(write, args))
      return true
    }
    res.end = (...args: unknown[]) => {
      if (this.replaying) return end.apply(this.res, args)
      void this.queue(replay(end, args))
      return this.res
    }
    this.restore = () => {
      for (const [key, descriptor] of own) {
        if (descriptor === undefined) delete res[key]
        else Object.defineProperty(res, key, descriptor)
      }
    }
  }
}

const lanes = new WeakMap<ResponseTarget, ResponseLane>()

function laneOf(res: ResponseTarget): ResponseLane {
  let lane = lanes.get(res)
  if (lane === undefined) {
    lane = new ResponseLane(res)
    lanes.set(res, lane)
  }
  return lane
}
