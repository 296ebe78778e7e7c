// -c n (and -m): the msg_zerocopy selftest's corked UDP sender, on the package's raw
// layer. Each round is one datagram written as n sends under UDP_CORK:
//
//   setsockopt(UDP_CORK, 1)
//   n sends from the payload's start: the first payload/n + payload%n bytes, the
//     others payload/n (so the datagram is the pattern's head n times, -s bytes in all)
//   setsockopt(UDP_CORK, 0)        the kernel sends the datagram now
//
// Every send counts, as in the selftest: tx= is sends (n per datagram), and with -z each
// send that carried bytes takes a MSG_ZEROCOPY id and is expected back (txc=, the sum of
// the notifications' ranges). -m alternates copy and zero-copy sends inside a datagram,
// starting with a copy: only the odd ones take ids. A send that finds the socket full
// (EAGAIN) is skipped and not counted, as there. Completions are read after every -l
// sends, and while the socket is full; then up to 500 ms for the last ones.
//
// What the kernel does with it (Linux 6.18, checked against the selftest): a corked
// datagram is always copied, even where plain MSG_ZEROCOPY sends leave the host without
// a copy (the namespace sink): the notifications say COPIED, so -Z 1 fails there too.
import * as fs from 'node:fs'
import { constants, getSocketOption, outputQueueBytes, readErrorQueue, send as rawSend } from '../lib'
import { CompletionCheck, txLine } from './msg_zerocopy-completions'
import { type Config, Fatal, setOption, strerror } from './msg_zerocopy-config'

const { IPPROTO_UDP, UDP_CORK, SOL_SOCKET, SO_SNDBUF, SO_ZEROCOPY, MSG_DONTWAIT, MSG_ZEROCOPY } = constants
const { SO_EE_ORIGIN_ZEROCOPY, SO_EE_CODE_ZEROCOPY_COPIED } = constants

/** The selftest's poll timeout: how long the last completions may take. */
const WAIT_MS = 500
/** Rounds between turns of the event loop (the loop itself never waits in the kernel). */
const ROUNDS_PER_TURN = 16

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const turn = () => new Promise<void>((resolve) => setImmediate(resolve))

/** C's int division (toward zero), as the selftest splits the payload. */
const cDiv = (a: number, b: number) => Math.trunc(a / b)

/**
 * Sends corked datagrams on `fd` (a connected UDP socket the caller owns and that
 * nothing else reads) until `tstop`, then waits for the last completions, closes `fd`
 * and prints the tx line. Resolves to the exit code; fatal errors reject with Fatal.
 */
export async function sendCorked(cfg: Config, fd: number, payload: Buffer, tstop: number): Promise<number> {
  const check = new CompletionCheck(cfg.expectZerocopy, cfg.verbose)
  if (cfg.zerocopy) setOption(fd, SOL_SOCKET, SO_ZEROCOPY, 1)
  const sndbuf = getSocketOption(fd, SOL_SOCKET, SO_SNDBUF)
  // The selftest compares its uint32 count with the int -l: -1 means never.
  const limit = cfg.notificationLimit >>> 0
  const cork = cfg.cork
  const fragment = cork > 0 ? cDiv(cfg.payload, cork) : 0
  const first = cfg.payload - cork * fragment + fragment
  let packets = 0
  let bytes = 0
  let zeroCopyBytes = 0
  let expected = 0
  let sinceNotify = 0
  let eagain = 0

  const sendOne = (length: number, zerocopy: boolean): void => {
    // The selftest's iov_len is size_t: a negative -s is a length the kernel refuses.
    if (length < 0) throw new Fatal('send: Invalid argument')
    let ret: number
    try {
      ret = rawSend(fd, payload.subarray(0, length), MSG_DONTWAIT | (zerocopy ? MSG_ZEROCOPY : 0))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
        eagain++
        return
      }
      throw new Fatal(`send: ${strerror(err)}`)
    }
    if (cfg.verbose > 0 && ret !== length) console.error(`send: ret=${ret} != ${length}`)
    sinceNotify++
    if (length === 0) return
    packets++
    bytes += ret
    if (zerocopy && ret > 0) {
      expected++
      zeroCopyBytes += ret
    }
  }

  const drain = (): void => {
    for (;;) {
      let entries
      try {
        entries = readErrorQueue(fd)
      } catch (err) {
        throw new Fatal(`recvmsg notification: ${strerror(err)}`)
      }
      for (const e of entries) {
        if (e.origin !== SO_EE_ORIGIN_ZEROCOPY) throw new Fatal(`serr: wrong origin: ${e.origin}`)
        if (e.errno !== 0) throw new Fatal(`serr: wrong error code: ${e.errno}`)
        check.notification(e.info, e.data, (e.code & SO_EE_CODE_ZEROCOPY_COPIED) !== 0)
      }
      if (entries.length < 64) break
    }
    sinceNotify = 0
  }

  // The selftest's poll(POLLOUT) for UDP: writable while the queued skbs hold less than
  // half the send buffer (SIOCOUTQ is that count). Waiting, it reads completions.
  const full = () => outputQueueBytes(fd) * 2 >= sndbuf

  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  let rounds = 0
  do {
    setOption(fd, IPPROTO_UDP, UDP_CORK, 1)
    for (let i = 0; i < cork; i++) sendOne(i === 0 ? first : fragment, cfg.corkMixed ? (i & 1) === 1 : cfg.zerocopy)
    setOption(fd, IPPROTO_UDP, UDP_CORK, 0)
    if (cfg.zerocopy && sinceNotify >= limit) drain()
    while (full()) {
      if (cfg.zerocopy) drain()
      await sleep(1)
    }
    if (++rounds % ROUNDS_PER_TURN === 0) await turn()
  } while (Date.now() < tstop)

  if (cfg.zerocopy) {
    const stop = Date.now() + WAIT_MS
    for (;;) {
      drain()
      if (check.completions >= expected || Date.now() >= stop) break
      await sleep(1)
    }
    if (check.completions < expected) console.error(`missing notifications: ${check.completions} < ${expected}`)
  }
  if (cfg.verbose > 0) {
    const cpu = process.cpuUsage(cpu0)
    const stats = { engine: 'raw', rounds, sends: packets, zeroCopyCalls: expected, copyCalls: packets - expected, completedIds: check.completions, zeroCopyBytes, copyBytes: bytes - zeroCopyBytes, eagain }
    console.error(`stats: ${JSON.stringify(stats)}`)
    console.error(`time: ${JSON.stringify({ seconds: (performance.now() - t0) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 })}`)
  }
  try {
    fs.closeSync(fd)
  } catch (err) {
    throw new Fatal(`close: ${strerror(err)}`)
  }
  console.error(txLine(packets, bytes, check.completions, cfg.zerocopy && check.expectZerocopy === 1))
  return check.exitcode
}
