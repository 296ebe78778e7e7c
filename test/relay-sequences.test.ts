// Model-based test of relays beside sends (issue 21): random sequences of send,
// sendEach, socket.write, relay (one way, `length` mode, either direction), close of a
// ZeroCopySocket, relay aborts, idle timeouts and peer resets, all on the same two
// proxy sockets of a chain (client <-> proxyIn, proxyOut <-> server), checked against a
// byte model per peer. What may reach a peer is decided at each call, in call order:
// a send's or a write's bytes at its call, a relay's relayed bytes at the relay's call
// (everything queued on the destination before it goes first, everything after it
// waits for its end). Invariants, at the end of each sequence:
//   1. each peer's bytes equal the model's (after an abort or reset: a prefix of it);
//   2. every Promise settles exactly once, in bounded time; a resolved relay moved its length;
//   3. no uncaught exception or unhandled rejection, no relay job left, no fd leaked;
//   4. once the sequence's sockets are closed, none of them is reachable (WeakRef and a
//      forced GC): nothing the package keeps holds a closed socket.
//
// Environment:
//   ZEROCOPY_RELAY_MODEL_SEED   fast-check seed (default 20261207; 'random' for a new one; always printed)
//   ZEROCOPY_RELAY_MODEL_PATH   fast-check replay path printed with a failure
//   ZEROCOPY_RELAY_MODEL_RUNS   sequences (default 30; `npm run test:relay-model-long`: 500)
import * as assert from 'node:assert/strict'
import type * as net from 'node:net'
import { after, test } from 'node:test'
import * as v8 from 'node:v8'
import * as vm from 'node:vm'
import fc from 'fast-check'
import { relay, ZeroCopySocket } from '../lib'
import { runningJobs } from '../lib/relay-engine'
import { openFdTargets, randomBytes } from './helpers'
import { chain, type Chain } from './relay-util'

const seedEnv = process.env.ZEROCOPY_RELAY_MODEL_SEED ?? '20261207'
const SEED = seedEnv === 'random' ? Date.now() ^ (Math.random() * 0x7fffffff) : Number(seedEnv)
const RUNS = Number(process.env.ZEROCOPY_RELAY_MODEL_RUNS ?? 30)
const PATH = process.env.ZEROCOPY_RELAY_MODEL_PATH
/** Every wait inside a sequence is bounded by this. */
const SETTLE_MS = 15_000
const IDLE_MS = 400

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void

const uncaught: string[] = []
process.on('uncaughtException', (err) => uncaught.push(`uncaught exception: ${err?.stack ?? err}`))
process.on('unhandledRejection', (err) => uncaught.push(`unhandled rejection: ${(err as Error)?.stack ?? err}`))
after(() => {
  setTimeout(() => process.exit(), 3000).unref()
})

const POOL = randomBytes(8 << 20, 0x7e1a)
type Side = 'in' | 'out'
type Peer = 'client' | 'server'
/** The peer a proxy socket's writes reach. */
const PEER: Record<Side, Peer> = { in: 'client', out: 'server' }

interface Op {
  label: string
  settles: number
  state: 'pending' | 'resolved' | 'rejected'
  value?: unknown
  error?: NodeJS.ErrnoException
}

/** The real side: the chain, the ZeroCopySockets attached to its proxy ends, the model's bytes. */
class Real {
  readonly ops: Op[] = []
  readonly expected: Record<Peer, Buffer[]> = { client: [], server: [] }
  readonly got: Record<Peer, Buffer[]> = { client: [], server: [] }
  readonly ended: Record<Peer, Promise<void>>
  readonly zc: Partial<Record<Side, ZeroCopySocket>> = {}
  readonly log: string[] = []
  /** The relay running now, if any: relays of one chain run one after another. */
  relaying: Promise<unknown> | undefined
  /** A relay started and has not settled. */
  running = false
  /** Idle timeouts Node fired on a proxy socket while a relay ran. */
  timeoutsInRelay = 0
  /** Why the sequence can only be checked as a prefix from here on. */
  cut: string | undefined
  timeouts = 0
  private at = 0

  constructor(readonly c: Chain) {
    this.ended = { client: this.collect(c.client, 'client'), server: this.collect(c.server, 'server') }
  }

  socket(side: Side): net.Socket {
    return side === 'in' ? this.c.proxyIn : this.c.proxyOut
  }

  bytes(n: number): Buffer {
    const start = this.at % (POOL.length - n)
    this.at += n + 7
    return Buffer.from(POOL.subarray(start, start + n)) // its own memory: a send may hold it
  }

