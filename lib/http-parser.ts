// The shim over Node's HTTP/1 parser, for an upload that takes a request's body past it
// (lib/receive-request.ts). Everything here reaches into Node's private HTTP state; what
// it depends on, the same in Node 20, 22, 24 and 26 (_http_server.js, _http_common.js,
// src/node_http_parser.cc):
// - `socket.parser`: the HTTPParser reading a server's (or a client's) socket; null once
//   the connection was upgraded or the parser freed.
// - `parser.incoming`: the IncomingMessage whose message it is parsing now.
// - The server usually feeds the socket's handle to the parser in C++
//   (`parser.consume(socket._handle)`), bypassing the JS stream. Adding a 'data' listener
//   to the socket makes Node undo that itself (the server's socketListenerWrap calls its
//   unconsume()); from then on bytes reach the parser through the stream
//   (socketOnData -> `parser.execute()`), Node's path for sockets it cannot consume.
//   `parser._consumed` says which mode it is in.
// - `parser.execute(buf)` parses bytes handed to it; its C++ on_body hands a body span to
//   `parser[HTTPParser.kOnBody]` only if that is a function (no copy is made otherwise).
//   When the message completes, `parser[kOnMessageComplete]` marks the request complete,
//   ends it, and resumes the socket unless `socket._paused` (the server's own pause for
//   pipelined responses).
// - `socket._httpMessage`: the ServerResponse holding the socket now; `res._sent100`,
//   `res._expect_continue`: whether an owed 100 Continue went.
import type * as http from 'node:http'
import type * as net from 'node:net'

interface Parser {
  incoming: http.IncomingMessage | null
  _consumed?: boolean
  execute(data: Buffer): number | Error
  constructor: { kOnBody?: unknown }
  [key: number]: unknown
}

/** The HTTP parser reading `socket`, if one does. */
export function httpParserOf(socket: net.Socket): Parser | undefined {
  const parser = (socket as unknown as { parser?: Parser | null }).parser
  return parser !== null && typeof parser === 'object' && typeof parser.execute === 'function' ? parser : undefined
}

/**
 * Moves the parser off the socket's handle, the way Node does when user code starts
 * reading the socket: from now on it parses only what the socket's stream emits as
 * 'data'. False if Node did not let go (then nothing may read the socket but Node).
 */
export function parseFromStream(socket: net.Socket, parser: Parser): boolean {
  if (parser._consumed === true) {
    const noop = () => {}
    socket.on('data', noop)
    socket.removeListener('data', noop)
  }
  return parser._consumed !== true
}

// Zeros stand for body bytes the parser must count past; it never looks at them.
let skipBuffer: Buffer | undefined

/**
 * Tells the parser that `n` bytes of the current body went past it (into a file): it
 * counts them as parsed without handing them to the request, so it ends the message
 * where the body ends and reads the next request from the byte after it. True once it
 * took all `n`.
 */
export function skipBody(parser: Parser, n: number): boolean {
  const kOnBody = parser.constructor.kOnBody
  if (typeof kOnBody !== 'number') return false
  skipBuffer ??= Buffer.alloc(1 << 20)
  const onBody = parser[kOnBody]
  parser[kOnBody] = undefined
  try {
    for (let left = n; left > 0; ) {
      const chunk = skipBuffer.subarray(0, Math.min(left, skipBuffer.length))
      if (parser.execute(chunk) !== chunk.length) return false
      left -= chunk.length
    }
    return true
  } finally {
    parser[kOnBody] = onBody
  }
}

/**
 * Takes what the parser had put into the request (read() with no 'data' listener), and
 * an undo that makes the request look unread to the server again (`req._consuming`: the
 * server drops the body of a request nobody read once its response finished, so that
 * it reaches the next request).
 */
export function takeParsedBody(req: http.IncomingMessage): { early: Buffer | null; unread(): void } | undefined {
  const r = req as unknown as { _consuming?: boolean }
  const consuming = r._consuming
  // read() until empty: Node 26's read() with no size gives one buffered chunk at a time.
  const chunks: Buffer[] = []
  for (let c: Buffer | null; req.readableLength > 0 && (c = req.read() as Buffer | null) !== null; ) chunks.push(c)
  const early = chunks.length === 0 ? null : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
  if (req.readableLength > 0) {
    // Something read() does not give (a later line's layout): it all goes back, in order.
    if (early !== null) req.unshift(early)
    r._consuming = consuming
    return undefined
  }
  return { early, unread: () => void (r._consuming = consuming) }
}

/**
 * Lets the socket's stream carry bytes to the parser again. While the parser consumed
 * the handle, Node started and stopped the handle's reads by itself, so the stream may
 * still count a read in flight that never ends (`_readableState.reading`) and never ask
 * for one: the read is started here (net.Socket's `_read`, which does nothing if the
 * handle reads already). The stream flows unless the server paused the socket for its
 * pipelined responses (`socket._paused`): then what arrives waits in the stream until
 * the server resumes it itself.
 */
export function readOn(socket: net.Socket): void {
  if (socket.destroyed) return
  ;(socket as unknown as { _read(n: number): void })._read(socket.readableHighWaterMark)
  if ((socket as unknown as { _paused?: boolean })._paused !== true) socket.resume()
}

/** The response of `req`, once it holds the socket (not while earlier responses go). */
export function responseOf(req: http.IncomingMessage): http.ServerResponse | undefined {
  const res = (req.socket as unknown as { _httpMessage?: (http.ServerResponse & { req?: unknown }) | null })._httpMessage
  return res?.req === req ? res : undefined
}

/**
 * Sends the 100 Continue a client asked for, if the application (a 'checkContinue'
 * listener) has not: the upload is the application accepting the body.
 */
export function continueIfOwed(req: http.IncomingMessage): void {
  const res = responseOf(req) as (http.ServerResponse & { _expect_continue?: boolean; _sent100?: boolean }) | undefined
  if (res !== undefined && res._expect_continue === true && res._sent100 !== true && !res.headersSent) res.writeContinue()
}
