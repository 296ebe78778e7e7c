// receiveToFile(socket, file): an upload straight from a socket into a file at an
// offset, on a relay thread of its own (lib/relay-engine.ts): disk writes never block
// the event loop, nor any relay or other upload.
import * as fs from 'node:fs'
import type * as http from 'node:http'
import * as net from 'node:net'
import * as os from 'node:os'
import { abortError, codedError, promised, systemError } from './errors'
import { httpParserOf } from './http-parser'
import { isServerRequest, receiveRequest } from './receive-request'
import { keepActive } from './relay-activity'
import { cancelJob, startJob, type JobEnd } from './relay-engine'
import {
  checkCommonOptions, checkEnd, connectedFd, lendReads, lengthOption, unlessAborted, watchAbort, watchClose,
  type CommonRelayOptions, type LentReads, type RelayEnd,
} from './relay-socket'
import { claim } from './socket-claims'
import { checkFile, checkWritableFd, closeUpload, openPath } from './upload-target'
import { integerOption } from './validate'

/** Where the bytes go: a path, an fd open for writing, or a `fs.promises.FileHandle`. */
export type FileTarget = string | number | fs.promises.FileHandle

/** Options for {@link receiveToFile}. */
export interface ReceiveToFileOptions extends CommonRelayOptions {
  /** Where in the file the first byte goes. Default 0. */
  offset?: number
  /** Exactly this many bytes (the socket is read no further). Default: until the socket ends. */
  length?: number
}

export interface ReceiveToFileResult {
  /** Bytes written to the file (those Node had buffered included). */
  bytes: number
  /** `'stream'`: an HTTP request's body that went through `req` as copies (why: `fallback`). */
  mechanism: 'copy' | 'splice' | 'stream'
  fallback?: string
}

const ECANCELED = os.constants.errno.ECANCELED

/**
 * Writes what arrives on `socket` into `file` at `offset`: exactly `length` bytes, or
 * everything until the peer ends. Resolves once every byte is in the file (in the page
 * cache: to have it on disk, pass a FileHandle or fd and `fsync`/`datasync` it after).
 *
 * A path is opened for writing, created if missing and truncated when `offset` is 0,
 * and closed before the Promise settles; it must name a regular file
 * (ERR_ZEROCOPY_NOT_A_FILE otherwise), and an open that blocks (a frozen mount) is
 * raced against `signal`. An fd or FileHandle stays yours; it must be open for writing
 * and not with O_APPEND.
 *
 * Node does not read the socket from the call on; what it had buffered goes to the file
 * first (not as 'data' events).
 * Afterwards the socket is Node's again (it reads from the byte after the upload), also
 * after a file error (ENOSPC, ...) or an abort, so the application can still answer on
 * it. A socket error (a reset) destroys it. A socket that ends before `length` bytes
 * rejects with ERR_STREAM_PREMATURE_CLOSE (`err.bytes`: what was written). An abort
 * settles at once (within ABANDON_GRACE_MS), also while a file write is blocked:
 * `err.bytes` were written by then, the socket is not read again, and the blocked
 * write (at most `bufferSize` bytes, those right after `err.bytes`) may still land later.
 *
 * Given an http server request (`IncomingMessage`), takes its body, with Node's HTTP
 * parser kept in step for the next request (lib/receive-request.ts). A socket that
 * Node's HTTP parser reads is refused (ERR_ZEROCOPY_HTTP_PARSER): pass the request.
 */
export function receiveToFile(source: RelayEnd | http.IncomingMessage, file: FileTarget, options?: ReceiveToFileOptions): Promise<ReceiveToFileResult> {
  // An HTTP request: its body, with Node's parser kept in step (lib/receive-request.ts).
  if (isServerRequest(source)) return receiveRequest(source, file, options, receiveFromSocket)
  // Node's HTTP parser reads this socket: raw bytes taken under it would corrupt the body and the next request.
  if (source instanceof net.Socket && httpParserOf(source) !== undefined) {
    return Promise.reject(
      codedError('ERR_ZEROCOPY_HTTP_PARSER', 'Node\'s HTTP parser reads this socket (it has read part of the body already, and must see where it ends): pass the request, receiveToFile(req, file)'),
    )
  }
  return receiveFromSocket(source as RelayEnd, file, options)
}

/**
 * The socket upload. `head`: bytes that come before the socket's (an HTTP request's body
 * its parser read already, lib/receive-request.ts), counted in `length`; they stay the
 * caller's unless the upload started (an error without `bytes`: they were not taken).
 */
