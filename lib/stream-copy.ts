// The honest copy path, for targets whose bytes Node transforms or frames: a TLS socket,
// an HTTP/2 stream, a socket over a JS stream, any Writable that is not a plain kernel
// socket. Bytes written to such a target's fd would land under the protocol layer
// (plaintext on a TLS connection, garbage inside an HTTP/2 connection), so here every
// byte goes through the stream's own `_write`, as a copy this module owns: once the
// stream's write callback has fired for the last chunk, nothing refers to the caller's
// memory or file any more, whatever the stream keeps. Results say so: `zeroCopy: false`,
// `copied: true`, and `fallback` names the layer.
//
// Order: one StreamCopier per stream. Each send writes an empty marker Buffer into the
// stream at call time, so it takes its place among Node's writes then. When the stream
// hands the marker to `_write` (every earlier write has completed), the copier holds the
// marker's callback, writes the send's chunks one at a time through the original
// `_write`, and calls the marker's callback at the end: the Writable itself keeps every
// later write, and end(), behind the send. A send cut before any byte went (an abort)
// lets its marker through untouched; one cut after some went destroys the stream, since
// the peer holds a cut message.
import * as fs from 'node:fs'
import * as http2 from 'node:http2'
import * as net from 'node:net'
import type { Writable } from 'node:stream'
import { promisify } from 'node:util'
import { abortError, codedError, socketClosed, truncatedFile, writeAfterEnd } from './errors'
import { bodyLength, openFile, type FileSource, type LentFile } from './file-source'
import { native } from './native'
import { installStreamGate, isHttp2Stream, streamError, tcpFdUnderTls, type GateHooks, type StreamGate } from './node-internals'
import { newCounters, type ChannelCounters } from './channel-types'
import type { SendFileResult, SendResult } from './send-requests'

const read = promisify(fs.read)
// Bytes per write of copied data. TLS cuts records of 16 KiB anyway; 256 KiB keeps the
// number of write callbacks low and the memory held per send bounded.
export const COPY_CHUNK = 256 * 1024

/** What a copy job reports while it runs. */
interface Progress {
  bytes: number
  calls: number
}

type WriteChunk = (chunk: Buffer) => Promise<void>

/** One send through the stream: its marker, its writes, and its settlement. */
class CopyJob {
  readonly marker = Buffer.alloc(0)
  readonly progress: Progress = { bytes: 0, calls: 0 }
  started = false
  settled = false
  private cutError: Error | undefined
  private onCut: ((err: Error) => void) | undefined
  private markSettled!: () => void
  /** Resolves once the job settled (for close barriers). */
  readonly whenSettled = new Promise<void>((resolve) => (this.markSettled = resolve))

  constructor(
    readonly run: (write: WriteChunk, job: CopyJob) => Promise<void>,
    private readonly onSettled: (err: Error | undefined) => void,
  ) {}

  settle(err: Error | undefined): void {
    if (this.settled) return
    this.settled = true
    this.onSettled(err)
    this.markSettled()
  }

  /** Stops the job (an abort, the stream closing): it settles with `err` at once. */
  cut(err: Error): void {
    if (this.cutError !== undefined || this.settled) return
    this.cutError = err
    this.onCut?.(err)
  }

  /** Why it was cut, if it was: `run` checks it after every wait and writes nothing more. */
  get cutReason(): Error | undefined {
    return this.cutError
  }

  whenCut(fn: (err: Error) => void): void {
    this.onCut = fn
  }
}

const copiers = new WeakMap<Writable, StreamCopier>()

/** The copier of `stream`, made on first use. */
export function copierFor(stream: Writable, reason: string): StreamCopier {
  let c = copiers.get(stream)
  if (c === undefined) {
    c = new StreamCopier(stream, reason)
    copiers.set(stream, c)
  }
  return c
}

export class StreamCopier implements GateHooks {
  private readonly queue: CopyJob[] = []
  private readonly byMarker = new Map<Buffer, CopyJob>()
  private gate: StreamGate | undefined
  readonly counters: ChannelCounters = newCounters()

  constructor(
    readonly stream: Writable,
    /** Why bytes go through the stream: the layer a write to the fd would bypass. */
    readonly reason: string,
  ) {}

  /** Sends not yet settled. */
  get unsent(): number {
    return this.queue.length
  }

  /** Resolves once every send queued before this call has settled. */
  barrier(): Promise<void> {
    return Promise.all(this.queue.map((j) => j.whenSettled)).then(() => {})
  }

