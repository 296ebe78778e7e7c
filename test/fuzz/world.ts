// Real kernel objects for the entry-point fuzz, the call wrappers (timeouts, sync throws
// of Promise APIs), the fd-leak check, and the fast-check runner with seed and replay.
import * as assert from 'node:assert/strict'
import * as dgram from 'node:dgram'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import * as fc from 'fast-check'
import { pipe, setReceiveBuffer, ZeroCopySocket } from '../../lib'
import { dgramSocketFd } from '../../lib/node-internals'
import { native } from '../../lib/native'
import { ringFds } from '../../lib/uring'
import { openFdTargets, randomBytes, socketFd, tcpPair } from '../helpers'
import { describe, type Env, type Outcome } from './args'

export const CALL_MS = 2000
// npm test runs one fixed seed (the same cases every time); 'random' draws a new one.
const seedEnv = process.env.ZEROCOPY_FUZZ_SEED ?? '20261123'
export const SEED = seedEnv === 'random' ? Date.now() ^ (Math.random() * 2 ** 31) : Number(seedEnv)
const RUNS = process.env.ZEROCOPY_FUZZ_RUNS !== undefined ? Number(process.env.ZEROCOPY_FUZZ_RUNS) : undefined
const PATH = process.env.ZEROCOPY_FUZZ_PATH
const ONLY = process.env.ZEROCOPY_FUZZ_ONLY
// Now, not only in a failure's message: a crash of the process would print nothing else.
console.error(`fuzz-entry-points: seed ${SEED} (replay with ZEROCOPY_FUZZ_SEED=${SEED})`)

// ---- stray process events ---------------------------------------------------------

const stray: string[] = []
const onUncaught = (e: unknown) => stray.push(`uncaught exception: ${describe(e)}`)
const onUnhandled = (e: unknown) => stray.push(`unhandled rejection: ${describe(e)}`)
process.on('uncaughtException', onUncaught)
process.on('unhandledRejection', onUnhandled)

/**
 * Runs `fn` with only this file's listeners for stray events, so that such an event fails
 * the run it belongs to (and is shrunk and reported with it) instead of node:test's own
 * handler failing the test without a counterexample.
 */
async function ownStrayEvents<T>(fn: () => Promise<T>): Promise<T> {
  const events = process as unknown as NodeJS.EventEmitter
  const others = ['uncaughtException', 'unhandledRejection'].map(
    (e) => [e, events.listeners(e).filter((l) => l !== onUncaught && l !== onUnhandled) as Array<(...a: unknown[]) => void>] as const,
  )
  for (const [e, ls] of others) for (const l of ls) events.off(e, l)
  try {
    return await fn()
  } finally {
    for (const [e, ls] of others) for (const l of ls) events.on(e, l)
  }
}

/** Uncaught exceptions and unhandled rejections since the last look. */
export async function strayEvents(): Promise<string | undefined> {
  await new Promise((r) => setImmediate(r))
  return stray.length > 0 ? stray.splice(0).join('; ') : undefined
}

// ---- calls --------------------------------------------------------------------------

export type Settled = Outcome | { timeout: true }

export function settle(p: Promise<unknown>, ms = CALL_MS): Promise<Settled> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<Settled>((r) => (timer = setTimeout(() => r({ timeout: true }), ms)))
  const done = p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  )
  return Promise.race([done, late]).finally(() => clearTimeout(timer))
}

export interface Called {
  out?: Outcome
  ms: number
  /** A failure of the call itself: blocked, sync throw of a Promise API, no settle. */
  problem?: string
}

/** A synchronous call: its return or throw (a call that blocks cannot be stopped, only reported). */
export function callSync(fn: () => unknown): Called {
  const t0 = performance.now()
  let out: Outcome
  try {
    out = { ok: true, value: fn() }
  } catch (error) {
    out = { ok: false, error }
  }
  const ms = performance.now() - t0
  return ms > CALL_MS ? { out, ms, problem: `blocked the event loop for ${ms.toFixed(0)} ms` } : { out, ms }
}

/** A Promise API: must return a Promise (never throw) that settles within CALL_MS. */
export async function callAsync(fn: () => unknown): Promise<Called> {
  const t0 = performance.now()
  let p: unknown
  try {
    p = fn()
  } catch (error) {
    return { ms: 0, problem: `threw synchronously (a Promise API must reject instead): ${describe(error)}` }
  }
  if (!(p instanceof Promise)) return { ms: 0, problem: `returned ${describe(p)}, not a Promise` }
  const s = await settle(p)
  const ms = performance.now() - t0
  if ('timeout' in s) return { ms, problem: `did not settle within ${CALL_MS} ms` }
  return { out: s, ms }
}