  track(label: string, p: Promise<unknown>): Op {
    const op: Op = { label, settles: 0, state: 'pending' }
    this.ops.push(op)
    p.then(
      (value) => {
        op.settles++
        op.state = 'resolved'
        op.value = value
      },
      (error: NodeJS.ErrnoException) => {
        op.settles++
        op.state = 'rejected'
        op.error = error
      },
    )
    return op
  }

  zcOf(side: Side): ZeroCopySocket {
    let zc = this.zc[side]
    if (zc === undefined || !zc.isOpen) zc = this.zc[side] = ZeroCopySocket.from(this.socket(side))
    return zc
  }

  private collect(s: net.Socket, peer: Peer): Promise<void> {
    return new Promise((resolve) => {
      s.on('data', (chunk: Buffer) => this.got[peer].push(chunk))
      s.on('error', () => {})
      s.once('end', () => resolve())
      s.once('close', () => resolve())
    })
  }
}

interface Model {
  cut: boolean
}

type Cmd = fc.AsyncCommand<Model, Real>

class Send implements Cmd {
  constructor(
    readonly side: Side,
    readonly size: number,
    readonly how: 'send' | 'sendEach' | 'copy' | 'write',
  ) {}
  check = (m: Readonly<Model>) => !m.cut
  async run(_: Model, r: Real): Promise<void> {
    const data = r.bytes(this.size)
    r.expected[PEER[this.side]].push(data)
    const label = `${this.how}(${this.side}, ${this.size})`
    r.log.push(label)
    if (this.how === 'write') {
      r.track(label, new Promise<void>((resolve, reject) => r.socket(this.side).write(data, (err) => (err ? reject(err) : resolve()))))
      return
    }
    let zc: ZeroCopySocket
    try {
      zc = r.zcOf(this.side)
    } catch (err) {
      // A relay that failed meanwhile destroyed the socket: attaching throws, as it must.
      if (!r.socket(this.side).destroyed) throw err
      r.cut ??= `${label}: the socket was destroyed`
      return
    }
    if (this.how === 'sendEach') {
      const third = Math.ceil(data.length / 3)
      r.track(label, zc.sendEach([data.subarray(0, third), data.subarray(third, 2 * third), data.subarray(2 * third)]))
    } else {
      r.track(label, zc.send(data, { copy: this.how === 'copy' }))
    }
  }
  toString = () => `${this.how}(${this.side}, ${this.size})`
}

class Relay implements Cmd {
  constructor(
    readonly direction: 'a->b' | 'b->a',
    readonly length: number,
    readonly trickle: boolean,
    /** Abort after this many ms (the relay may end first); undefined: never. */
    readonly abortMs: number | undefined,
  ) {}
  check = (m: Readonly<Model>) => !m.cut
  async run(m: Model, r: Real): Promise<void> {
    // One relay at a time on the chain's sockets: wait for the one running (bounded).
    if (r.relaying !== undefined) await settledWithin(r.relaying, SETTLE_MS)
    if (r.cut !== undefined) return void (m.cut = true)
    const data = r.bytes(this.length)
    const source = this.direction === 'a->b' ? r.c.client : r.c.server
    const dest: Peer = this.direction === 'a->b' ? 'server' : 'client'
    if (this.trickle) {
      // Bytes in three parts, IDLE_MS / 4 apart: the relay must count as activity.
      const third = Math.ceil(data.length / 3)
      void (async () => {
        for (let i = 0; i < 3; i++) {
          if (source.destroyed) return
          source.write(data.subarray(i * third, (i + 1) * third))
          await new Promise((resolve) => setTimeout(resolve, IDLE_MS / 4))
        }
      })()
    } else {
      source.write(data)
    }
    const controller = this.abortMs === undefined ? undefined : new AbortController()
    const label = `relay(${this.direction}, ${this.length}${this.trickle ? ', trickle' : ''}${this.abortMs === undefined ? '' : `, abort ${this.abortMs} ms`})`
    r.log.push(label)
    r.expected[dest].push(data)
    const p = relay(r.c.proxyIn, r.c.proxyOut, { direction: this.direction, length: this.length, signal: controller?.signal })
    const op = r.track(label, p)
    r.running = true
    p.finally(() => (r.running = false)).catch(() => {})
    r.relaying = p.then(
      (v) => {
        const moved = this.direction === 'a->b' ? v.aToB : v.bToA
        if (moved !== this.length) op.error = Object.assign(new Error(`resolved having moved ${moved} of ${this.length}`), { code: 'MODEL' })
      },
      () => {
        // A rejected relay destroyed the proxy sockets (or gave them back cut): from here
        // on each peer holds a prefix of its model.
        r.cut ??= `${label} rejected`
      },
    )
    if (controller !== undefined) setTimeout(() => controller.abort(), this.abortMs)
  }
  toString = () => `relay(${this.direction}, ${this.length}, trickle ${this.trickle}, abort ${this.abortMs})`
}