  /** Copies of `views` written through the stream; one write per view when `each`. */
  sendViews(views: readonly Uint8Array[], each: boolean): Promise<SendResult> {
    return this.submit(
      async (write, job) => {
        for (const v of views) {
          const step = each ? Math.max(v.length, 1) : COPY_CHUNK
          for (let at = 0; at < v.length || (each && at === 0); at += step) {
            if (job.cutReason) return
            await write(Buffer.from(v.subarray(at, at + step))) // Buffer.from(Uint8Array) copies
          }
        }
      },
      (p) => ({ bytes: p.bytes, zeroCopy: false, copied: true, mechanism: 'copy', calls: p.calls, fallback: this.reason }),
    )
  }

  /** The file's bytes (from `offset`, `length` of them or to its end), read and written as copies. */
  sendFile(
    file: FileSource | LentFile,
    offset: number,
    length: number | undefined,
    signal: AbortSignal | undefined,
    checkOffset: (st: fs.Stats) => void,
    exact = false,
  ): Promise<SendFileResult> {
    let job: CopyJob | undefined
    const onAbort = () => job?.cut(abortError(signal!))
    const sent = this.submit<SendFileResult>(
      async (write, j) => {
        // The file is closed only after its last read returned (never under a read in
        // flight, whose fd number could be reused), also when the job was cut meanwhile.
        const f = await openFile(file)
        try {
          if (j.cutReason) return
          checkOffset(f.stat)
          const seekable = f.stat.isFile() || f.stat.isBlockDevice()
          await copyFile(f.fd, seekable ? offset : null, bodyLength(f, offset, length), f.mappable || exact, j, write)
        } finally {
          await f.close()
        }
      },
      (p) => ({ bytes: p.bytes, zeroCopy: false, copied: true, mechanism: 'read+copy', windows: 0, calls: p.calls, fallback: this.reason }),
      (j) => (job = j),
    )
    if (signal !== undefined) {
      signal.addEventListener('abort', onAbort, { once: true })
      const unlisten = () => signal.removeEventListener('abort', onAbort)
      sent.then(unlisten, unlisten)
    }
    return sent
  }

  private submit<R>(run: (write: WriteChunk, job: CopyJob) => Promise<void>, result: (p: Progress) => R, made?: (job: CopyJob) => void): Promise<R> {
    const stream = this.stream
    if (stream.destroyed) return Promise.reject(streamError(stream) ?? destroyed(stream))
    if (stream.writableEnded) return Promise.reject(writeAfterEnd())
    return new Promise<R>((resolve, reject) => {
      const job = new CopyJob(run, (err) => {
        if (err !== undefined) reject(err)
        else resolve(result(job.progress))
      })
      // Cut before its turn: it settles now; its marker passes untouched later.
      job.whenCut((err) => this.finish(job, err))
      made?.(job)
      if (this.gate === undefined) this.gate = installStreamGate(stream, this)
      this.queue.push(job)
      this.byMarker.set(job.marker, job)
      this.counters.sends++
      // Refused or destroyed before the marker reached _write: the job never started.
      try {
        stream.write(job.marker, (err?: Error | null) => {
          if (err && !job.started) this.finish(job, err)
        })
      } catch (err) {
        // A write() that throws (a subclass's own): the marker is not in the stream.
        this.byMarker.delete(job.marker)
        this.finish(job, err as Error)
        this.maybeUngate()
      }
    })
  }

  onWrite(chunk: unknown, _pass: () => void, cb: (err?: Error | null) => void): boolean {
    const job = Buffer.isBuffer(chunk) ? this.byMarker.get(chunk) : undefined
    if (job === undefined) return false
    this.byMarker.delete(job.marker)
    if (job.settled) {
      cb() // cut before its turn: nothing of it went, the stream carries on
      this.maybeUngate()
    } else {
      void this.start(job, cb)
    }
    return true
  }

  onFinal(): boolean {
    return false // the Writable calls _final only after our markers completed
  }