// ---- fds -----------------------------------------------------------------------------


/** Waits (up to 1 s: Node closes handles on a later tick) for the fds opened since `before` to close. */
export async function leakedFds(before: Map<string, string>): Promise<string | undefined> {
  let extra: string[] = []
  for (const deadline = Date.now() + 1000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 5))) {
    const now = openFdTargets()
    extra = [...now].filter(([n, to]) => before.get(n) !== to).map(([n, to]) => `${n} -> ${to}`)
    // The private-fd registry (native/private-fds.h) lists only fds that are open.
    const listed = native.privateFds().filter((fd) => !now.has(String(fd)) && !ringFds().includes(fd))
    extra.push(...listed.map((fd) => `${fd} listed as private but closed`))
    if (extra.length === 0) return undefined
  }
  return `left ${extra.length} fd(s) open once everything the run made was closed: ${extra.slice(0, 8).join(', ')}${extra.length > 8 ? ', ...' : ''}`
}

// ---- the raw calls' pool --------------------------------------------------------------

/** Scratch kernel objects for the raw calls: every pipe non-blocking, every socket Node's (non-blocking). */
export class RawPool implements Env {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zerocopy-fuzz-'))
  readonly file = path.join(this.dir, 'data')
  readonly fileBytes = randomBytes(65536, 7)
  private readonly fds: Record<string, number> = {}
  private readonly objs: Record<string, unknown> = {}
  private cleanup: Array<() => void> = []
  private closers: Array<() => void | Promise<void>> = []

  static async open(): Promise<RawPool> {
    const p = new RawPool()
    fs.writeFileSync(p.file, p.fileBytes)
    const a = pipe({ nonBlocking: true })
    const b = pipe({ nonBlocking: true })
    Object.assign(p.fds, { pipeR: a.readFd, pipeW: a.writeFd, pipe2R: b.readFd, pipe2W: b.writeFd })
    p.fds.file = fs.openSync(p.file, 'r')
    p.fds.devnull = fs.openSync('/dev/null', 'r+')
    const tcp = await tcpPair()
    tcp.server.resume()
    for (const s of [tcp.client, tcp.server]) s.on('error', () => {}) // the fuzz may break them: not what is judged
    p.fds.tcp = tcp.clientFd
    const server = net.createServer()
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    p.fds.listen = (server as unknown as { _handle: { fd: number } })._handle.fd
    const bound = dgram.createSocket('udp4')
    await new Promise<void>((r) => bound.bind(0, '127.0.0.1', r))
    bound.on('message', () => {})
    const conn = dgram.createSocket('udp4')
    await new Promise<void>((r) => conn.connect(bound.address().port, '127.0.0.1', r))
    p.fds.udpBound = dgramSocketFd(bound)!
    p.fds.udpConn = dgramSocketFd(conn)!
    Object.assign(p.objs, { 'net.Socket': tcp.client, 'net.Server': server, 'dgram(bound)': bound, 'dgram(connected)': conn })
    p.closers.push(
      () => [a.readFd, a.writeFd, b.readFd, b.writeFd, p.fds.file!, p.fds.devnull!].forEach((fd) => fs.closeSync(fd)),
      () => tcp.close(),
      () => new Promise<void>((r) => server.close(() => r())),
      () => new Promise<void>((r) => bound.close(() => r())),
      () => new Promise<void>((r) => conn.close(() => r())),
      () => fs.rmSync(p.dir, { recursive: true, force: true }),
    )
    return p
  }

  fd(kind: string): number {
    if (kind === 'closed') {
      const fd = fs.openSync('/dev/null', 'r')
      fs.closeSync(fd)
      return fd
    }
    if (kind === 'reused') {
      // A pipe end's number, closed and at once taken again by a regular file.
      const p = pipe()
      fs.closeSync(p.readFd)
      const fd = fs.openSync(this.file, 'r')
      fs.closeSync(p.writeFd)
      this.later(() => fs.closeSync(fd))
      return fd
    }
    const fd = this.fds[kind]
    assert.ok(fd !== undefined, `no fd of kind ${kind}`)
    return fd
  }

  obj(kind: string): unknown {
    if (kind === 'dgram(unbound)') {
      const s = dgram.createSocket('udp4')
      this.later(() => s.close())
      return s
    }
    return this.objs[kind]
  }

  later(fn: () => void): void {
    this.cleanup.push(fn)
  }

