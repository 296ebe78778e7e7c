// Every error the TypeScript layer makes, in Node's shapes: a `code` on each; TypeError
// and RangeError for bad arguments with Node's message wording; SystemErrors (negative
// `errno`, `syscall`) come from the native layer so their names and texts match libuv's.
import { inspect } from 'node:util'
import { native } from './native'

type Coded = Error & { code: string }

function coded<E extends Error>(err: E, code: string): E & { code: string } {
  return keepable(Object.assign(err, { code }))
}

/**
 * `err`, with its stack formatted now. Until `.stack` is first read, V8 keeps an
 * Error's structured stack, and with it the receiver of every frame: an error made
 * inside `socket.destroy()` keeps that socket (and what hangs on it) reachable for as
 * long as the error is kept, by a request or a channel that outlives the socket.
 */
export function keepable<E>(err: E): E {
  if (err instanceof Error) void err.stack
  return err
}

/** What Node prints after "Received": the value for primitives, the type otherwise. */
function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value)
  if (typeof value === 'function') return `function ${value.name || '<anonymous>'}`
  if (typeof value === 'object') {
    const name = (value as object).constructor?.name
    return name ? `an instance of ${name}` : inspect(value, { depth: -1 })
  }
  let shown = inspect(value, { colors: false })
  if (shown.length > 28) shown = `${shown.slice(0, 25)}...`
  return `type ${typeof value} (${shown})`
}

/** TypeError ERR_INVALID_ARG_TYPE: `The "name" argument must be <expected>. Received ...`. */
export function invalidArgType(name: string, expected: string, value: unknown): Coded {
  const what = name.includes('.') || name.includes('[') ? `"${name}" property` : `"${name}" argument`
  return coded(new TypeError(`The ${what} must be ${expected}. Received ${describe(value)}`), 'ERR_INVALID_ARG_TYPE')
}

/** RangeError ERR_OUT_OF_RANGE: `The value of "name" is out of range. It must be <range>. Received ...`. */
export function outOfRange(name: string, range: string, value: unknown): Coded {
  const shown = typeof value === 'number' || typeof value === 'bigint' ? inspect(value) : describe(value)
  return coded(new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${shown}`), 'ERR_OUT_OF_RANGE')
}

/** TypeError ERR_INVALID_ARG_VALUE: `The property 'name' <reason>. Received ...`. */
export function invalidArgValue(name: string, value: unknown, reason: string): Coded {
  const what = name.includes('.') ? `property '${name}'` : `argument '${name}'`
  return coded(new TypeError(`The ${what} ${reason}. Received ${inspect(value, { depth: 0 })}`), 'ERR_INVALID_ARG_VALUE')
}

/** TypeError ERR_INVALID_FD_TYPE, as the native layer throws for an fd of the wrong kind. */
export function invalidFdType(message: string): Coded {
  return coded(new TypeError(message), 'ERR_INVALID_FD_TYPE')
}

/** TypeError ERR_INVALID_STATE, as the native layer throws for detached buffers. */
export function invalidState(message: string): Coded {
  return coded(new TypeError(`Invalid state: ${message}`), 'ERR_INVALID_STATE')
}

/**
 * TypeError ERR_INVALID_STATE: a send's memory was detached (its ArrayBuffer transferred)
 * while the send waited in the queue, `sent` of its `total` bytes already in the kernel.
 */
export function sendDetached(sent: number, total: number, cause?: unknown): Coded {
  const when = sent > 0 ? `after ${sent} of its ${total} bytes went to the kernel` : 'before any of it went to the kernel'
  const err = invalidState(`the ArrayBuffer of this send's data was detached (transferred) while the send was in progress, ${when}`)
  if (cause !== undefined) err.cause = cause
  return err
}

/** An Error with a code and no errno (ERR_SOCKET_CLOSED, ERR_ZEROCOPY_ABORTED, ...). */
export function codedError(code: string, message: string, cause?: unknown): Coded {
  return coded(new Error(message, cause === undefined ? undefined : { cause }), code)
}

export function socketClosed(message = 'The socket is closed'): Coded {
  return codedError('ERR_SOCKET_CLOSED', message)
}

export function writeAfterEnd(): Coded {
  return codedError('ERR_STREAM_WRITE_AFTER_END', 'write after end')
}

/** ERR_ZEROCOPY_FILE_TRUNCATED: the file shrank under a send (`how`: what showed it). */
export function truncatedFile(how = 'it ended before the bytes it had when the send began', cause?: unknown): Coded {
  return codedError('ERR_ZEROCOPY_FILE_TRUNCATED', `The file was truncated while sendFileZeroCopy was reading it: ${how}`, cause)
}

/** What an AbortSignal's abort rejects with (Node's AbortError shape). */
export function abortError(signal: AbortSignal): Coded {
  const err = new Error('The operation was aborted', { cause: signal.reason })
  err.name = 'AbortError' // before coded() formats the stack, which starts with the name
  return coded(err, 'ABORT_ERR')
}

/** A failed syscall, from a positive errno (what trySend's -errno negated gives). */
export function systemError(errno: number, syscall: string): NodeJS.ErrnoException {
  return keepable(native.systemError(errno, syscall))
}

/** Runs `fn`; a synchronous throw becomes a rejection. Every Promise API goes through this. */
export function promised<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return fn()
  } catch (err) {
    return Promise.reject(err)
  }
}

/** ERR_INVALID_ARG_VALUE (a TypeError) whose whole message is `message` (the native checks' wording). */
export function invalidArgValueSaying(message: string): TypeError & { code: string } {
  return coded(new TypeError(message), 'ERR_INVALID_ARG_VALUE')
}