class CloseZc implements Cmd {
  constructor(readonly side: Side) {}
  check = (m: Readonly<Model>) => !m.cut
  async run(_: Model, r: Real): Promise<void> {
    const zc = r.zc[this.side]
    if (zc === undefined) return
    r.log.push(`close(${this.side})`)
    r.zc[this.side] = undefined
    r.track(`close(${this.side})`, zc.close())
  }
  toString = () => `close(${this.side})`
}

class Pause implements Cmd {
  constructor(readonly ms: number) {}
  check = () => true
  async run(_: Model, r: Real): Promise<void> {
    r.log.push(`pause(${this.ms})`)
    await new Promise((resolve) => setTimeout(resolve, this.ms))
  }
  toString = () => `pause(${this.ms})`
}

class Reset implements Cmd {
  constructor(readonly peer: Peer) {}
  check = (m: Readonly<Model>) => !m.cut
  async run(m: Model, r: Real): Promise<void> {
    m.cut = true
    r.cut ??= `reset(${this.peer})`
    r.log.push(`reset(${this.peer})`)
    const s = this.peer === 'client' ? r.c.client : r.c.server
    s.resetAndDestroy()
  }
  toString = () => `reset(${this.peer})`
}

const side = fc.constantFrom<Side>('in', 'out')
const size = fc.oneof(fc.integer({ min: 1, max: 4096 }), fc.integer({ min: 64 << 10, max: 4 << 20 }))
const commands = [
  fc.tuple(side, size, fc.constantFrom('send', 'sendEach', 'copy', 'write') as fc.Arbitrary<'send' | 'sendEach' | 'copy' | 'write'>).map(([s, n, how]) => new Send(s, n, how)),
  fc.tuple(side, size, fc.constantFrom('send', 'write') as fc.Arbitrary<'send' | 'write'>).map(([s, n, how]) => new Send(s, n, how)),
  fc
    .tuple(
      fc.constantFrom<'a->b' | 'b->a'>('a->b', 'b->a'),
      fc.oneof(fc.integer({ min: 1, max: 4096 }), fc.integer({ min: 64 << 10, max: 1 << 20 })),
      fc.boolean(),
      fc.option(fc.integer({ min: 0, max: 30 }), { freq: 6, nil: undefined }),
    )
    .map(([d, n, trickle, abortMs]) => new Relay(d, n, trickle, abortMs)),
  side.map((s) => new CloseZc(s)),
  fc.integer({ min: 1, max: 40 }).map((ms) => new Pause(ms)),
  fc.constantFrom<Peer>('client', 'server').map((p) => new Reset(p)),
]

function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]).finally(() => clearTimeout(timer))
}

function isPrefix(got: Buffer, want: Buffer): boolean {
  return got.length <= want.length && got.equals(want.subarray(0, got.length))
}

/** Where two byte streams first differ, in words, for a failure message. */
function firstDifference(got: Buffer, want: Buffer): string {
  const n = Math.min(got.length, want.length)
  let i = 0
  while (i < n && got[i] === want[i]) i++
  return `got ${got.length} bytes, the model ${want.length}; first difference at byte ${i}`
}

/**
 * Runs one sequence and checks invariants 1-3; returns WeakRefs of every socket it made,
 * once all are closed and nothing of the sequence is referenced from here (invariant 4).
 */