function receiveFromSocket(socket: RelayEnd, file: FileTarget, options?: ReceiveToFileOptions, head: Buffer | null = null): Promise<ReceiveToFileResult> {
  return promised(async () => {
    checkEnd(socket, 'socket')
    checkFile(file)
    const { o, plan } = checkCommonOptions<ReceiveToFileOptions>(options)
    const offset = integerOption('options.offset', o.offset, 0, 0, Number.MAX_SAFE_INTEGER)
    const length = lengthOption('options.length', o.length)
    const node = typeof socket === 'number' ? undefined : socket
    // By kernel identity: any fd of a socket in a relay or upload names that socket.
    const claimed = claim([socket], ['socket'])
    // At the call: what Node buffered, and a byte that arrives while the file opens, is
    // the upload's, never a 'data' event.
    const lent = node ? lendReads(node, length === undefined || head === null ? length : length - head.length) : undefined
    try {
      const opened = await openTarget(file, offset, plan.signal)
      let failed = true
      try {
        if (plan.signal?.aborted) throw abortError(plan.signal)
        const fd = await unlessAborted(connectedFd(socket, 'socket'), plan.signal, [node])
        claimed.identify(0, fd)
        if (plan.signal?.aborted) throw abortError(plan.signal)
        const result = await run(node, lent, head, fd, opened.fd, offset, length, plan)
        failed = false
        return result
      } finally {
        // Failed: the close (which may flush to a hung server) is not waited for long.
        await opened.close(failed)
      }
    } finally {
      lent?.giveBack(true) // idempotent: an upload that ran already gave the socket back; else the bytes go back
      claimed.release()
    }
  })
}

async function openTarget(file: FileTarget, offset: number, signal: AbortSignal | undefined): Promise<{ fd: number; close: (failed: boolean) => Promise<void> }> {
  if (typeof file === 'string') {
    const handle = await openPath(file, offset, signal)
    return { fd: handle.fd, close: (failed) => closeUpload(handle, failed) }
  }
  await checkWritableFd(file, signal)
  return { fd: typeof file === 'number' ? file : file.fd, close: async () => {} }
}

function run(
  node: net.Socket | undefined,
  lent: LentReads | undefined,
  head: Buffer | null,
  fd: number,
  fileFd: number,
  offset: number,
  length: number | undefined,
  plan: ReturnType<typeof checkCommonOptions>['plan'],
): Promise<ReceiveToFileResult> {
  const giveBack = (resume: boolean) => lent?.giveBack(resume)
  return new Promise<ReceiveToFileResult>((resolve, reject) => {
    let reason: Error | undefined
    let mechanism!: 'copy' | 'splice'
    let stopWatching = () => {}
    const settle = (end: JobEnd) => {
      stopWatching()
      const bytes = end.moved[0]
      if (end.errno === 0 && !end.premature) {
        giveBack(true)
        resolve({ bytes, mechanism })
        return
      }
      const socketFailed = !end.premature && end.errno !== ECANCELED && end.failedEnd === 0
      giveBack(!socketFailed)
      if (socketFailed) node?.destroy()
      const err = end.premature
        ? codedError('ERR_STREAM_PREMATURE_CLOSE', `The socket ended after ${bytes} of ${length} bytes`)
        : end.errno === ECANCELED && reason !== undefined
          ? reason
          : systemError(end.errno, end.syscall ?? 'relay')
      reject(Object.assign(err, { bytes }))
    }
    let id: number
    try {
      ;({ id, mechanism } = startJob(
        {
          mechanism: plan.mechanism,
          bufferSize: plan.bufferSize,
          fdA: fd,
          fdB: fileFd,
          names: ['socket', 'file'],
          bIsFile: true,
          fileOffset: offset,
          ab: { length: length ?? null, shutdownOnEof: false, prefix: joined(head, lent?.prefix ?? null) },
          ba: undefined,
        },
        settle,
      ))
    } catch (err) {
      giveBack(true) // puts the bytes it took back in front
      throw err
    }
    lent?.handedOver()
    const cancel = (err: Error) => {
      reason ??= err
      cancelJob(id)
    }
    const unwatchAbort = watchAbort(plan.signal, () => cancel(abortError(plan.signal!)))
    const unwatchClose = watchClose([node], () => cancel(codedError('ERR_SOCKET_CLOSED', 'The socket was closed by Node')))
    const unwatchIdle = keepActive(id, [node])
    stopWatching = () => {
      unwatchAbort()
      unwatchClose()
      unwatchIdle()
    }
  })
}

function joined(a: Buffer | null, b: Buffer | null): Buffer | null {
  return a === null ? b : b === null ? a : Buffer.concat([a, b])
}
