// sendFileZeroCopy: a file (or a range of it) sent on a socket, resolving only once the
// kernel holds no page of it, so the file may then be overwritten or truncated without
// changing what the peer receives. sendfile(2) cannot promise that (its pages stay
// referenced after it returns, even after the ACK); this sends from read-only file
// mappings through the socket's channel instead, where every byte has a kernel
// completion.
//
// The call takes its place in the socket's byte order at once (a FileRequest queued
// synchronously); a producer then opens the file and supplies it in pieces: windows
// mapped (native/mapping.cc), faulted in on the thread pool unless already in the page
// cache, and unmapped the moment the kernel released them, at most `maxWindows` at a
// time. A file that cannot be mapped (a pipe, a FIFO, a /proc file whose size reads 0)
// is read into memory and sent as copies, and the result says so.
import * as dgram from 'node:dgram'
import * as fs from 'node:fs'
import { promisify } from 'node:util'
import { abortError, codedError, invalidArgType, outOfRange, promised, truncatedFile } from './errors'
import { pageSize } from './memory'
import { native } from './native'
import { FilePiece, FileRequest, MAPPED_CHUNK, type SendFileResult, type SendRequest } from './send-requests'
import type { SendChannel } from './send-channel'
import { attach, closeAfter, type SocketTarget, type ZeroCopyOptions, type ZeroCopySocket } from './zerocopy-socket'
import { isResponse, sendToResponse, type ResponseBody, type ResponseTarget } from './http-response'
import { booleanOption, integerOption, optionsArg } from './validate'
import { COPY_CHUNK } from './stream-copy'
import { bodyLength, checkFile, LentFile, openFile, type FileSource, type OpenFile } from './file-source'

export type { SendFileResult } from './send-requests'

// 32 MiB windows, 4 at a time (128 MiB of address space, page-cache pages only):
// measured here (1 GiB cached file, loopback, 7 interleaved rounds) 3.39 GB/s against
// 3.08 with 4 MiB windows and 3.41 for C sending from one whole-file mapping. Fewer
// windows mean fewer mmap/mincore/munmap calls and more bytes queued while the oldest
// window waits for its completion.
const DEFAULT_WINDOW = 32 << 20
// Pieces of an unmappable file held in memory at once.
const READ_PIECES = 8
const read = promisify(fs.read)

export type { FileSource } from './file-source'

/** Options for {@link sendFileZeroCopy}. */
export interface SendFileOptions {
  /** Where to start in the file. Default 0. */
  offset?: number
  /** How many bytes to send. Default: to the end of the file. */
  length?: number
  /**
   * Stops the send: the Promise rejects with an AbortError at once. Whatever of the
   * file the kernel already held is released first, by resetting the connection if
   * any byte of it was sent (the peer must not take a cut body for a whole one); if
   * none was, the socket stays usable.
   */
  signal?: AbortSignal
  /** Bytes mapped per window (rounded up to pages). Default 32 MiB. */
  windowSize?: number
  /** Windows mapped at once. Default 4. */
  maxWindows?: number
  /** Options for the socket's ZeroCopySocket, if this call attaches it. */
  socketOptions?: ZeroCopyOptions
  /**
   * For an HTTP response target only: end the response after the file (default true).
   * With `end`, a response whose headers were not sent yet gets Content-Length.
   */
  end?: boolean
}

interface FilePlan {
  offset: number
  length: number | undefined
  windowSize: number
  maxWindows: number
  signal: AbortSignal | undefined
  end: boolean
  /** `length` was promised (an HTTP body's Content-Length): a source that ends before it was truncated. */
  exact?: boolean
}

function checkOptions(options: unknown): FilePlan & { socketOptions: ZeroCopyOptions | undefined } {
  const o = optionsArg<SendFileOptions>(options)
  const signal = o.signal
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', signal)
  const windowSize = integerOption('options.windowSize', o.windowSize, DEFAULT_WINDOW, 1, 2 ** 40)
  return {
    offset: integerOption('options.offset', o.offset, 0, 0, Number.MAX_SAFE_INTEGER),
    length: o.length === undefined ? undefined : integerOption('options.length', o.length, 0, 0, Number.MAX_SAFE_INTEGER),
    windowSize: Math.ceil(windowSize / pageSize) * pageSize,
    maxWindows: integerOption('options.maxWindows', o.maxWindows, 4, 1, 1024),
    signal,
    socketOptions: o.socketOptions,
    end: o.end === undefined ? true : booleanOption('options.end', o.end),
  }
}


