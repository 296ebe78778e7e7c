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
import { codedError, socketClosed, writeAfterEnd } from './errors'
import { responseFraming } from './node-internals'
import type { SendFileResult, SendResult } from './send-requests'
import type { ZeroCopySocket } from './zerocopy-socket'

export type ResponseTarget = http.ServerResponse | http2.Http2ServerResponse

export function isResponse(target: unknown): target is ResponseTarget {
  return target instanceof http.ServerResponse || target instanceof http2.Http2ServerResponse
}

/** A body to send on a response. */
export interface ResponseBody<R> {
  /** Opens what it needs and returns its length if known (for Content-Length). */
  prepare(): Promise<number | undefined>
  /** Queues the body on `zc` now (in order with whatever is queued after it). */
  send(zc: ZeroCopySocket): Promise<R>
  /** Lets go of what prepare() opened. */
  done(): Promise<void>
  /** The result of a response that has no body (HEAD, 204, 304). */
  none(reason: string): R
}

const CRLF = Buffer.from('\r\n')

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
  return laneOf(res).run(async (direct) => {
    const length = await body.prepare()
    let queued = false
    try {
      if (res.writableEnded) throw writeAfterEnd()
      const target = res instanceof http.ServerResponse ? await socketOf(res) : streamOf(res)
      sendHeaders(res, length, end)
      const framing = framingOf(res)
      let sent: Promise<R>
      if (!framing.hasBody) {
        sent = Promise.resolve(body.none('the response has no body (a HEAD request, or status 204 or 304)'))
      } else {
        const zc = attach(target)
        if (framing.chunked && length === undefined) {
          throw codedError('ERR_ZEROCOPY_LENGTH_REQUIRED', 'A chunked response needs the body\'s length: pass options.length for a pipe or FIFO')
        }
        if (length === 0) sent = Promise.resolve(body.none('an empty body'))
        else if (framing.chunked) {
          void zc.send(Buffer.from(`${length!.toString(16)}\r\n`), { copy: true }).catch(() => {})
          sent = body.send(zc)
          void zc.send(CRLF, { copy: true }).catch(() => {})
        } else {
          sent = body.send(zc)
        }
      }
      queued = true
      if (end) direct(() => res.end())
      return {
        settled: sent.then(
          (r) => {
            void body.done()
            return r
          },
          (err: unknown) => {
            void body.done()
            // The headers went: the client must not take a cut body for a whole one.
            if (framing.hasBody) direct(() => res.destroy())
            throw err
          },
        ),
      }
    } finally {
      if (!queued) await body.done()
    }
  })
}

/**
 * Headers first: with Content-Length when this call ends the response and knows the
 * length. flushHeaders() also when headersSent is true: after writeHead() the header
 * block waits in the response for its first write, and must go before our body.
 */
function sendHeaders(res: ResponseTarget, length: number | undefined, end: boolean): void {
  if (!res.headersSent && end && length !== undefined && !res.hasHeader('transfer-encoding')) {
    const set = res.getHeader('content-length')
    if (set === undefined) res.setHeader('content-length', length)
    else if (Number(set) !== length) {
      throw codedError('ERR_HTTP_CONTENT_LENGTH_MISMATCH', `Response body's content-length of ${length} byte(s) does not match the content-length of ${String(set)} specified`)
    }
  }
  ;(res as { flushHeaders(): void }).flushHeaders()
}

function framingOf(res: ResponseTarget): { hasBody: boolean; chunked: boolean } {
  if (res instanceof http.ServerResponse) return responseFraming(res)
  const status = res.statusCode
  const head = (res.req as { method?: string } | undefined)?.method === 'HEAD'
  return { hasBody: !head && status !== 204 && status !== 205 && status !== 304, chunked: false }
}

/** The HTTP/1 response's socket, once it has it (a pipelined response waits for its turn). */
function socketOf(res: http.ServerResponse): Promise<net.Socket> | net.Socket {
  if (res.socket !== null && res.socket !== undefined) return res.socket
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
    const cleanup = () => {
      res.removeListener('socket', onSocket)
      res.removeListener('close', onClose)
      conn?.removeListener('close', onClose)
    }
    res.once('socket', onSocket)
    res.once('close', onClose)
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

/**
 * One per response: runs the calls made on it in order, and holds Node's res.write()
 * and res.end() made meanwhile behind them.
 */
class ResponseLane {
  private tail: Promise<unknown> = Promise.resolve()
  private pending = 0
  private replaying = false
  private restore: (() => void) | undefined

  constructor(private readonly res: ResponseTarget) {}

  /**
   * Runs `step` once every earlier step was queued; resolves with its body's settlement.
   * The lane moves on as soon as the body is queued, not when it settles.
   */
  run<R>(step: (direct: (fn: () => void) => void) => Promise<{ settled: Promise<R> }>): Promise<R> {
    const queued = this.queue(() => step((fn) => this.direct(fn)))
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

  private queue<T>(step: () => Promise<T>): Promise<T> {
    this.hold()
    this.pending++
    const p = this.tail.then(step)
    this.tail = p.then(
      () => this.stepDone(),
      () => this.stepDone(),
    )
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
    const write = res.write as (...args: unknown[]) => boolean
    const end = res.end as (...args: unknown[]) => unknown
    const replay = (fn: (...args: unknown[]) => unknown, args: unknown[]) => () => {
      this.direct(() => fn.apply(this.res, args))
      return Promise.resolve()
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
      delete res.write
      delete res.end
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