  /** Runs `job` while the stream holds its marker; `markerDone` lets the stream go on. */
  private async start(job: CopyJob, markerDone: (err?: Error | null) => void): Promise<void> {
    job.started = true
    const stream = this.stream
    const gate = this.gate!
    let ended = false
    // The write in flight, if any: a cut stops waiting for it (a reset HTTP/2 stream on
    // Node 24 and later never calls back), so that `run` ends and closes its file.
    let inFlight: (() => void) | undefined
    const end = (err: Error | undefined) => {
      if (ended) return
      ended = true
      stream.removeListener('close', onClose)
      // Part of it went: the peer must not take a cut message for a whole one.
      if (err !== undefined && job.progress.calls > 0) resetStream(stream)
      this.finish(job, err)
      markerDone()
      this.maybeUngate()
      inFlight?.()
    }
    const onClose = () => job.cut(streamError(stream) ?? destroyed(stream))
    stream.once('close', onClose)
    job.whenCut(end) // an abort ends it now; `run` finds cutReason and writes nothing more
    const write: WriteChunk = (chunk) =>
      new Promise<void>((resolve, reject) => {
        if (job.cutReason !== undefined) return resolve()
        job.progress.calls++
        this.counters.copyCalls++
        inFlight = resolve
        gate.write(chunk, (err) => {
          inFlight = undefined
          // A stream destroyed meanwhile calls back without an error for a write it
          // dropped (net sockets, HTTP/2 streams on Node 24 and later): not a success.
          const failed = err ?? (stream.destroyed ? (streamError(stream) ?? socketClosed('The stream was destroyed under this write')) : undefined)
          if (failed) return reject(failed)
          job.progress.bytes += chunk.length
          this.counters.copyBytes += chunk.length
          resolve()
        })
      })
    try {
      await job.run(write, job)
      end(job.cutReason)
    } catch (err) {
      end(job.cutReason ?? (err as Error))
    }
  }

  private finish(job: CopyJob, err: Error | undefined): void {
    const i = this.queue.indexOf(job)
    if (i >= 0) this.queue.splice(i, 1)
    job.settle(err)
  }

  /** The gate is there only while a marker is in the stream (Node's writev batching is off meanwhile). */
  private maybeUngate(): void {
    if (this.queue.length > 0 || this.byMarker.size > 0 || this.gate === undefined) return
    this.gate.undo()
    this.gate = undefined
  }
}

/** A send on a stream that is gone: Node's own codes (a socket is closed, a stream destroyed). */
function destroyed(stream: Writable): Error {
  if (stream instanceof net.Socket) return socketClosed('The socket was closed before the send completed')
  return codedError('ERR_STREAM_DESTROYED', 'Cannot call write after a stream was destroyed')
}

/**
 * Ends `stream` so that its peer cannot take what it got for a whole message: a plain
 * destroy() would not. Under TLS it ends the TCP stream with a FIN, which a client reads
 * as a clean end, so the TCP connection is reset (RST) first; an HTTP/2 stream destroyed
 * with data still queued is ended with END_STREAM, so it is reset instead (RST_STREAM
 * CANCEL, which Node does not emit as an 'error').
 */
export function resetStream(stream: Writable): void {
  const tcp = tcpFdUnderTls(stream)
  if (tcp !== undefined) native.disconnect(tcp)
  if (isHttp2Stream(stream) && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL)
  else stream.destroy()
}

/**
 * Reads `length` bytes (or to EOF when undefined) from `pos` (null: the fd's own
 * position, for pipes) and writes them, reading the next chunk while the last is
 * written. With `exact` (a mapped file's size, or a length an HTTP body promised) a
 * source that ends early was truncated under the send.
 */
async function copyFile(fd: number, pos: number | null, length: number | undefined, exact: boolean, job: CopyJob, write: WriteChunk): Promise<void> {
  let left = length ?? Infinity
  const next = () => {
    const chunk = Buffer.allocUnsafe(Math.min(COPY_CHUNK, left))
    const at = pos
    if (pos !== null) pos += chunk.length
    return read(fd, chunk, 0, chunk.length, at).then(({ bytesRead }) => chunk.subarray(0, bytesRead))
  }
  let reading: Promise<Buffer> | undefined = left > 0 ? next() : undefined
  while (reading !== undefined) {
    const chunk: Buffer = await reading
    reading = undefined
    if (job.cutReason) return
    if (chunk.length === 0) {
      if (exact && length !== undefined) throw truncatedFile()
      return
    }
    left -= chunk.length
    reading = left > 0 ? next() : undefined
    // Never leave a read in flight on an fd about to be closed.
    try {
      await write(chunk)
    } catch (err) {
      await reading?.catch(() => undefined)
      throw err
    }
    if (job.cutReason) {
      await reading?.catch(() => undefined)
      return
    }
  }
}
