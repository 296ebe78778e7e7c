// A file to send, opened for one send: a path (opened by Node), or a duplicate of the
// caller's fd or FileHandle (adopted by this Node environment, so a worker that stops
// mid-send closes it). Every file send path (mapped windows, read copies through a
// stream, an HTTP response that needs the size for its headers) opens files here.
import * as fs from 'node:fs'
import { promisify } from 'node:util'
import * as os from 'node:os'
import { invalidArgType, systemError } from './errors'
import { pageSize } from './memory'
import { native } from './native'

const fstat = promisify(fs.fstat)
const open = promisify(fs.open)
const close = promisify(fs.close)

/**
 * Whether a path may be opened on this thread when the kernel can do it without
 * waiting (native/file-open.cc). Not under Node's permission model, whose read checks
 * only fs.open makes; not with ZEROCOPY_FILE_OPEN=pool (for hosts where a fanotify
 * permission listener, some antivirus, holds every open until it answers).
 */
const OPEN_HERE = (process as { permission?: unknown }).permission === undefined && process.env.ZEROCOPY_FILE_OPEN !== 'pool'

/** A file to send: a path, an open fd, or a `fs.promises.FileHandle`. */
export type FileSource = string | number | fs.promises.FileHandle

/** The file argument, checked (a coded TypeError otherwise). */
export function checkFile(file: unknown): FileSource {
  if (typeof file === 'string' || (typeof file === 'number' && Number.isInteger(file) && file >= 0)) return file
  if (typeof file === 'object' && file !== null && typeof (file as { fd?: unknown }).fd === 'number') return file as fs.promises.FileHandle
  throw invalidArgType('file', 'a path string, an fd or a FileHandle', file)
}

/** A file opened for one send: its fd (ours), its stat, and the close that ends it. */
export interface OpenFile {
  fd: number
  stat: fs.Stats
  /** A non-empty regular file on a local mount: fstat of it cannot wait for a server. */
  local: boolean
  /** `fd` is one of our private fds (else Node's, from fs.open). */
  ours: boolean
  /**
   * A regular file the kernel maps, so its size is its length: false for what mmap
   * refuses (sysfs, /proc: their sizes say nothing), pipes, FIFOs and devices, which
   * are read to their end as copies instead.
   */
  mappable: boolean
  close(): Promise<void>
}

/**
 * A file this package already opened (an HTTP body, opened first for its length), lent
 * to the send that carries it. The send works on a duplicate of its own, so the lender
 * may close its fd whenever it likes, even while a failed send's producer still maps.
 */
export class LentFile {
  constructor(readonly opened: OpenFile) {}
}

/**
 * Opens `file` for reading; the caller must close() it (also on failure).
 *
 * A cached, non-empty regular file on a local filesystem is opened, stat'ed and closed
 * on this thread (native/file-open.cc says when that cannot block): no trip to the
 * thread pool, which cost three context-switching round trips per file and stalled
 * every send while the pool was busy. Anything else is opened and stat'ed on the
 * thread pool, as Node's fs does.
 */
export async function openFile(file: FileSource | LentFile): Promise<OpenFile> {
  let fd: number
  let adopted = false
  let local = false
  if (typeof file === 'string') {
    fd = OPEN_HERE ? native.openCached(file) : -1
    if (fd >= 0) {
      adopted = local = true
      native.adoptFd(fd)
    } else {
      fd = await open(file, 'r') // Node's: closed by Node if this environment stops
    }
  } else if (file instanceof LentFile) {
    // dupFd refuses our private fds unless told (a caller's stale number must never
    // reach one of them).
    fd = native.dupFd(file.opened.fd, true, file.opened.ours)
    native.adoptFd(fd)
    adopted = true
    local = file.opened.local
  } else {
    // Our duplicate: the environment closes it if a worker stops before we do.
    fd = native.dupFd(typeof file === 'number' ? file : file.fd)
    native.adoptFd(fd)
    adopted = true
    local = OPEN_HERE && native.localRegularFile(fd)
  }
  let closed = false
  const done = async () => {
    if (closed) return
    closed = true
    if (!adopted) return close(fd).catch(() => {})
    // Ours: closed through the private-fd registry (native/private-fds.h), which must
    // never go on listing a number that is closed (it would refuse a caller's fd that
    // later takes it). Closing a read-only file fd does not block.
    native.releaseFd(fd)
    try {
      native.closeFd(fd)
    } catch {
      // already closed: nothing to do
    }
  }
  try {
    const stat = local ? fs.fstatSync(fd) : await fstat(fd)
    // Refused before anything goes (a response's headers included), as fs.read would.
    if (stat.isDirectory()) throw systemError(os.constants.errno.EISDIR, 'read')
    const mappable = file instanceof LentFile ? file.opened.mappable : local || mapsHere(fd, stat)
    return { fd, stat, local, ours: adopted, mappable, close: done }
  } catch (err) {
    await done()
    throw err
  }
}

/**
 * Whether the kernel maps this file: a regular file that is not empty, and, off the
 * local filesystems (where it always does), one page of it mapped and let go at once
 * (sysfs and /proc refuse with ENODEV; FUSE with direct I/O too).
 */
function mapsHere(fd: number, stat: fs.Stats): boolean {
  if (!stat.isFile() || stat.size === 0) return false
  try {
    new native.Mapping(fd, 0, Math.min(stat.size, pageSize)).unmap()
    return true
  } catch {
    return false
  }
}

/**
 * Where a send of `length` bytes from `offset` ends in a file of `size` bytes: the
 * range is clipped to the file, as the mapped path sends it. For a source of unknown
 * size (a pipe, a FIFO, a sysfs or /proc file) `length` as given (undefined: to its end).
 */
export function bodyLength(opened: OpenFile, offset: number, length: number | undefined): number | undefined {
  if (!opened.mappable) return length
  const end = length === undefined ? opened.stat.size : Math.min(opened.stat.size, offset + length)
  return Math.max(0, end - offset)
}
