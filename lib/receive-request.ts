// receiveToFile(req, file): an HTTP request's body into a file, with Node's HTTP parser
// kept in step with the connection, so the next request on it is answered.
//
// Node's parser reads the connection in C++ and has usually read the start of the body
// (often all of it) into `req` before the handler runs. So:
// - A Content-Length body not all here yet goes zero-copy: the parser is moved off the
//   socket's handle (as Node does when code reads the socket), what it had put in `req`
//   is taken out and the socket upload writes it first (never through the socket's
//   stream: the parser counted it already), and the relay thread reads exactly the rest
//   of the body. The parser is then told the
//   body went past it (http-parser.ts skipBody), so it ends the request there and reads
//   the next one from the byte after it.
// - A body that came whole with the headers, a chunked body (Node's parser takes its
//   framing and trailers off) and a body under TLS go through `req` as copies written
//   to the file; the result says `mechanism: 'stream'` and why in `fallback`.
import * as fs from 'node:fs'
import type * as http from 'node:http'
import * as net from 'node:net'
import { abortError, codedError, invalidArgValue, invalidState, promised } from './errors'
import { continueIfOwed, httpParserOf, parseFromStream, responseOf, readOn, skipBody, takeParsedBody } from './http-parser'
import { protocolLayer } from './node-internals'
import { native } from './native'
import { checkCommonOptions, lengthOption } from './relay-socket'
import { integerOption } from './validate'
import { checkFile, checkWritableFd, closeUpload, openPath } from './upload-target'

type Target = string | number | fs.promises.FileHandle

interface Options {
  offset?: number
  length?: number
  signal?: AbortSignal
}

export interface RequestUploadResult {
  bytes: number
  mechanism: 'copy' | 'splice' | 'stream'
  fallback?: string
}

/**
 * The socket-level upload (receive-to-file.ts): `head` first, then the bytes Node
 * buffered, then the socket's. Rejected without `err.bytes`, it took none of them.
 */
export type SocketUpload = (socket: net.Socket, file: Target, options: object, head: Buffer | null) => Promise<RequestUploadResult>

/** A request the HTTP server parsed (its body is what it carries). */
export function isServerRequest(value: unknown): value is http.IncomingMessage {
  const req = value as { method?: unknown; socket?: unknown; headers?: unknown } | null
  return typeof req === 'object' && req !== null && typeof req.method === 'string' && req.socket instanceof net.Socket && typeof req.headers === 'object'
}

export function receiveRequest(req: http.IncomingMessage, file: Target, options: unknown, fromSocket: SocketUpload): Promise<RequestUploadResult> {
  return promised(async () => {
    const { o, plan } = checkCommonOptions<Options>(options)
    const offset = integerOption('options.offset', o.offset, 0, 0, Number.MAX_SAFE_INTEGER)
    const given = lengthOption('options.length', o.length)
    checkFile(file)
    checkUnread(req)
    const length = bodyLength(req)
    if (given !== undefined && given !== length) {
      throw invalidArgValue('options.length', given, `must be the request's Content-Length (${length ?? 'none: the body is chunked'}) or left out`)
    }
    continueIfOwed(req)
    // A handler runs while the parser is in the middle of the bytes it read: the start
    // of the body in the same segment (or all of it, and requests after it) is parsed
    // only after the handler returns. Once this turn's parsing is done, the request holds
    // everything of the body the parser took.
    await new Promise<void>((resolve) => setImmediate(resolve))
    if (plan.signal?.aborted) throw abortError(plan.signal)
    checkUnread(req)
    // Before any byte is taken, on either path: an fd the upload could not write at its offset.
    if (typeof file !== 'string') await checkWritableFd(file, plan.signal)
    checkUnread(req)
    const socket = req.socket
    const parser = httpParserOf(socket)
    const layer = protocolLayer(socket)
    if (req.complete || length === undefined || layer !== undefined) {
      const why = req.complete
        ? 'the whole body came with the headers: Node\'s HTTP parser had already read it into the request'
        : length === undefined
          ? 'a chunked body: Node\'s HTTP parser takes its framing off'
          : `${layer!.reason.split(':')[0]}: the body goes through the request`
      return copyThroughRequest(req, file, offset, plan.signal, why)
    }
    if (parser === undefined || parser.incoming !== req) throw invalidState('the request is no longer the one Node\'s HTTP parser reads')
    // Synchronously, before anything else reads the socket: what the parser had put in
    // the request is taken out of it, and the socket upload writes it first. It never
    // goes onto the socket's stream: the parser counted it already, and would count it
    // a second time from there.
    const taken = takeParsedBody(req)
    if (taken === undefined) return copyThroughRequest(req, file, offset, plan.signal, 'the request\'s buffered body could not be taken out of it whole')
    const { early, unread } = taken
    if (!parseFromStream(socket, parser)) {
      if (early !== null) req.unshift(early)
      unread()
      return copyThroughRequest(req, file, offset, plan.signal, 'Node\'s HTTP parser did not let go of the socket')
    }
    socket.pause() // no 'data' reaches the parser until the upload is over
    let result: RequestUploadResult
    try {
      result = await fromSocket(socket, file, { ...o, length }, early)
    } catch (err) {
      if ((err as { bytes?: unknown }).bytes === undefined) {
        // It never started: the body is where it was (the early bytes back in the
        // request, where the parser had put them); the parser reads on as if nothing
        // had happened.
        if (early !== null) req.unshift(early)
        unread()
        readOn(socket)
      } else {
        // Some of the body went to the file and how much the relay had read from the
        // socket is not known: the connection cannot carry another request. The
        // socket stays paused, and the response closes it.
        const res = responseOf(req)
        if (res !== undefined) res.shouldKeepAlive = false
      }
      throw err
    }
    if (!skipBody(parser, length - (early?.length ?? 0))) {
      socket.destroy()
      throw codedError('ERR_ZEROCOPY_HTTP_PARSER', 'Node\'s HTTP parser did not take the end of the body: the connection was closed')
    }
    readOn(socket) // the next request
    req.resume() // its 'end' (nothing is left in it)
    return result
  })
}

