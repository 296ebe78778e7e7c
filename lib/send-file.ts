// sendFileZeroCopy: a file (or a range of it) sent on a socket, resolving only once the
// kernel holds no page of it, so the file may then be overwritten or truncated without
// changing what the peer receives. sendfile(2) cannot promise that (its pages stay
// referenced after it returns, even after the ACK); this sends from read-only file
// mappings through ZeroCopySocket instead, where every byte has a kernel completion.
//
// The file goes in windows: each is mapped (native/mapping.cc), faulted in on the
// thread pool unless already in the page cache (disk reads never block the event
// loop), queued on the socket, and
// unmapped only once its send settled. At most `maxWindows` are mapped at a time, so
// memory and address space stay bounded whatever the file size.
import * as fs from 'node:fs'
import type * as dgram from 'node:dgram'
import type * as net from 'node:net'
import { promisify } from 'node:util'
import { pageSize } from './memory'
import { native, type NativeMapping } from './native'
import { ZeroCopySocket, type SendResult, type ZeroCopyOptions } from './zerocopy-socket'

// 32 MiB windows, 4 at a time (128 MiB of address space, page-cache pages only):
// measured here (1 GiB cached file, loopback, 7 interleaved rounds) 3.39 GB/s against
// 3.08 with 4 MiB windows and 3.41 for C sending from one whole-file mapping. Fewer
// windows mean fewer mmap/mincore/munmap calls and more bytes queued while the oldest
// window waits for its completion.
const DEFAULT_WINDOW = 32 << 20
const fstat = promisify(fs.fstat)
const open = promisify(fs.open)
const close = promisify(fs.close)

/** A file to send: a path, an open fd, or a `fs.promises.FileHandle`. */
export type FileSource = string | number | fs.promises.FileHandle

/** Options for {@link sendFileZeroCopy}. */
export interface SendFileOptions {
  /** Where to start in the file. Default 0. */
  offset?: number
  /** How many bytes to send. Default: to the end of the file. */
  length?: number
  /** Stops queuing further bytes; the Promise still settles only once the kernel released what was queued. */
  signal?: AbortSignal
  /** Bytes mapped per window (rounded to pages). Default 32 MiB. */
  windowSize?: number
  /** Windows mapped at once. Default 4. */
  maxWindows?: number
  /** Options for the socket's ZeroCopySocket, if this call attaches it. */
  socketOptions?: ZeroCopyOptions
}

/** How a file send went, from what the kernel said. */
export interface SendFileResult {
  /** Bytes sent. */
  bytes: number
  /** Every byte went with MSG_ZEROCOPY and no completion said the kernel copied. */
  zeroCopy: boolean
  /** Some bytes were copied (by policy, or the kernel reported COPIED). */
  copied: boolean
  /** `mmap+msg_zerocopy`, `mmap+copy` (sendmsg copying from the mapping), or `mixed`. */
  mechanism: 'mmap+msg_zerocopy' | 'mmap+copy' | 'mixed'
  /** Windows mapped. */
  windows: number
  /** sendmsg calls. */
  calls: number
  /** Why bytes were copied though zero-copy was asked for, if they were. */
  fallback?: string
}

function codedError(code: string, message: string, cause?: unknown): Error {
  const err = new Error(message, cause === undefined ? undefined : { cause })
  return Object.assign(err, { code })
}

function abortError(signal: AbortSignal): Error {
  const err = codedError('ABORT_ERR', 'The operation was aborted', signal.reason)
  err.name = 'AbortError'
  return err
}

/** An fd this call owns: opened from a path, or a duplicate of the caller's. */
async function ownFd(file: FileSource): Promise<number> {
  if (typeof file === 'string') return open(file, 'r') // libuv opens close-on-exec
  const fd = typeof file === 'number' ? file : file.fd
  return native.dupFd(fd)
}

function checkInteger(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback
  if (!Number.isSafeInteger(v) || v < 0) {
    throw Object.assign(new RangeError(`The value of "${name}" is out of range. It must be a safe integer >= 0. Received ${v}`), {
      code: 'ERR_OUT_OF_RANGE',
    })
  }
  return v
}

/**
 * Sends a file, or `length` bytes of it from `offset`, on a connected `net.Socket`
 * (or `dgram.Socket`), after everything queued on the socket before, and resolves once
 * the kernel holds no page of it. Overwriting or truncating the file after that
 * cannot change what the peer receives.
 *
 * Rejects with `ERR_ZEROCOPY_FILE_TRUNCATED` when the file shrinks under the send (the
 * socket is then destroyed: the peer must not take a cut body for a whole one), with
 * an `AbortError` when `signal` aborts (after the queued bytes were released), and
 * with the socket's error when the connection fails.
 */
