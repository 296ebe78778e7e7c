// What relay() and receiveToFile() share: checking their sockets and common options,
// and lending a Node socket to the native relay thread and taking it back.
//
// Lending a socket Node reads: Node stops reading its fd at the call (lib/node-internals.ts
// holdReads), and the bytes Node had already read but nobody consumed (readableLength,
// an unshift()ed head) are taken out of its stream to go first, without a 'data' event
// (they are the relay's, not the application's); so is a FIN Node had read, so that
// Node emits no 'end' (nor ends the socket, allowHalfOpen false) while the relay owns
// the reads: as if the FIN had come after the call. Lending a socket the
// relay writes to: every byte Node buffered for it reaches the kernel first (a marker
// write's callback), and what Node is asked to write meanwhile waits for the relay's
// end (lib/node-internals.ts holdWrites). Giving back: Node reads again where the relay
// stopped, and the held writes go out.
import * as net from 'node:net'
import { abortError, codedError, invalidArgType, invalidArgValue, invalidState, outOfRange, socketClosed, writeAfterEnd } from './errors'
import { holdReads, holdWrites, netSocketFd, protocolLayer } from './node-internals'
import { integerOption, optionsArg } from './validate'

/** A relay end: a connected `net.Socket`, or a stream socket fd the caller owns. */
export type RelayEnd = net.Socket | number

/** Which copy loop moves the bytes; see the README ("Relays") for what was measured. */
export type RelayMechanism = 'auto' | 'copy' | 'splice'

/** Options every relay call takes. */
export interface CommonRelayOptions {
  /** Stops the relay: the Promise rejects with an AbortError. */
  signal?: AbortSignal
  /**
   * `'copy'`: read() into a buffer and write() it out. `'splice'`: socket -> pipe ->
   * socket (or file), no copy through user memory. `'auto'` (default), as measured:
   * copy between two sockets delivered locally (loopback, Unix sockets), splice
   * otherwise (into files too).
   */
  mechanism?: RelayMechanism
  /** Bytes per direction held at once: the buffer, or the pipe's size. Default 256 KiB. */
  bufferSize?: number
}

export interface CommonPlan {
  signal: AbortSignal | undefined
  mechanism: 0 | 1 | 2
  bufferSize: number
}

export const DEFAULT_BUFFER = 256 << 10
const MECHANISMS: Record<string, 0 | 1 | 2> = { auto: 0, copy: 1, splice: 2 }

export function checkCommonOptions<T extends CommonRelayOptions>(options: unknown): { o: Partial<T>; plan: CommonPlan } {
  const o = optionsArg<T>(options)
  const signal = o.signal
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', signal)
  let mechanism: 0 | 1 | 2 = 0
  if (o.mechanism !== undefined) {
    if (typeof o.mechanism !== 'string' || !Object.hasOwn(MECHANISMS, o.mechanism)) {
      throw invalidArgValue('options.mechanism', o.mechanism, "must be one of 'auto', 'copy', 'splice'")
    }
    mechanism = MECHANISMS[o.mechanism]!
  }
  const bufferSize = integerOption('options.bufferSize', o.bufferSize, DEFAULT_BUFFER, 4096, 64 << 20)
  return { o, plan: { signal, mechanism, bufferSize } }
}

/** An optional byte count: undefined (until EOF) or a safe integer >= 0. */
export function lengthOption(name: string, value: unknown): number | undefined {
  return value === undefined ? undefined : integerOption(name, value, 0, 0, Number.MAX_SAFE_INTEGER)
}

/** Node sockets in a running relay or upload: one relay per socket at a time. */
const busy = new WeakSet<net.Socket>()

/** Marks the sockets as in a relay (ERR_INVALID_STATE if one already is); returns the release. */
export function claim(sockets: Array<net.Socket | undefined>): () => void {
  const mine = sockets.filter((s): s is net.Socket => s !== undefined)
  const taken = mine.find((s) => busy.has(s))
  if (taken !== undefined) throw invalidState('a socket is already in a running relay')
  for (const s of mine) busy.add(s)
  return () => {
    for (const s of mine) busy.delete(s)
  }
}

/** Synchronous checks of an end: its kind, and that raw bytes may go through its fd. */
export function checkEnd(value: unknown, name: string): RelayEnd {
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw outOfRange(name, 'an integer', value)
    if (value < 0 || value > 2 ** 31 - 1) throw outOfRange(name, '>= 0 && <= 2147483647', value)
    return value
  }
  if (!(value instanceof net.Socket)) throw invalidArgType(name, 'an instance of net.Socket or a file descriptor', value)
  const layer = protocolLayer(value)
  if (layer !== undefined) {
    throw codedError('ERR_ZEROCOPY_PROTOCOL_LAYER', `${name}: ${layer}. A relay moves raw bytes; relay the stream with stream.pipeline() instead`)
  }
  if (busy.has(value)) throw invalidState(`"${name}" is already in a running relay`)
  if (value.readableEncoding !== null) {
    throw invalidState(`"${name}" has an encoding set (setEncoding): its buffered data is text, not bytes`)
  }
  return value
}

