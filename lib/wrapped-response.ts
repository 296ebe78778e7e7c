// Responses whose write path a middleware replaced: Express's compression() (and
// others like it) put their own res.write/res.end on the response and turn the body
// into something else (gzip). A body sent to the socket under them would reach the
// client raw after a `Content-Encoding: gzip`. So such a response gets its body through
// its own res.write, as copies this module owns (a middleware may keep a chunk after
// write() returned: zlib reads it later), and res.end; the result says so.
import * as http from 'node:http'
import * as http2 from 'node:http2'
import { abortError, socketClosed } from './errors'

type Fn = (...args: unknown[]) => unknown

// Node's own: any other write/end on a response (own property, or a subclass's) is a
// replaced write path.
const NODE_WRITES = new Set<unknown>([http.OutgoingMessage.prototype.write, http2.Http2ServerResponse.prototype.write])
const NODE_ENDS = new Set<unknown>([http.OutgoingMessage.prototype.end, http2.Http2ServerResponse.prototype.end])

export const REPLACED_WRITE_PATH = 'a middleware replaced the response\'s write path (res.write/res.end, as compression() does): the body went through it as copies'

/** Whether `write`/`end` (the response's, under any hold of this package's) are not Node's own. */
export function writePathReplaced(write: unknown, end: unknown): boolean {
  return !NODE_WRITES.has(write) || !NODE_ENDS.has(end)
}

/** What a body gives the replaced write path. */
export interface CopiedBody<R> {
  /** The body as Buffers of its own, in order. */
  copies(): AsyncIterable<Buffer>
  /** The result of a body that went through the write path. */
  copied(bytes: number, calls: number, why: string): R
}

/**
 * Writes `body` through the response's write path (`direct` calls it past this
 * package's own hold), waiting for 'drain' when it says so, then ends the response
 * unless `end` is false; resolves once the response finished (or, without `end`, once
 * the last write was taken). No header is set here: the middleware and Node decide the
 * framing (a transformed body's length is not the source's). An abort or a failure
 * before the first write leaves the response untouched; after it, the response is
 * destroyed (the client must not take a cut body for a whole one).
 */
export async function writeThrough<R>(
  res: http.ServerResponse | http2.Http2ServerResponse,
  body: CopiedBody<R>,
  end: boolean,
  direct: (fn: () => void) => void,
  signal: AbortSignal | undefined,
): Promise<R> {
  const target = res as unknown as { write: Fn; end: Fn } & NodeJS.EventEmitter & { destroyed: boolean; destroy(): void }
  let bytes = 0
  let calls = 0
  try {
    for await (const chunk of body.copies()) {
      if (signal?.aborted) throw abortError(signal)
      if (target.destroyed) throw socketClosed('The response was destroyed before its body went')
      let more = true
      direct(() => (more = target.write(chunk) !== false))
      bytes += chunk.length
      calls++
      if (!more) await settledBy(target, 'drain', signal)
    }
    if (end) {
      const finished = settledBy(target, 'finish', signal)
      direct(() => target.end())
      await finished
    }
  } catch (err) {
    if (calls > 0) direct(() => target.destroy())
    throw err
  }
  return body.copied(bytes, calls, REPLACED_WRITE_PATH)
}

/** Resolves on `event`; rejects if the response closes first or `signal` aborts. */
function settledBy(res: NodeJS.EventEmitter, event: string, signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      res.removeListener(event, onEvent)
      res.removeListener('close', onClose)
      signal?.removeEventListener('abort', onAbort)
      if (err === undefined) resolve()
      else reject(err)
    }
    const onEvent = () => done()
    const onClose = () => done(socketClosed('The response closed before its body went'))
    const onAbort = () => done(abortError(signal!))
    res.once(event, onEvent)
    res.once('close', onClose)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
