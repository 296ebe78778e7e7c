// Opening an upload's file by path: never a wait without bound (a FIFO with no reader, a
// frozen or hung mount), never anything but a regular file, and never on libuv's thread
// pool, where a few blocked opens would stall every fs call of the process. Shared by the
// socket upload (lib/receive-to-file.ts) and the copy path of an HTTP request's body
// (lib/receive-request.ts).
import * as fs from 'node:fs'
import * as os from 'node:os'
import { abortError, codedError, invalidArgType, invalidArgValueSaying, invalidFdType, keepable, systemError } from './errors'
import { native, type UploadCall } from './native'
import { ABANDON_GRACE_MS } from './relay-engine'
import { checkEnd, unlessAborted, watchAbort } from './relay-socket'

const { ENXIO } = os.constants.errno

/** An upload's file as openPath opened it: its fd, writes at offsets, and its close. */
export interface UploadFile {
  readonly fd: number
  write(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>
  close(): Promise<void>
}

/**
 * Opens a path for the upload (native/upload-open.cc): open and fstat on a thread of
 * their own, O_NONBLOCK, so a FIFO with no reader fails at once (ENXIO) instead of
 * waiting for one; raced against the signal: an abort settles at once, and an open that
 * completes later closes its fd on its own thread. Anything but a regular file is
 * refused with ERR_ZEROCOPY_NOT_A_FILE. Errors as fs.open's: code, errno, syscall, path.
 */
export function openPath(file: string, offset: number, signal: AbortSignal | undefined): Promise<UploadFile> {
  if (signal?.aborted) return Promise.reject(abortError(signal))
  return new Promise<UploadFile>((resolve, reject) => {
    let unwatch = () => {}
    const call = native.openUploadFile(file, offset === 0, (errno, fd, syscall, type) => {
      // Never throws into native code (upload-open.cc would take a throw for an fd nobody holds).
      try {
        unwatch()
        if (fd >= 0) resolve(new OpenedFile(fd))
        else if (errno === ENXIO || errno === 0) reject(notAFile(file, typeName(type)))
        else reject(pathError(errno, syscall ?? 'open', file))
      } catch (err) {
        reject(err)
      }
    })
    unwatch = watchAbort(signal, () => {
      native.abandonUploadCall(call)
      reject(abortError(signal!))
    })
  })
}

/** A path, an fd, or a FileHandle (anything with a numeric `fd`); else ERR_INVALID_ARG_TYPE. */
export function checkFile(file: unknown): void {
  if (typeof file === 'string') return
  if (typeof file === 'number') return void checkEnd(file, 'file') // the same integer range as an fd end
  const handleFd = typeof file === 'object' && file !== null ? (file as { fd?: unknown }).fd : undefined
  if (typeof handleFd !== 'number') throw invalidArgType('file', 'of type string or number, or an instance of FileHandle', file)
}

/**
 * Refuses an fd (or a FileHandle's) that the upload could not write at its offset, as
 * the relay thread's own check does (native/relay.cc CheckWritableFile), but before any
 * byte is taken, whichever path the bytes would take: not a regular file
 * (ERR_INVALID_FD_TYPE), read-only or O_APPEND (ERR_INVALID_ARG_VALUE: nothing could be
 * written, or every write would land at the end, not at the offset). The flags come from /proc/self/fdinfo (octal); without /proc the relay
 * thread's check is the only one. A closed FileHandle is EBADF.
 */
export async function checkWritableFd(file: number | fs.promises.FileHandle, signal: AbortSignal | undefined): Promise<void> {
  const fd = typeof file === 'number' ? file : file.fd
  if (fd < 0) throw systemError(os.constants.errno.EBADF, 'write') // a closed FileHandle
  const stat = await unlessAborted(new Promise<fs.Stats>((resolve, reject) => fs.fstat(fd, (err, st) => (err ? reject(err) : resolve(st)))), signal)
  if (!stat.isFile()) throw invalidFdType('The "file" fd is not a regular file')
  let info: string
  try {
    info = await fs.promises.readFile(`/proc/self/fdinfo/${fd}`, 'latin1')
  } catch {
    return
  }
  const flags = /^flags:\s*([0-7]+)$/m.exec(info)
  if (flags === null) return
  const bits = parseInt(flags[1]!, 8)
  const O_ACCMODE = 3 // Linux's; not among Node's fs.constants
  const { O_RDONLY, O_APPEND } = fs.constants
  // The relay thread's own check's words (native/relay.cc CheckWritableFile), whichever runs.
  if ((bits & O_ACCMODE) === O_RDONLY) throw invalidArgValueSaying('The "file" fd is open read-only: nothing can be written to it')
  if ((bits & O_APPEND) !== 0) throw invalidArgValueSaying('The "file" fd is open with O_APPEND: its writes would all go to the end of the file, not at the offset')
}

/** `p` settled (its outcome dropped), or `ms` passed. */
export function settledWithin(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))
  return Promise.race([p.then(() => {}, () => {}), late]).finally(() => clearTimeout(timer))
}