function checkUnread(req: http.IncomingMessage): void {
  const r = req as http.IncomingMessage & { _dumped?: boolean }
  if (req.readableDidRead || req.readableFlowing === true || req.listenerCount('data') > 0 || r._dumped === true || req.readableEnded) {
    throw invalidState('the request\'s body is being read already (a \'data\' listener, pipe(), resume() or read()): pass a request nothing has read')
  }
  if (req.readableEncoding !== null) throw invalidState('the request has an encoding set (setEncoding): its buffered body is text, not bytes')
  if (req.method === 'CONNECT' || (req as { upgrade?: boolean }).upgrade === true) {
    throw invalidState('the request is a CONNECT or an upgrade: what follows its headers is not a body (use receiveToFile(socket) on the socket it gives)')
  }
}

/** The body's length from Content-Length (0 without one), or undefined for a chunked body. */
function bodyLength(req: http.IncomingMessage): number | undefined {
  if (req.headers['transfer-encoding'] !== undefined) return undefined
  const cl = req.headers['content-length']
  return cl === undefined ? 0 : Number(cl)
}

/**
 * The body as `req` gives it, each chunk written to the file at its place. An abort or a
 * file error stops the writing; the rest of the body is then read and dropped, so the
 * connection stays in step for the next request.
 */
async function copyThroughRequest(req: http.IncomingMessage, file: Target, offset: number, signal: AbortSignal | undefined, fallback: string): Promise<RequestUploadResult> {
  if (signal?.aborted) throw abortError(signal)
  const target = await openTarget(file, offset, signal)
  let bytes = 0
  let failed = true
  try {
    await new Promise<void>((resolve, reject) => {
      let writing = Promise.resolve()
      let stopped = false
      const stop = (err: Error | undefined) => {
        if (stopped) return
        stopped = true
        req.removeListener('data', onData)
        req.removeListener('end', onEnd)
        req.removeListener('close', onClose)
        signal?.removeEventListener('abort', onAbort)
        if (err === undefined) return resolve()
        req.resume() // the rest of the body is dropped, and the parser reads on
        reject(Object.assign(err, { bytes }))
      }
      const onData = (chunk: Buffer) => {
        req.pause()
        const at = offset + bytes
        writing = writing
          .then(() => target.write(chunk, at))
          .then(() => {
            bytes += chunk.length
            if (!stopped) req.resume()
          })
        writing.catch((err: Error) => stop(err))
      }
      const onEnd = () => void writing.then(() => stop(undefined), () => {})
      const onClose = () => {
        if (!req.complete) stop(codedError('ERR_STREAM_PREMATURE_CLOSE', 'The connection closed before the whole request body came'))
      }
      const onAbort = () => stop(abortError(signal!))
      req.on('data', onData)
      req.once('end', onEnd)
      req.once('close', onClose)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
    failed = false
  } finally {
    // Failed: a write still blocked (a frozen mount) holds the close; not waited for past the grace.
    await target.close(failed)
  }
  return { bytes, mechanism: 'stream', fallback }
}

/** The file as upload.ts opens it: a path created (truncated at offset 0); an fd or FileHandle stays the caller's. */
async function openTarget(file: Target, offset: number, signal: AbortSignal | undefined): Promise<{ write(b: Buffer, at: number): Promise<void>; close(failed: boolean): Promise<void> }> {
  const writeAll = async (write: (b: Buffer, from: number, at: number) => Promise<number>, b: Buffer, at: number) => {
    for (let done = 0; done < b.length; ) done += await write(b, done, at + done)
  }
  // Refused as the socket upload refuses it (read-only, O_APPEND, a pseudo-file), before any of the body is taken.
  const given = typeof file === 'number' ? file : typeof file === 'string' ? -1 : file.fd
  if (given >= 0) native.checkUploadFile(given, 'file')
  if (typeof file === 'number') {
    const write = (b: Buffer, from: number, at: number) =>
      new Promise<number>((resolve, reject) => fs.write(file, b, from, b.length - from, at, (err, n) => (err ? reject(err) : resolve(n))))
    return { write: (b, at) => writeAll(write, b, at), close: async () => {} }
  }
  // A path as the socket upload opens it: no wait without bound, regular files only.
  const handle = typeof file === 'string' ? await openPath(file, offset, signal) : file
  const write = async (b: Buffer, from: number, at: number) => (await handle.write(b, from, b.length - from, at)).bytesWritten
  return { write: (b, at) => writeAll(write, b, at), close: async (failed) => (typeof file === 'string' ? closeUpload(handle, failed) : undefined) }
}
