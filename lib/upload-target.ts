// Opening an upload's file by path: never a wait without bound (a FIFO with no reader, a
// frozen or hung mount), never anything but a regular file. Shared by the socket upload
// (lib/receive-to-file.ts) and the copy path of an HTTP request's body
// (lib/receive-request.ts).
import * as fs from 'node:fs'
import * as os from 'node:os'
import { codedError, invalidArgType, invalidArgValue, invalidFdType, systemError } from './errors'
import { ABANDON_GRACE_MS } from './relay-engine'
import { checkEnd, unlessAborted } from './relay-socket'

/**
 * Opens a path for the upload without waiting without bound: O_NONBLOCK, so a FIFO
 * with no reader fails at once (ENXIO) instead of waiting for one; the open (on the
 * thread pool, where a frozen or hung mount can hold it) raced against the signal, its
 * fd closed whenever a late open completes; anything but a regular file refused with
 * ERR_ZEROCOPY_NOT_A_FILE. (O_NONBLOCK changes nothing for a regular file's writes.)
 */
export async function openPath(file: string, offset: number, signal: AbortSignal | undefined): Promise<fs.promises.FileHandle> {
  const { O_WRONLY, O_CREAT, O_TRUNC, O_NONBLOCK } = fs.constants
  const opening = fs.promises.open(file, O_WRONLY | O_CREAT | O_NONBLOCK | (offset === 0 ? O_TRUNC : 0))
  let handle: fs.promises.FileHandle
  try {
    handle = await unlessAborted(opening, signal)
  } catch (err) {
    opening.then((late) => late.close(), () => {}).catch(() => {})
    if ((err as NodeJS.ErrnoException).code === 'ENXIO') throw notAFile(file, await kindAt(file))
    throw err
  }
  try {
    const kind = fileKind(await unlessAborted(handle.stat(), signal)) // a hung NFS server holds fstat too
    if (kind !== 'a regular file') throw notAFile(file, kind)
  } catch (err) {
    const closing = handle.close()
    await (signal?.aborted ? settledWithin(closing, ABANDON_GRACE_MS) : closing)
    throw err
  }
  return handle
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
 * (ERR_INVALID_FD_TYPE), read-only (EBADF from pwrite, what the first write would get),
 * O_APPEND (ERR_INVALID_ARG_VALUE: every write would land at the end, not at the
 * offset). The flags come from /proc/self/fdinfo (octal); without /proc the relay
 * thread's check is the only one. A closed FileHandle is EBADF.
 */
export async function checkWritableFd(file: number | fs.promises.FileHandle, signal: AbortSignal | undefined): Promise<void> {
  const fd = typeof file === 'number' ? file : file.fd
  if (fd < 0) throw systemError(os.constants.errno.EBADF, 'write') // a closed FileHandle
  const stat = await unlessAborted(new Promise<fs.Stats>((resolve, reject) => fs.fstat(fd, (err, st) => (err ? reject(err) : resolve(st)))), signal)
  if (!stat.isFile()) throw invalidFdType(`The "file" fd is ${fileKind(stat)}, not a regular file: receiveToFile writes to regular files only`)
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
  if ((bits & O_ACCMODE) === O_RDONLY) throw systemError(os.constants.errno.EBADF, 'pwrite')
  if ((bits & O_APPEND) !== 0) throw invalidArgValue('file', fd, 'is open with O_APPEND: its writes would all go to the end of the file, not at the offset')
}

/** `p` settled (its outcome dropped), or `ms` passed. */
export function settledWithin(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))
  return Promise.race([p.then(() => {}, () => {}), late]).finally(() => clearTimeout(timer))
}

/** What a path names (for the refusal's message). */
function kindAt(file: string): Promise<string> {
  return fs.promises.stat(file).then(fileKind, () => 'not a file that can be opened for writing')
}

function fileKind(what: fs.Stats): string {
  if (what.isFile()) return 'a regular file'
  if (what.isFIFO()) return 'a FIFO'
  if (what.isSocket()) return 'a socket'
  if (what.isCharacterDevice() || what.isBlockDevice()) return 'a device'
  if (what.isDirectory()) return 'a directory'
  return 'not a regular file'
}

function notAFile(file: string, kind: string): Error {
  return codedError('ERR_ZEROCOPY_NOT_A_FILE', `"${file}" is ${kind}: receiveToFile writes to regular files only`)
}

/**
 * Closes what openPath opened. An upload that failed (an abort, the client gone, a file
 * error) waits no longer than the abort's grace: a write still blocked (a frozen or
 * hung mount) holds a FileHandle's close until it returns, and the upload's Promise
 * must not wait for that. The fd is then closed when the write returns. After a
 * success the close is waited for (its error, if any, is the upload's).
 */
export function closeUpload(handle: fs.promises.FileHandle, failed: boolean): Promise<void> {
  const closing = handle.close()
  return failed ? settledWithin(closing, ABANDON_GRACE_MS) : closing
}