/**
 * Sends a file, or `length` bytes of it from `offset`, on a connected stream socket (a
 * `net.Socket` or an fd), after everything queued on the socket before this call, and
 * resolves once the kernel holds no page of it. Overwriting or truncating the file
 * after that cannot change what the peer receives. Anything written or sent after
 * this call goes after the file.
 *
 * On a TLS socket, an HTTP/2 stream or any other stream Node transforms, the file is
 * read and written through the stream's own write() as copies (the result says
 * `read+copy` and why in `fallback`), resolving once the stream took every byte. On an
 * HTTP response (`http.ServerResponse`, HTTPS too, or `Http2ServerResponse`) it waits
 * for the response's turn on its connection, sends the headers (with Content-Length)
 * and the file as the body, and ends the response unless `options.end` is false.
 *
 * Rejects (never throws) with `ERR_ZEROCOPY_FILE_TRUNCATED` when the file shrinks under
 * the send (the connection is then reset: the peer must not take a cut body for a
 * whole one), with an `AbortError` when `signal` aborts, with the socket's error when
 * the connection fails, and with `ERR_INVALID_ARG_TYPE` for a dgram socket.
 */
export function sendFileZeroCopy(socket: SocketTarget | ResponseTarget, file: FileSource, options?: SendFileOptions): Promise<SendFileResult> {
  return promised(() => {
    const plan = checkOptions(options)
    const source = checkFile(file)
    if (plan.signal?.aborted) return Promise.reject(abortError(plan.signal))
    if (isResponse(socket)) return sendToResponse(socket, fileBody(source, plan), plan.end, (t) => attach(t, plan.socketOptions).zc)
    if (socket instanceof dgram.Socket) {
      throw invalidArgType('socket', 'a stream socket (a net.Socket or an fd): a file has no datagram boundaries', socket)
    }
    const { zc, created } = attach(socket, plan.socketOptions, typeof socket !== 'number')
    if (zc.channel?.datagram) {
      if (created) void zc.close()
      throw invalidArgType('socket', 'a stream socket (a net.Socket or an fd): a file has no datagram boundaries', socket)
    }
    const sent = fileOn(zc, source, plan)
    return created && typeof socket === 'number' ? closeAfter(sent, zc) : sent
  })
}

/** The file on `zc`: mapped windows through its channel, or read copies through its stream. */
function fileOn(zc: ZeroCopySocket, source: FileSource | LentFile, plan: FilePlan): Promise<SendFileResult> {
  const copier = zc.copier
  if (copier !== undefined) return zc.copy(() => copier.sendFile(source, plan.offset, plan.length, plan.signal, (st) => checkOffset(st, plan.offset), plan.exact))
  return sendFile(zc.channel!, (make) => zc.submit<SendFileResult>(make), source, plan)
}

/** The file as an HTTP response's body: opened first, for its length (Content-Length). */
function fileBody(source: FileSource, plan: FilePlan): ResponseBody<SendFileResult> {
  let opening: Promise<OpenFile> | undefined
  let opened: OpenFile | undefined
  let length: number | undefined
  let read: { chunks: Buffer[]; why: string } | undefined
  return {
    signal: plan.signal,
    async prepare() {
      opening = openFile(source)
      opened = await opening
      checkOffset(opened.stat, plan.offset)
      // A mapped file's size is its length here, 0 included (an HTTP body has to say its
      // length up front). A source whose size says nothing (sysfs, /proc, a FIFO) is
      // read to its end first, unless options.length says how long it is.
      if (opened.mappable) {
        length = bodyLength(opened, plan.offset, plan.length) ?? 0
      } else if (plan.length === undefined) {
        read = await readWhole(opened, plan.offset, plan.signal)
        length = read.chunks.reduce((n, c) => n + c.length, 0)
      } else {
        length = plan.length
      }
      return length
    },
    send(zc) {
      if (plan.signal?.aborted) return Promise.reject(abortError(plan.signal))
      if (read !== undefined) return sendRead(zc, read.chunks, read.why)
      return fileOn(zc, new LentFile(opened!), { ...plan, length, exact: true })
    },
    async done() {
      await opening?.catch(() => undefined) // an abort may have stopped waiting for it
      await opened?.close()
    },
    none: (reason) => ({ bytes: 0, zeroCopy: false, copied: false, mechanism: 'read+copy', windows: 0, calls: 0, fallback: reason }),
    async *copies() {
      if (read !== undefined) return yield* read.chunks
      yield* readCopies(opened!, plan.offset, length)
    },
    copied: (bytes, calls, why) => ({ bytes, zeroCopy: false, copied: true, mechanism: 'read+copy', windows: 0, calls, fallback: why }),
  }
}

