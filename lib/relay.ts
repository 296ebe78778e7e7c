// relay(a, b): bytes between two sockets with no JS in the data path. Node stops
// reading the sockets the relay reads at the call, what it had buffered goes first
// (never as a 'data' event: those bytes are the relay's), a FIN it had read counts as
// the source's EOF (no 'end' meanwhile, so allowHalfOpen false does not end that
// socket under the other direction), and the environment's relay thread
// (lib/relay-engine.ts) moves the rest: both directions until both ends closed,
// half-closes forwarded; or `length` bytes one way, after which the sockets are Node's
// again, the bytes after them still unread in the kernel.
import type * as net from 'node:net'
import * as os from 'node:os'
import { abortError, codedError, invalidArgValue, promised, socketClosed, systemError } from './errors'
import { httpParserOf } from './http-parser'
import { keepActive } from './relay-activity'
import { cancelJob, startJob, type JobEnd } from './relay-engine'
import {
  checkCommonOptions, checkEnd, connectedFd, lendReads, lendWrites, lengthOption, unlessAborted, watchAbort,
  watchClose, type CommonRelayOptions, type LentReads, type LentWrites, type RelayEnd,
} from './relay-socket'
import { claim } from './socket-claims'

export type { RelayEnd, RelayMechanism } from './relay-socket'

/** Options for {@link relay}. */
export interface RelayOptions extends CommonRelayOptions {
  /** `'both'` (default), or one way: `'a->b'`, `'b->a'`. */
  direction?: 'both' | 'a->b' | 'b->a'
  /**
   * One way only: move exactly this many bytes, then give the sockets back to Node
   * (its source reads again from the next byte). Default: until the source ends.
   */
  length?: number
}

/** What a relay moved, and how. */
export interface RelayResult {
  /** Bytes written to b (bytes Node had buffered from a included). */
  aToB: number
  /** Bytes written to a. */
  bToA: number
  /** The loop that ran: `'copy'` (read/write) or `'splice'` (through a pipe). */
  mechanism: 'copy' | 'splice'
}

const ECANCELED = os.constants.errno.ECANCELED

/**
 * Relays between two connected stream sockets (`net.Socket`s or fds) on the
 * environment's relay thread.
 *
 * - Both ways (default): until each side's source ended; each end is forwarded as a
 *   half-close (FIN). Resolves once both ways ended; the Node sockets are then
 *   destroyed (both directions are finished).
 * - One way (`direction`): until the source ends, then `end()` on the destination; or
 *   exactly `length` bytes. The sockets are then Node's again: the source is read from
 *   the next byte on, as if Node had read the relayed bytes itself.
 * - A reset or any error on either socket rejects with that error (a SystemError from
 *   `read`/`send`/`splice`); `signal` rejects with an AbortError; a Node socket
 *   destroyed meanwhile rejects with ERR_SOCKET_CLOSED. The Node sockets are then
 *   destroyed (their streams are cut). A source that ends before `length` rejects with
 *   ERR_STREAM_PREMATURE_CLOSE (`err.bytes` says how many came) and gives the sockets back.
 *
 * A socket with a protocol layer (TLS, HTTP/2) is refused (ERR_ZEROCOPY_PROTOCOL_LAYER):
 * relay its stream with `stream.pipeline` instead. Node's writes to a destination made
 * after the call wait for the relay's end (they never mix with the relayed bytes).
 * What Node had buffered from a source, and a FIN it had read, are the relay's from the
 * call on: no 'data' or 'end' event shows them to the application.
 */
export function relay(a: RelayEnd, b: RelayEnd, options?: RelayOptions): Promise<RelayResult> {
  return promised(async () => {
    checkEnd(a, 'a')
    checkEnd(b, 'b')
    for (const [end, name] of [[a, 'a'], [b, 'b']] as const) {
      // An HTTP connection's bytes are its parser's: raw bytes taken or written under it
      // would corrupt the messages on both sides of them. An upgraded or CONNECT socket
      // has none any more (Node hands it over without its parser).
      if (typeof end !== 'number' && httpParserOf(end) !== undefined) {
        throw codedError('ERR_ZEROCOPY_HTTP_PARSER', `"${name}": Node's HTTP parser reads this socket; relay a socket Node handed over ('upgrade' or 'connect'), or pass an upload's request to receiveToFile(req, file)`)
      }
    }
    const { o, plan } = checkCommonOptions<RelayOptions>(options)
    const direction = o.direction ?? 'both'
    if (direction !== 'both' && direction !== 'a->b' && direction !== 'b->a') {
      throw invalidArgValue('options.direction', direction, "must be one of 'both', 'a->b', 'b->a'")
    }
    const length = lengthOption('options.length', o.length)
    // Rules across arguments come after each argument's own checks.
    if (length !== undefined && direction === 'both') {
      throw invalidArgValue('options.length', length, "needs a direction ('a->b' or 'b->a')")
    }
    const sa = nodeSocket(a)
    const sb = nodeSocket(b)
    // By kernel identity: an fd of a socket in a relay or upload, or of the other end, is that socket.
    const claimed = claim([a, b], ['a', 'b'])
    const writes: LentWrites[] = []
    // The sockets are Node's again: the claim ends, what waits to write goes on (or fails with `error`).
    const letGo = (error?: Error) => {
      claimed.release()
      for (const lent of writes.splice(0)) lent.release(error)
    }
    const ab = direction !== 'b->a'
    const ba = direction !== 'a->b'
    let lentA: LentReads | undefined
    let lentB: LentReads | undefined
    try {
      if (plan.signal?.aborted) throw abortError(plan.signal)
      // At once: the relay takes its place in each destination's write order; a send or
      // a write made after this call goes after the relay, not into it.
      const into: Array<[number, LentWrites]> = []
      for (const [to, end, i, name] of [[ab, b, 1, 'b'], [ba, a, 0, 'a']] as const) {
        if (!to) continue
        const lent = lendWrites(end, name, claimed.key(i))
        writes.push(lent)
        into.push([i, lent])
      }
      // At once too: what Node buffered, and any byte that arrives from now on, is the
      // relay's, never a 'data' event.
      if (ab && sa) lentA = lendReads(sa, length)
      if (ba && sb) lentB = lendReads(sb, length)
      const fdA = await unlessAborted(connectedFd(a, 'a'), plan.signal, [sa, sb])
      const fdB = await unlessAborted(connectedFd(b, 'b'), plan.signal, [sa, sb])
      // A socket that had no fd at the call is claimed, and ordered, by its identity now.
      claimed.identify(0, fdA)
      claimed.identify(1, fdB)
      for (const [i, lent] of into) lent.identified(claimed.key(i))
      // The turn may wait as long as the sends ahead of it (a peer that does not read):
      // Node closing either socket meanwhile ends the wait at once.
      await unlessAborted(Promise.all(into.map(([, lent]) => lent.started)), plan.signal, [sa, sb])
      if (plan.signal?.aborted) throw abortError(plan.signal)
      for (const [s, name] of [[sa, 'a'], [sb, 'b']] as const) {
        if (s?.destroyed) throw socketClosed(`The "${name}" socket is closed`)
      }
      return await run({ a, b, fdA, fdB, ab, ba, length, lentA, lentB, letGo, ...plan })
    } catch (err) {
      // Both idempotent: a relay that ran already gave the sockets back (or destroyed them);
      // one that never started puts the bytes it took back in front.
      lentA?.giveBack(true)
      lentB?.giveBack(true)
      letGo()
      throw err
    }
  })
}

