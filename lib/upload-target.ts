// Opening an upload's file by path: never a wait without bound (a FIFO with no reader, a
// frozen or hung mount), never anything but a regular file, and never on libuv's thread
// pool, where a few blocked opens would stall every fs call of the process. Shared by the
// socket upload (lib/receive-to-file.ts) and the copy path of an HTTP request's body
// (lib/receive-request.ts).
import * as fs from 'node:fs'
import * as os from 'node:os'
import { abortError, codedError, keepable, systemError } from './errors'
import { native, type UploadCall } from './native'
import { ABANDON_GRACE_MS } from './relay-engine'
import { watchAbort } from './relay-socket'

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

/** `p` settled (its outcome dropped), or `ms` passed. */
export function settledWithin(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))
  return Promise.race([p.then(() => {}, () => {}), late]).finally(() => clearTimeout(timer))
}

/**
 * Closes what openPath opened. The close runs on a thread of its own too: after writes
 * to a hung NFS server it flushes and waits. After an abort it is not waited for longer
 * than the abort's grace; it then ends on its own, keeping nothing alive.
 */
export function closeUpload(handle: { close(): Promise<void> }, signal: AbortSignal | undefined): Promise<void> {
  if (!(handle instanceof OpenedFile)) return handle.close()
  return signal?.aborted ? handle.closeWithin(ABANDON_GRACE_MS) : handle.close()
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