/**
 * Closes what openPath opened (or a caller's FileHandle's close, for the copy path). The
 * close of a path the upload opened runs on a thread of its own too: after writes to a
 * hung NFS server it flushes and waits. An upload that failed (an abort, the client
 * gone, a file error) waits no longer than the abort's grace: a write still blocked (a
 * frozen or hung mount) holds the close until it returns, and the upload's Promise must
 * not wait for that; the close then ends on its own, keeping nothing alive. After a
 * success the close is waited for (its error, if any, is the upload's).
 */
export function closeUpload(handle: { close(): Promise<void> }, failed: boolean): Promise<void> {
  if (handle instanceof OpenedFile) return failed ? handle.closeWithin(ABANDON_GRACE_MS) : handle.close()
  const closing = handle.close()
  return failed ? settledWithin(closing, ABANDON_GRACE_MS) : closing
}

/** A file openPath opened: its fd is the package's until close(). */
class OpenedFile implements UploadFile {
  private closing: Promise<void> | undefined
  private closeCall: UploadCall | undefined

  constructor(readonly fd: number) {}

  /** Writes go through fs.write (the thread pool), as a FileHandle's would. */
  write(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> {
    if (this.closing !== undefined) return Promise.reject(systemError(os.constants.errno.EBADF, 'write'))
    return new Promise((resolve, reject) => {
      fs.write(this.fd, buffer, offset, length, position, (err, bytesWritten) => (err ? reject(err) : resolve({ bytesWritten })))
    })
  }

  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve, reject) => {
      this.closeCall = native.closeUploadFile(this.fd, (errno) => (errno === 0 ? resolve() : reject(systemError(errno, 'close'))))
    })
    return this.closing
  }

  /** close(), waited for `ms` at most; past that it no longer keeps the event loop alive. */
  async closeWithin(ms: number): Promise<void> {
    const closing = this.close()
    let done = false
    await settledWithin(closing.finally(() => (done = true)), ms)
    if (!done && this.closeCall !== undefined) native.abandonUploadCall(this.closeCall)
  }
}

/** An Error as fs.open makes it: `CODE: text, syscall 'path'`, with code, errno, syscall and path. */
function pathError(errno: number, syscall: string, file: string): NodeJS.ErrnoException {
  const err = native.systemError(errno, syscall)
  return keepable(Object.assign(err, { message: `${err.message} '${file}'`, path: file }))
}

/** What a file of S_IFMT bits `type` is (for the refusal's message); 0: not known. */
function typeName(type: number): string {
  const { S_IFMT, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK, S_IFDIR } = fs.constants
  switch (type & S_IFMT) {
    case S_IFIFO:
      return 'a FIFO'
    case S_IFSOCK:
      return 'a socket'
    case S_IFCHR:
    case S_IFBLK:
      return 'a device'
    case S_IFDIR:
      return 'a directory'
    case 0:
      return 'not a file that can be opened for writing'
    default:
      return 'not a regular file'
  }
}

function notAFile(file: string, kind: string): Error {
  return codedError('ERR_ZEROCOPY_NOT_A_FILE', `"${file}" is ${kind}: receiveToFile writes to regular files only`)
}
