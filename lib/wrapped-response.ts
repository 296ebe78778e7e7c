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
  const heard = eventsOf(target)
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
      if (!more) await heard.next('drain', signal)
    }
    if (end) {
      const finished = heard.next('finish', signal)
      direct(() => target.end())
      await finished
    }
  } catch (err) {
    if (calls > 0) direct(() => target.destroy())
    throw err
  }
  return body.copied(bytes, calls, REPLACED_WRITE_PATH)
}

/**
 * The response's 'drain', 'finish' and 'close', each heard through one listener added
 * once per response and never removed. A middleware may route res.on() elsewhere while
 * its removeListener() looks only at res (compression() puts 'drain' on its gzip
 * stream): a listener added and removed per wait would stay there, one per wait. The
 * listeners hold only this small table, which lives as long as the response.
 */
class ResponseEvents {
  private readonly waiting = new Map<string, Set<(event: string) => void>>()
  private closed = false

  constructor(res: NodeJS.EventEmitter) {
    for (const event of ['drain', 'finish', 'close']) res.on(event, () => this.heard(event))
  }

  /** Resolves on `event`; rejects if the response closes first (or closed already) or `signal` aborts. */
  next(event: 'drain' | 'finish', signal: AbortSignal | undefined): Promise<void> {
    if (this.closed) return Promise.reject(socketClosed('The response closed before its body went'))
    return new Promise<void>((resolve, reject) => {
      const done = (heard: string) => {
        this.waiting.get(event)?.delete(done)
        this.waiting.get('close')?.delete(done)
        signal?.removeEventListener('abort', onAbort)
        if (heard === event) resolve()
        else reject(heard === 'close' ? socketClosed('The response closed before its body went') : abortError(signal!))
      }
      const onAbort = () => done('abort')
      this.wait(event, done)
      this.wait('close', done)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  private wait(event: string, fn: (event: string) => void): void {
    let set = this.waiting.get(event)
    if (set === undefined) this.waiting.set(event, (set = new Set()))
    set.add(fn)
  }

  private heard(event: string): void {
    if (event === 'close') this.closed = true
    for (const fn of [...(this.waiting.get(event) ?? [])]) fn(event)
  }
}

const events = new WeakMap<object, ResponseEvents>()

/** The response's {@link ResponseEvents}, made (and its listeners added) on first use. */
function eventsOf(res: NodeJS.EventEmitter): ResponseEvents {
  let e = events.get(res)
  if (e === undefined) events.set(res, (e = new ResponseEvents(res)))
  return e
}