interface Run {
  a: RelayEnd
  b: RelayEnd
  fdA: number
  fdB: number
  ab: boolean
  ba: boolean
  length: number | undefined
  /** The sources' reads, held (and their buffered bytes taken) since the call. */
  lentA: LentReads | undefined
  lentB: LentReads | undefined
  signal: AbortSignal | undefined
  mechanism: 0 | 1 | 2
  bufferSize: number
  letGo: (error?: Error) => void
}

const nodeSocket = (end: RelayEnd) => (typeof end === 'number' ? undefined : end)

function run(r: Run): Promise<RelayResult> {
  const both = r.ab && r.ba
  const sa = nodeSocket(r.a)
  const sb = nodeSocket(r.b)
  const { lentA, lentB } = r
  const giveBack = (resume: boolean) => {
    lentA?.giveBack(resume)
    lentB?.giveBack(resume)
  }
  const destroyBoth = () => {
    sa?.destroy()
    sb?.destroy()
    r.letGo(socketClosed('The relay destroyed the socket'))
  }
  // One way until EOF: the FIN goes out through Node's end() when the destination is a
  // Node socket (so Node knows), natively when it is a bare fd.
  const dir = (lent: LentReads | undefined, to: net.Socket | undefined) => ({
    length: r.length ?? null,
    shutdownOnEof: both || (r.length === undefined && to === undefined),
    prefix: lent?.prefix ?? null,
  })
  return new Promise<RelayResult>((resolve, reject) => {
    let reason: Error | undefined
    let stopWatching = () => {}
    const settle = (end: JobEnd, mechanism: 'copy' | 'splice') => {
      stopWatching()
      const result = { aToB: end.moved[0], bToA: end.moved[1], mechanism }
      if (end.errno === 0 && !end.premature) {
        if (both) {
          giveBack(false)
          destroyBoth()
        } else {
          giveBack(true)
          r.letGo()
          if (r.length === undefined) (r.ab ? sb : sa)?.end()
        }
        resolve(result)
        return
      }
      if (end.premature) {
        giveBack(true)
        r.letGo()
        const moved = r.ab ? result.aToB : result.bToA
        reject(Object.assign(codedError('ERR_STREAM_PREMATURE_CLOSE', `The source ended after ${moved} of ${r.length} bytes`), { bytes: moved }))
        return
      }
      giveBack(false)
      destroyBoth()
      const err = end.errno === ECANCELED && reason !== undefined ? reason : systemError(end.errno, end.syscall ?? 'relay')
      reject(Object.assign(err, { bytes: result.aToB + result.bToA }))
    }
    let id: number
    let mechanism!: 'copy' | 'splice'
    try {
      ;({ id, mechanism } = startJob(
        {
          mechanism: r.mechanism,
          bufferSize: r.bufferSize,
          fdA: r.fdA,
          fdB: r.fdB,
          names: ['a', 'b'],
          bIsFile: false,
          fileOffset: null,
          ab: r.ab ? dir(lentA, sb) : undefined,
          ba: r.ba ? dir(lentB, sa) : undefined,
        },
        (end) => settle(end, mechanism),
      ))
    } catch (err) {
      // Nothing started: the sockets are Node's again, buffered bytes put back in front.
      giveBack(true)
      throw err
    }
    lentA?.handedOver()
    lentB?.handedOver()
    const cancel = (err: Error) => {
      reason ??= err
      cancelJob(id)
    }
    const unwatchAbort = watchAbort(r.signal, () => cancel(abortError(r.signal!)))
    const unwatchClose = watchClose([sa, sb], () => cancel(socketClosed('A relayed socket was closed by Node')))
    const unwatchIdle = keepActive(id, [sa, sb])
    stopWatching = () => {
      unwatchAbort()
      unwatchClose()
      unwatchIdle()
    }
  })
}