async function runSequence(cmds: Iterable<Cmd>, idleTimeout: boolean): Promise<{ problems: string[]; refs: Array<WeakRef<object>>; log: string }> {
  const c = await chain()
  const r = new Real(c)
  const problems: string[] = []
  // The application's handlers: an error on a proxy socket (a reset) is expected here.
  c.proxyIn.on('error', () => {})
  c.proxyOut.on('error', () => {})
  if (idleTimeout) {
    // Node's idle timeout, as its docs show it: a relay moving bytes is activity.
    for (const s of [c.proxyIn, c.proxyOut]) {
      s.setTimeout(IDLE_MS, () => {
        r.timeouts++
        if (!r.running) return // idle between commands: not what this checks
        r.timeoutsInRelay++
        s.destroy()
      })
    }
  }
  const uncaughtBefore = uncaught.length
  try {
    await fc.asyncModelRun(() => ({ model: { cut: false }, real: r }), cmds)
    if (r.relaying !== undefined && !(await settledWithin(r.relaying, SETTLE_MS))) problems.push('a relay did not settle')
    if (r.cut === undefined) {
      // Everything queued reaches the peers, then a FIN each way.
      await Promise.all(r.ops.map((op) => waitSettled(op)))
      for (const s of ['in', 'out'] as const) await r.zc[s]?.close()
      c.proxyIn.end()
      c.proxyOut.end()
      await Promise.race([Promise.all([r.ended.client, r.ended.server]), new Promise((resolve) => setTimeout(resolve, SETTLE_MS))])
    } else {
      await Promise.all(r.ops.map((op) => waitSettled(op)))
    }
    for (const op of r.ops) {
      if (op.settles !== 1) problems.push(`${op.label} settled ${op.settles} times`)
      if (op.error?.code === 'MODEL') problems.push(`${op.label}: ${op.error.message}`)
      if (r.cut === undefined && op.state === 'rejected') problems.push(`${op.label} rejected with nothing cut: ${op.error?.code} ${op.error?.message}`)
    }
    for (const peer of ['client', 'server'] as const) {
      const got = Buffer.concat(r.got[peer])
      const want = Buffer.concat(r.expected[peer])
      if (r.cut === undefined ? !got.equals(want) : !isPrefix(got, want)) {
        problems.push(`${peer} ${r.cut === undefined ? 'bytes differ from' : 'bytes are not a prefix of'} the model: ${firstDifference(got, want)}`)
      }
    }
  } finally {
    for (const s of ['in', 'out'] as const) await r.zc[s]?.close().catch(() => {})
    await c.close()
  }
  for (const e of uncaught.slice(uncaughtBefore)) problems.push(e)
  if (r.timeoutsInRelay > 0) problems.push(`Node's idle timeout fired ${r.timeoutsInRelay} times while a relay moved bytes at least every ${IDLE_MS / 4} ms`)
  if (runningJobs() !== 0) problems.push(`${runningJobs()} relay jobs still running`)
  const refs = [c.client, c.proxyIn, c.proxyOut, c.server].map((s) => new WeakRef(s))
  const log = `${idleTimeout ? `idle timeout ${IDLE_MS} ms (fired ${r.timeouts}); ` : ''}${r.log.join('; ')}${r.cut ? ` [cut: ${r.cut}]` : ''}`
  return { problems, refs, log }
}

function waitSettled(op: Op): Promise<void> {
  const deadline = performance.now() + SETTLE_MS
  return new Promise((resolve) => {
    const poll = () => (op.settles > 0 || performance.now() > deadline ? resolve() : setTimeout(poll, 5))
    poll()
  })
}

/** Invariant 4: after closing, GC until the sockets are gone (a few rounds: finalizers, timers). */
async function unreachable(refs: Array<WeakRef<object>>): Promise<number> {
  for (let i = 0; i < 10; i++) {
    await new Promise((resolve) => setImmediate(resolve))
    gc()
    if (refs.every((w) => w.deref() === undefined)) return 0
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return refs.filter((w) => w.deref() !== undefined).length
}

test('random sequences of sends, writes, relays, closes, aborts, idle timeouts and resets keep one byte order per socket', async (t) => {
  t.diagnostic(`seed ${SEED}, ${RUNS} sequences`)
  const fdsBefore = openFdTargets()
  const property = fc.asyncProperty(fc.commands(commands, { maxCommands: 14 }), fc.boolean(), async (cmds, idle) => {
    const { problems, refs, log } = await runSequence(cmds, idle)
    const alive = await unreachable(refs)
    if (alive > 0) problems.push(`${alive} of the sequence's 4 sockets still reachable after close and GC`)
    if (problems.length > 0) throw new Error(`${problems.join('\n')}\nsequence: ${log}`)
  })
  const details = await fc.check(property, { seed: SEED, path: PATH, numRuns: RUNS, endOnFailure: true })
  if (details.failed) {
    assert.fail(
      `relay sequence failed (seed ${details.seed}, path ${details.counterexamplePath}): replay with ` +
        `ZEROCOPY_RELAY_MODEL_SEED=${details.seed} ZEROCOPY_RELAY_MODEL_PATH='${details.counterexamplePath}' node --test dist/test/relay-sequences.test.js\n` +
        `${String((details.errorInstance as Error)?.message ?? details.errorInstance)}`,
    )
  }
  // Nothing of any sequence stays open (the relay thread's own epoll and eventfd aside, made once).
  const added = [...openFdTargets()].filter(([fd, to]) => fdsBefore.get(fd) !== to && !/eventpoll|eventfd|io_uring/.test(to))
  assert.deepEqual(added, [], 'fds left open')
})