/**
 * The file's bytes from `offset` (`length` of them, else to its end) as Buffers of their
 * own, read as they are asked for. One that ends before `length` was truncated.
 */
async function* readCopies(opened: OpenFile, offset: number, length: number | undefined): AsyncGenerator<Buffer> {
  const seekable = opened.stat.isFile() || opened.stat.isBlockDevice()
  for (let pos = offset, left = length ?? Infinity; left > 0; ) {
    const chunk = Buffer.allocUnsafe(Math.min(COPY_CHUNK, left))
    const { bytesRead } = await read(opened.fd, chunk, 0, chunk.length, seekable ? pos : null)
    if (bytesRead === 0) {
      if (length !== undefined) throw truncatedFile()
      return
    }
    yield chunk.subarray(0, bytesRead)
    pos += bytesRead
    left -= bytesRead
  }
}

// A response body of unknown length is read into memory first, up to this much.
const READ_WHOLE_MAX = 16 << 20

/** A source of unknown length read to its end (at most READ_WHOLE_MAX bytes), for its length. */
async function readWhole(opened: OpenFile, offset: number, signal: AbortSignal | undefined): Promise<{ chunks: Buffer[]; why: string }> {
  const st = opened.stat
  const seekable = st.isFile() || st.isBlockDevice()
  if (!seekable && offset > 0) throw outOfRange('options.offset', '0 for a pipe, FIFO or device that cannot seek', offset)
  const chunks: Buffer[] = []
  let total = 0
  for (let pos = offset; ; ) {
    if (signal?.aborted) throw abortError(signal)
    const chunk = Buffer.allocUnsafe(Math.min(MAPPED_CHUNK, READ_WHOLE_MAX + 1 - total))
    const { bytesRead } = await read(opened.fd, chunk, 0, chunk.length, seekable ? pos : null)
    if (bytesRead === 0) break
    chunks.push(chunk.subarray(0, bytesRead))
    total += bytesRead
    pos += bytesRead
    if (total > READ_WHOLE_MAX) {
      throw codedError('ERR_ZEROCOPY_LENGTH_REQUIRED', `The source's size says nothing of its length and it holds more than ${READ_WHOLE_MAX} bytes: pass options.length for an HTTP body`)
    }
  }
  return { chunks, why: `${sourceKind(st)}: it cannot be mapped and its size says nothing of its length, so it was read to its end (for Content-Length) and sent as copies` }
}

/** A body read into memory, sent as copies; the result says so. */
async function sendRead(zc: ZeroCopySocket, chunks: Buffer[], why: string): Promise<SendFileResult> {
  const r = await zc.send(chunks, { copy: true })
  return { bytes: r.bytes, zeroCopy: false, copied: true, mechanism: 'read+copy', windows: 0, calls: r.calls, fallback: why }
}

function sourceKind(st: fs.Stats): string {
  return st.isFIFO() ? 'a pipe or FIFO' : st.isFile() ? 'a file the kernel does not map (sysfs, /proc)' : 'not a regular file'
}

type Submit = (make: (settled: (req: SendRequest, err: Error | undefined) => void) => SendRequest) => Promise<SendFileResult>

