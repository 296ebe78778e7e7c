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
// end: in the socket's SendChannel queue where it has one, else held here
// (lib/node-internals.ts holdWrites; see lendWrites). Giving back: Node reads again where
// the relay stopped, and the held writes go out.
import * as net from 'node:net'
import { abortError, codedError, invalidArgType, invalidArgValue, invalidState, outOfRange, socketClosed, writeAfterEnd } from './errors'
import { holdReads, holdWrites, netSocketFd, protocolLayer } from './node-internals'
import { awaitChannel, RelayTurn } from './relay-turn'
import { channelOf, enterTurn } from './socket-registry'
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
    throw codedError('ERR_ZEROCOPY_PROTOCOL_LAYER', `${name}: ${layer.reason}. A relay moves raw bytes; relay the stream with stream.pipeline() instead`)
  }
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

/** A destination lent to a relay: the relay's place in the socket's write order. */
export interface LentWrites {
  /**
   * Resolves once everything written to the socket before the call (sends queued on its
   * channel, bytes Node buffered) is in the kernel: the relay may write. Rejects with the
   * socket's error if its order cannot take the relay (its channel failed or closed).
   */
  started: Promise<void>
  /**
   * The socket's identity became known (a Node socket that had no fd at the call): a
   * channel made for it meanwhile, or later, orders its sends behind the relay.
   */
  identified(key: string | undefined): void
  /**
   * The relay ends (the first call only): the sends and Node writes made meanwhile go on,
   * in call order; given an error (the socket was destroyed), Node's held writes fail with it.
   */
  release(error?: Error): void
}

/**
 * Lends a destination, synchronously, to a relay: the relay takes its place in the
 * socket's one write order at the call. Where the socket (by its kernel identity `key`)
 * has a SendChannel, that order is the channel's queue: the relay enters it as a
 * RelayTurn (lib/relay-turn.ts), behind the sends queued before and Node's bytes
 * buffered before, and the sends and Node writes made meanwhile wait behind it in the
 * channel. Where it has none, the relay holds Node's writes itself (holdWrites, behind a
 * marker for what Node buffered), and leaves its turn for a channel made meanwhile.
 */
export function lendWrites(end: RelayEnd, name: string, key: string | undefined): LentWrites {
  const socket = typeof end === 'number' ? undefined : end
  if (socket?.writableEnded) throw Object.assign(writeAfterEnd(), { message: `write after end: "${name}" was ended` })
  const turn = new RelayTurn()
  let hold: ((error?: Error) => void) | undefined
  let unwait = () => {}
  let started: Promise<void> = turn.started
  let released = false
  const place = (k: string | undefined): boolean => {
    const channel = k === undefined ? undefined : channelOf(k)
    if (channel !== undefined) {
      enterTurn(channel, turn)
      return true
    }
    if (k !== undefined) unwait = awaitChannel(k, turn)
    return false
  }
  if (!place(key)) {
    // No channel: this relay owns the socket's write path until one is made. A channel
    // made meanwhile finds the turn and puts it first, over Node's bytes already ordered here.
    turn.afterNode = true
    if (socket !== undefined && socket.writableLength === 0) {
      hold = holdWrites(socket)
      started = Promise.resolve()
    } else if (socket !== undefined) {
      // A marker behind what Node buffered: it and everything before it pass the hold.
      // Until it has, a channel made meanwhile takes it as the turn's own marker: Node's
      // earlier bytes pass its gate, its later ones wait behind the turn.
      const marker = Buffer.alloc(0)
      turn.afterNode = false
      turn.marker = marker
      hold = holdWrites(socket, marker, () => {
        if (turn.marker === marker) turn.marker = undefined
        turn.afterNode = true
      })
      started = new Promise<void>((resolve) => socket.write(marker, () => resolve()))
    } else {
      started = Promise.resolve()
    }
  }
  return {
    started,
    identified: (k) => {
      if (key === undefined && k !== undefined && !released) place(k)
    },
    release: (error) => {
      if (released) return
      released = true
      unwait()
      turn.end() // the channel's sends and held writes made meanwhile go on
      hold?.(error) // then Node's writes held here (made before any channel existed)
    },
  }
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
 * `p`, or an AbortError as soon as `signal` aborts, or ERR_SOCKET_CLOSED as soon as Node
 * closes one of `sockets` (destroy(), its idle timeout's handler, an error): for what a
 * relay awaits before it starts (a connect, Node's buffered writes reaching a slow
 * destination, its turn behind the sends queued before it), which may take as long as
 * a peer that does not read.
 */
export function unlessAborted<T>(p: Promise<T>, signal: AbortSignal | undefined, sockets: Array<net.Socket | undefined> = []): Promise<T> {
  const present = sockets.filter((s): s is net.Socket => s !== undefined)
  if (signal === undefined && present.length === 0) return p
  if (signal?.aborted) return Promise.reject(abortError(signal))
  if (present.some((s) => s.destroyed)) return Promise.reject(socketClosed('A relayed socket was closed by Node before the relay started'))
  return new Promise<T>((resolve, reject) => {
    const unwatchAbort = watchAbort(signal, () => reject(abortError(signal!)))
    const unwatchClose = watchClose(present, () => reject(socketClosed('A relayed socket was closed by Node before the relay started')))
    const unwatch = () => {
      unwatchAbort()
      unwatchClose()
    }
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