  /** After each call: what the call's arguments opened is closed; the pipes are emptied. */
  reset(): void {
    for (const fn of this.cleanup.splice(0)) fn()
    const buf = Buffer.alloc(65536)
    for (const fd of [this.fds.pipeR!, this.fds.pipe2R!]) {
      try {
        while (fs.readSync(fd, buf) > 0);
      } catch {
        // EAGAIN: empty
      }
    }
  }

  async close(): Promise<void> {
    this.reset()
    for (const fn of this.closers) await fn()
  }
}

// ---- ZeroCopySocket runs: fresh loopback pairs whose peers check every byte -------------

export type On = 'tcp' | 'udp'

/** A connected TCP pair and a connected UDP pair, each with a peer that records what arrives. */
export class ZWorld implements Env {
  readonly want: Record<On, Buffer[]> = { tcp: [], udp: [] }
  readonly got: Record<On, Buffer[]> = { tcp: [], udp: [] }
  /** Instances the test itself attached to fds (it owns them, so it closes them). */
  readonly owned: Array<[string, ZeroCopySocket]> = []
  content: Buffer | undefined
  streamy = false
  private readonly cleanup: Array<() => void> = []
  private seq = 0

  private constructor(
    readonly pool: RawPool,
    readonly tcp: net.Socket,
    readonly tcpPeer: net.Socket,
    readonly udp: dgram.Socket,
    readonly udpPeer: dgram.Socket,
    readonly handle: fs.promises.FileHandle,
  ) {
    tcpPeer.on('data', (b: Buffer) => this.got.tcp.push(b)).on('error', () => {})
    udpPeer.on('message', (m) => this.got.udp.push(m))
  }

  static async open(pool: RawPool): Promise<ZWorld> {
    const pair = await tcpPair()
    const udpPeer = dgram.createSocket('udp4')
    await new Promise<void>((r) => udpPeer.bind(0, '127.0.0.1', r))
    setReceiveBuffer(udpPeer, 8 << 20) // a whole 1025-datagram batch must fit (loopback drops the rest)
    const udp = dgram.createSocket('udp4')
    await new Promise<void>((r) => udp.connect(udpPeer.address().port, '127.0.0.1', r))
    return new ZWorld(pool, pair.client, pair.server, udp, udpPeer, await fs.promises.open(pool.file))
  }

  /** Where a target's bytes arrive, if at one of our peers. */
  static peerOf(kind: string): On | undefined {
    return kind.startsWith('tcp') ? 'tcp' : kind.startsWith('udp') ? 'udp' : undefined
  }

  fd(kind: string): number {
    return this.pool.fd(kind)
  }

  /** A `from`/`sendZeroCopy`/`sendFileZeroCopy` target of the given kind, fresh where needed. */
  obj(kind: string): unknown {
    switch (kind) {
      case 'tcp': return this.tcp
      case 'udp': return this.udp
      case 'tcp fd': return socketFd(this.tcp)
      case 'udp fd': return dgramSocketFd(this.udp)
      case 'destroyed net.Socket': return new net.Socket().destroy()
      case 'unconnected net.Socket': return new net.Socket()
      case 'closed dgram.Socket': return dgram.createSocket('udp4').close()
      case 'unconnected dgram.Socket': return this.pool.obj('dgram(bound)')
      case 'net.Server': return this.pool.obj('net.Server')
      default: return this.pool.fd(kind.replace(/ fd$/, '')) // 'file fd', 'pipeR fd', 'closed fd', 'listen fd', 'udpBound fd'
    }
  }

  later(fn: () => void): void {
    this.cleanup.push(fn)
  }

  /** A plain send that must work: resolves with its byte count, and the peer gets exactly what it should. */
  async goodSend(on: On): Promise<string | undefined> {
    const data = randomBytes(64 + ((++this.seq * 997) % 4000), this.seq)
    let zc: ZeroCopySocket
    try {
      zc = ZeroCopySocket.from(on === 'tcp' ? this.tcp : this.udp)
    } catch (err) {
      return `then ZeroCopySocket.from(${on}) for a good send threw ${describe(err)}`
    }
    const c = await callAsync(() => zc.send(data))
    if (c.problem !== undefined) return `then a good send of ${data.length} B on ${on} ${c.problem}`
    if (!c.out!.ok) return `then a good send of ${data.length} B on ${on} rejected: ${describe(c.out!.error)}`
    const bytes = (c.out!.value as { bytes?: unknown }).bytes
    if (bytes !== data.length) return `then a good send of ${data.length} B on ${on} resolved with bytes ${String(bytes)}`
    this.want[on].push(data)
    const p = await this.checkPeer(on)
    return p === undefined ? undefined : `then after a good send on ${on}: ${p}`
  }