function sendFile(channel: SendChannel, submit: Submit, file: FileSource | LentFile, plan: FilePlan): Promise<SendFileResult> {
  let req!: FileRequest
  const settled = submit((done) => (req = new FileRequest(done)))
  const notify = (err?: Error) => channel.handle(err === undefined ? { type: 'sourceReady', req } : { type: 'cut', req, err })
  const signal = plan.signal
  const onAbort = () => notify(abortError(signal!))
  signal?.addEventListener('abort', onAbort, { once: true })
  channel.handle({ type: 'hold' }) // the producer keeps the channel while it reads the file
  const produced = produce(req, file, plan, notify).finally(() => channel.handle({ type: 'release' }))
  // The signal counts until the request settles (a file all mapped is still in flight).
  const unlisten = () => signal?.removeEventListener('abort', onAbort)
  // A completed send resolves once the producer has closed the file too; a failed one
  // rejects at once (a producer blocked on a pipe must not hold the rejection).
  return settled.then(
    (r) => {
      unlisten()
      return produced.then(() => r)
    },
    (err: unknown) => {
      unlisten()
      throw err
    },
  )
}

/** Opens the file and supplies it to `req` piece by piece; closes it at the end. */
async function produce(req: FileRequest, file: FileSource | LentFile, plan: FilePlan, notify: (err?: Error) => void): Promise<void> {
  if (req.handedOver) return // refused at enqueue (socket closed, ...)
  let opened: OpenFile | undefined
  try {
    opened = await openFile(file)
    if (req.handedOver) return
    const { fd, stat: st } = opened
    checkOffset(st, plan.offset)
    if (opened.mappable) await mapWindows(req, fd, st.size, plan, notify)
    else await readPieces(req, fd, st, plan, notify)
    req.endOfSource()
    notify()
  } catch (err) {
    notify(truncatedOr(err as NodeJS.ErrnoException))
  } finally {
    await opened?.close()
  }
}

/** An offset past the end of a regular file is a RangeError (as the mapped path would find). */
export function checkOffset(st: fs.Stats, offset: number): void {
  if (offset > 0 && st.isFile() && st.size > 0 && offset > st.size) {
    throw outOfRange('options.offset', `<= the file's size (${st.size})`, offset)
  }
}

async function mapWindows(req: FileRequest, fd: number, size: number, plan: FilePlan, notify: (err?: Error) => void): Promise<void> {
  const end = plan.length === undefined ? size : Math.min(size, plan.offset + plan.length)
  let pos = plan.offset
  while (pos < end) {
    await req.room(plan.maxWindows)
    if (req.handedOver) return
    const mapStart = pos - (pos % plan.windowSize)
    const mapLength = Math.min(plan.windowSize, end - mapStart)
    const sendLength = mapStart + mapLength - pos
    const mapping = new native.Mapping(fd, mapStart, mapLength)
    try {
      // Pages not in the page cache mean disk reads: fault them in on the thread
      // pool. Cached pages cost the kernel only page-table work when it takes them.
      if (!mapping.resident(pos - mapStart, sendLength)) await mapping.populate(pos - mapStart, sendLength)
    } catch (err) {
      mapping.unmap()
      throw err
    }
    req.supply(new FilePiece(req, sendLength, mapping, pos - mapStart, undefined))
    notify()
    pos += sendLength
  }
}

/** A source that cannot be mapped: read into memory, sent as copies. */
async function readPieces(req: FileRequest, fd: number, st: fs.Stats, plan: FilePlan, notify: (err?: Error) => void): Promise<void> {
  req.fallback = `${sourceKind(st)}: it cannot be mapped, so its bytes are read and sent as copies`
  const seekable = st.isFile() || st.isBlockDevice()
  if (!seekable && plan.offset > 0) throw outOfRange('options.offset', '0 for a pipe, FIFO or device that cannot seek', plan.offset)
  let pos = plan.offset
  let left = plan.length ?? Infinity
  while (left > 0) {
    await req.room(READ_PIECES)
    if (req.handedOver) return
    const chunk = Buffer.allocUnsafe(Math.min(MAPPED_CHUNK, left))
    const { bytesRead } = await read(fd, chunk, 0, chunk.length, seekable ? pos : null)
    if (req.handedOver) return
    if (bytesRead === 0) {
      if (plan.exact && plan.length !== undefined) throw truncatedFile('it ended before the length the HTTP body promised')
      return
    }
    req.supply(new FilePiece(req, bytesRead, undefined, 0, chunk.subarray(0, bytesRead)))
    notify()
    pos += bytesRead
    left -= bytesRead
  }
}

function truncatedOr(err: NodeJS.ErrnoException): Error {
  return err.code === 'EFAULT' ? truncatedFile('the kernel found no page there (EFAULT)', err) : err
}
