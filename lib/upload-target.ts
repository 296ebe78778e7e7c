// Opening an upload's file by path: never a wait without bound (a FIFO with no reader, a
// frozen or hung mount), never anything but a regular file. Shared by the socket upload
// (lib/receive-to-file.ts) and the copy path of an HTTP request's body
// (lib/receive-request.ts).
import * as fs from 'node:fs'
import { codedError } from './errors'
import { ABANDON_GRACE_MS } from './relay-engine'
import { unlessAborted } from './relay-socket'

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

/** Closes what openPath opened; after an abort, waits no longer than the abort's grace (a blocked write holds a close). */
export function closeUpload(handle: fs.promises.FileHandle, signal: AbortSignal | undefined): Promise<void> {
  const closing = handle.close()
  return signal?.aborted ? settledWithin(closing, ABANDON_GRACE_MS) : closing
}