  /** Waits (CALL_MS at most) for the peer to have what it should, and compares it exactly. */
  async checkPeer(on: On): Promise<string | undefined> {
    const want = this.want[on]
    const total = (l: Buffer[]) => l.reduce((n, b) => n + b.length, 0)
    const enough = () => (on === 'tcp' ? total(this.got.tcp) >= total(want) : this.got.udp.length >= want.length)
    for (const deadline = Date.now() + CALL_MS; !enough() && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 2))
    await new Promise((r) => setTimeout(r, 1)) // anything extra that is on its way
    if (on === 'tcp') {
      const got = Buffer.concat(this.got.tcp)
      const w = Buffer.concat(want)
      if (got.equals(w)) return undefined
      let i = 0
      while (i < got.length && i < w.length && got[i] === w[i]) i++
      return `the TCP peer got ${got.length} B, want ${w.length} B; first difference at byte ${i}`
    }
    const got = this.got.udp
    const i = want.findIndex((w, k) => got[k] === undefined || !got[k]!.equals(w))
    if (i < 0 && got.length === want.length) return undefined
    const sizes = (l: Buffer[]) => (l.length > 12 ? `${l.length} datagrams` : `[${l.map((b) => b.length).join(', ')}]`)
    return `the UDP peer got ${sizes(got)}, want ${sizes(want)}; first difference at datagram ${i < 0 ? want.length : i}`
  }

  /** Closes what the run made; a close that never settles is a failure. */
  async close(): Promise<string | undefined> {
    const problems: string[] = []
    for (const [kind, zc] of this.owned) {
      const c = await callAsync(() => zc.close())
      if (c.problem !== undefined) problems.push(`close() of the instance on ${kind} ${c.problem}`)
    }
    for (const fn of this.cleanup.splice(0)) fn()
    this.pool.reset()
    this.tcp.destroy()
    this.tcpPeer.destroy()
    for (const s of [this.udp, this.udpPeer]) {
      try {
        s.close()
      } catch {
        // closed by the run
      }
    }
    await this.handle.close()
    return problems.length > 0 ? problems.join('; ') : undefined
  }
}

// ---- the runner ------------------------------------------------------------------------

export interface FuzzContext {
  name: string
  diagnostic(message: string): void
  skip(message?: string): void
}

/**
 * Runs one property with fast-check: `ZEROCOPY_FUZZ_SEED` (else random, printed),
 * `ZEROCOPY_FUZZ_RUNS` (else `runs`), `ZEROCOPY_FUZZ_PATH` + `ZEROCOPY_FUZZ_ONLY` to
 * replay one counterexample. `body` returns what is wrong, or undefined.
 */
export async function fuzz<T>(t: FuzzContext, arb: fc.Arbitrary<T>, runs: number, body: (v: T) => Promise<string | undefined>): Promise<void> {
  if (ONLY !== undefined && t.name !== ONLY) return t.skip(`ZEROCOPY_FUZZ_ONLY=${ONLY}`)
  const numRuns = RUNS ?? runs
  const t0 = Date.now()
  const details = await ownStrayEvents(() => fc.check(
    fc.asyncProperty(arb, async (v) => {
      const p = [await body(v), await strayEvents()].filter((x) => x !== undefined)
      if (p.length > 0) throw new Error(p.join('; and '))
    }),
    {
      seed: SEED,
      numRuns,
      ...(PATH !== undefined ? { path: PATH } : {}),
      // Shrinking a failure whose calls time out costs CALL_MS a step: bounded.
      plugins: [fc.interruptAfterTimeLimit(RUNS !== undefined ? 2 ** 31 - 1 : 15000)],
    },
  ))
  const took = `${((Date.now() - t0) / 1000).toFixed(1)} s`
  t.diagnostic(`${details.numRuns} runs, ${details.numShrinks} shrinks, ${took}, seed ${details.seed}${details.interrupted ? ' (interrupted by the time limit)' : ''}`)
  if (!details.failed) return
  const why = details.errorInstance instanceof Error ? details.errorInstance.message : describe(details.errorInstance)
  const replay = `ZEROCOPY_FUZZ_SEED=${details.seed} ZEROCOPY_FUZZ_PATH=${details.counterexamplePath} ZEROCOPY_FUZZ_ONLY='${t.name}' node --test dist/test/fuzz-entry-points.test.js`
  assert.fail(
    `${t.name}: ${why}\n  counterexample: ${fc.stringify(details.counterexample)}\n` +
      `  (failed at run ${details.numRuns}, shrunk ${details.numShrinks} times; seed ${details.seed}, path ${details.counterexamplePath})\n  replay: ${replay}`,
  )
}