export async function sendFileZeroCopy(
  socket: net.Socket | dgram.Socket,
  file: FileSource,
  options: SendFileOptions = {},
): Promise<SendFileResult> {
  const zc = ZeroCopySocket.from(socket, options.socketOptions)
  const windowSize = Math.max(pageSize, Math.ceil(checkInteger('windowSize', options.windowSize, DEFAULT_WINDOW) / pageSize) * pageSize)
  const maxWindows = Math.max(1, checkInteger('maxWindows', options.maxWindows, 4))
  const offset = checkInteger('offset', options.offset, 0)
  const fd = await ownFd(file)
  const inFlight: Array<{ send: Promise<SendResult>; mapping: NativeMapping }> = []
  const results: SendResult[] = []
  let windows = 0
  let failure: unknown
  try {
    const size = (await fstat(fd)).size
    if (offset > size) throw codedError('ERR_OUT_OF_RANGE', `The offset ${offset} is past the end of the file (${size} bytes)`)
    const end = options.length === undefined ? size : Math.min(size, offset + checkInteger('length', options.length, 0))
    // Settles the oldest window and unmaps it: its pages are back from the kernel.
    const retireOldest = async () => {
      const { send, mapping } = inFlight.shift()!
      try {
        results.push(await send)
      } finally {
        mapping.unmap()
      }
    }
    let pos = offset
    while (pos < end) {
      if (options.signal?.aborted) throw abortError(options.signal)
      const mapStart = pos - (pos % windowSize)
      const mapLength = Math.min(windowSize, end - mapStart)
      const sendLength = mapStart + mapLength - pos
      const mapping = new native.Mapping(fd, mapStart, mapLength)
      windows++
      try {
        // Pages not in the page cache mean disk reads: fault them in on the thread
        // pool. Cached pages cost the kernel only page-table work when it takes them.
        if (!mapping.resident(pos - mapStart, sendLength)) await mapping.populate(pos - mapStart, sendLength)
      } catch (err) {
        mapping.unmap()
        throw (err as NodeJS.ErrnoException).code === 'EFAULT' ? truncated(pos, end, err) : err
      }
      const send = zc.sendMapped(mapping, pos - mapStart, sendLength, false)
      // Handled when retired (or in finally); until then a rejection must not count as
      // unhandled, which would kill a process running with Node's default settings.
      send.catch(() => {})
      inFlight.push({ send, mapping })
      pos += sendLength
      while (inFlight.length >= maxWindows) await retireOldest()
    }
    while (inFlight.length > 0) await retireOldest()
  } catch (err) {
    failure = (err as NodeJS.ErrnoException).code === 'EFAULT' ? truncated(offset, undefined, err) : err
    // A cut body must not pass for a whole one: close the connection now (queued bytes
    // still drain, then the windows below settle).
    if ((failure as NodeJS.ErrnoException).code === 'ERR_ZEROCOPY_FILE_TRUNCATED') destroySocket(socket)
  } finally {
    // Every queued window must be back from the kernel before its unmap.
    const rest = await Promise.allSettled(inFlight.map((w) => w.send))
    for (const w of inFlight) w.mapping.unmap()
    for (const r of rest) if (r.status === 'rejected') failure ??= r.reason
    await close(fd)
  }
  if (failure !== undefined) throw failure
  return summarize(results, windows)
}

function truncated(from: number, to: number | undefined, cause: unknown): Error {
  const range = to === undefined ? `from byte ${from}` : `bytes ${from}..${to}`
  return codedError(
    'ERR_ZEROCOPY_FILE_TRUNCATED',
    `The file was truncated while sendFileZeroCopy was sending ${range}: the kernel found no page there (EFAULT)`,
    cause,
  )
}

function destroySocket(socket: net.Socket | dgram.Socket): void {
  if ('destroy' in socket) socket.destroy()
  else socket.close()
}

function summarize(results: SendResult[], windows: number): SendFileResult {
  const bytes = results.reduce((n, r) => n + r.bytes, 0)
  const allZc = results.every((r) => r.mechanism === 'msg_zerocopy')
  const allCopy = results.every((r) => r.mechanism === 'copy')
  const out: SendFileResult = {
    bytes,
    zeroCopy: results.length > 0 && results.every((r) => r.zeroCopy),
    copied: results.some((r) => r.copied),
    mechanism: allZc ? 'mmap+msg_zerocopy' : allCopy ? 'mmap+copy' : 'mixed',
    windows,
    calls: results.reduce((n, r) => n + r.calls, 0),
  }
  const fallback = results.find((r) => r.fallback !== undefined)?.fallback
  if (fallback !== undefined) out.fallback = fallback
  return out
}