/** The end's fd once it is connected; ERR_SOCKET_CLOSED for a socket with none. */
export async function connectedFd(end: RelayEnd, name: string): Promise<number> {
  if (typeof end === 'number') return end
  if (end.connecting) {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => {
        end.off('connect', onConnect)
        reject(err)
      }
      const onConnect = () => {
        end.off('error', onError)
        resolve()
      }
      end.once('connect', onConnect)
      end.once('error', onError)
    })
  }
  const fd = netSocketFd(end)
  if (end.destroyed || fd === undefined) throw socketClosed(`The "${name}" socket is closed`)
  return fd
}

/**
 * Lends a destination, synchronously: Node's writes to it are held from now on (they go
 * after the relay, in order); `flushed` resolves once every byte Node buffered before
 * is in the kernel. `release` gives it back (with an error: the socket was destroyed,
 * fail the held writes).
 */
export function lendWrites(socket: net.Socket, name: string): { release: (error?: Error) => void; flushed: Promise<void> } {
  if (socket.writableEnded) throw Object.assign(writeAfterEnd(), { message: `write after end: "${name}" was ended` })
  if (socket.writableLength === 0) return { release: holdWrites(socket), flushed: Promise.resolve() }
  // A marker behind what Node buffered: it and everything before it pass the hold.
  const marker = Buffer.alloc(0)
  const release = holdWrites(socket, marker)
  const flushed = new Promise<void>((resolve) => socket.write(marker, () => resolve()))
  return { release, flushed }
}

/** A Node socket whose reads are lent to the relay thread. */
export interface LentReads {
  /** What Node had buffered at the call (at most `limit` bytes), to go first; null for none. */
  prefix: Buffer | null
  /** The job took `prefix`: from now on giving back does not put it back. */
  handedOver(): void
  /**
   * Gives the socket back (the first call only): `prefix`, unless handed over, goes back
   * in front of Node's buffer; with `resume`, Node reads again as it did before.
   */
  giveBack(resume: boolean): void
}

/**
 * Stops Node reading `socket` and takes what it had buffered (at most `limit` bytes),
 * synchronously at the relay call: no byte goes to the socket's 'data' listeners from
 * then on, also while the relay still awaits (a connect, Node's buffered writes to the
 * destination, a file opening) and Node's own scheduled flow (a resume() just before
 * the call) runs.
 */
export function lendReads(socket: net.Socket, limit: number | undefined): LentReads {
  const held = holdReads(socket)
  const n = limit === undefined ? socket.readableLength : Math.min(limit, socket.readableLength)
  let prefix = held.take(n)
  let given = false
  return {
    get prefix() {
      return prefix
    },
    handedOver: () => {
      prefix = null
    },
    giveBack: (resume) => {
      if (given) return
      given = true
      if (prefix !== null && !socket.destroyed) socket.unshift(prefix)
      prefix = null
      held.release(resume)
    },
  }
}

/** Calls `onClose` if the socket closes (Node's side: destroy(), an error) while lent. */
export function watchClose(sockets: Array<net.Socket | undefined>, onClose: () => void): () => void {
  const present = sockets.filter((s): s is net.Socket => s !== undefined)
  for (const s of present) s.once('close', onClose)
  return () => {
    for (const s of present) s.off('close', onClose)
  }
}

/**
 * `p`, or an AbortError as soon as `signal` aborts: for what a relay awaits before it
 * starts (a connect, Node's buffered writes reaching a slow destination).
 */
export function unlessAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p
  if (signal.aborted) return Promise.reject(abortError(signal))
  return new Promise<T>((resolve, reject) => {
    const unwatch = watchAbort(signal, () => reject(abortError(signal)))
    p.then(
      (value) => {
        unwatch()
        resolve(value)
      },
      (err: unknown) => {
        unwatch()
        reject(err)
      },
    )
  })
}

/** Calls `onAbort` when the signal aborts; returns the unsubscribe. */
export function watchAbort(signal: AbortSignal | undefined, onAbort: () => void): () => void {
  if (signal === undefined) return () => {}
  signal.addEventListener('abort', onAbort, { once: true })
  return () => signal.removeEventListener('abort', onAbort)
}
