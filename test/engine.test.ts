// The engine choice (lib/engine.ts): io_uring where the probe passes, the epoll engine
// wherever io_uring is refused, and both visible (stats.engine, each result's
// mechanism). A refusal is made for real in a child process: a seccomp filter refusing
// io_uring_setup with EPERM, as Docker's default profile does (test/fixtures/
// no-io-uring.c, compiled with cc), and the probe's own forced failure. The sysctl
// kernel.io_uring_disabled is not touched: it is machine-wide, and other processes on
// this machine may be using io_uring while the test runs.
import * as assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import type * as net from 'node:net'
import * as path from 'node:path'
import { test } from 'node:test'
import { ZeroCopySocket } from '../lib'
import { uringUnavailable } from '../lib/engine'
import { native } from '../lib/native'
import { collect, randomBytes, sha256, tcpPair, tempDir } from './helpers'
import { within } from './regress-util'

const CHILD = path.join(__dirname, 'fixtures', 'engine-child.js')

interface ChildReport {
  engine?: string
  engineFallback?: string
  mechanism?: string
  error?: string
  message?: string
  read: number
}

function child(engine: string, env: NodeJS.ProcessEnv, wrap: string[] = []): ChildReport {
  const [cmd, ...args] = [...wrap, process.execPath, CHILD, engine]
  const r = spawnSync(cmd!, args, { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 30000 })
  assert.equal(r.status, 0, `child failed: ${r.stderr}`)
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as ChildReport
}

/** Every way to name the engine, in a process where io_uring cannot run for `why`. */
function assertFallsBack(env: NodeJS.ProcessEnv, why: RegExp, wrap: string[] = []): void {
  const { ZEROCOPY_ENGINE: _drop, ...rest } = process.env
  const base = { ...rest, ...env }
  for (const option of ['-', 'auto']) {
    const r = child(option, base, wrap)
    assert.equal(r.engine, 'epoll', `engine ${option}: the epoll engine takes over`)
    assert.match(r.engineFallback ?? '', why, 'and says why')
    assert.equal(r.mechanism, 'msg_zerocopy')
    assert.equal(r.read, 65536, 'the bytes arrived')
  }
  const forced = child('io_uring', base, wrap)
  assert.equal(forced.error, 'ERR_ZEROCOPY_ENGINE_UNAVAILABLE', 'an explicit io_uring is refused, not faked')
  assert.match(forced.message ?? '', why)
  const byEnv = child('-', { ...base, ZEROCOPY_ENGINE: 'io_uring' }, wrap)
  assert.equal(byEnv.error, 'ERR_ZEROCOPY_ENGINE_UNAVAILABLE', 'ZEROCOPY_ENGINE=io_uring too')
  const epoll = child('epoll', base, wrap)
  assert.equal(epoll.engine, 'epoll')
  assert.equal(epoll.engineFallback, undefined, 'chosen, not fallen back to')
}

test('auto takes io_uring where the probe passes, and says so in stats and results', async (t) => {
  const why = uringUnavailable()
  if (why !== '') return t.skip(`io_uring cannot run here: ${why}`)
  const { ZEROCOPY_ENGINE: _drop, ...env } = process.env
  const r = child('-', env)
  assert.deepEqual([r.engine, r.engineFallback, r.mechanism, r.read], ['io_uring', undefined, 'io_uring', 65536])
})

test('the probe made to fail (ZEROCOPY_URING_PROBE=fail): the epoll engine takes over and says why', () => {
  assertFallsBack({ ZEROCOPY_URING_PROBE: 'fail' }, /ZEROCOPY_URING_PROBE=fail/)
})

test('io_uring_setup refused by a seccomp filter (EPERM, as under Docker): the epoll engine takes over', (t) => {
  const dir = tempDir(t)
  const launcher = path.join(dir, 'no-io-uring')
  try {
    execFileSync('cc', ['-O2', '-o', launcher, path.join(__dirname, '..', '..', 'test', 'fixtures', 'no-io-uring.c')], { stdio: 'pipe' })
  } catch (err) {
    return t.skip(`no C compiler to build the seccomp launcher: ${(err as Error).message}`)
  }
  assert.ok(fs.existsSync(launcher))
  assertFallsBack({}, /io_uring_setup was refused \(EPERM/, [launcher])
})

test('an engine option that is not one of the three is a coded TypeError', async (t) => {
  const pair = await tcpPair()
  t.after(() => pair.close())
  assert.throws(() => ZeroCopySocket.from(pair.client, { engine: 'uring' as never }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
})

test('one socket, engines in turn: epoll, io_uring, epoll again; ids carry over, bytes arrive exactly', async (t) => {
  if (uringUnavailable() !== '') return t.skip('io_uring cannot run here')
  const pair = await tcpPair()
  t.after(() => pair.close())
  const got = collect(pair.server)
  const parts = [1, 2, 3, 4].map((i) => randomBytes(200_000, 40 + i))
  const engines = ['epoll', 'io_uring', 'epoll', 'io_uring'] as const
  for (let i = 0; i < parts.length; i++) {
    const zc = ZeroCopySocket.from(pair.client, { engine: engines[i], copiedThreshold: Infinity })
    assert.equal(zc.stats.engine, engines[i])
    // Different counts per engine: the epoll engine's ids must continue the kernel's
    // MSG_ZEROCOPY counter, which io_uring's own sequence numbers never move.
    const pieces = engines[i] === 'io_uring' ? 5 : 3
    const step = Math.ceil(parts[i]!.length / pieces)
    const views = Array.from({ length: pieces }, (_, k) => parts[i]!.subarray(k * step, (k + 1) * step))
    const r = await within(5000, zc.sendEach(views), `the ${engines[i]} sends to settle`)
    assert.equal(r.mechanism, engines[i] === 'io_uring' ? 'io_uring' : 'msg_zerocopy')
    assert.equal(zc.stats.completedIds, pieces, `${engines[i]}: each of its ids completed`)
    await zc.close()
  }
  pair.client.end()
  assert.equal(sha256(await got), sha256(Buffer.concat(parts)))
})

/** The fds (numbers) each of this package's epoll instances watches, from /proc/self/fdinfo. */
function reactorWatches(): Set<number> {
  const watched = new Set<number>()
  for (const fd of native.privateFds()) {
    let link = ''
    try {
      link = fs.readlinkSync(`/proc/self/fd/${fd}`)
    } catch {
      continue
    }
    if (link !== 'anon_inode:[eventpoll]') continue
    for (const m of fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').matchAll(/^tfd:\s+(\d+)/gm)) watched.add(Number(m[1]))
  }
  return watched
}

/** Our private duplicate of a Node socket: the private fd naming the same socket inode. */
function privateDuplicate(socket: net.Socket): number {
  const inode = fs.readlinkSync(`/proc/self/fd/${(socket as unknown as { _handle: { fd: number } })._handle.fd}`)
  const dups = native.privateFds().filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`) === inode
    } catch {
      return false
    }
  })
  assert.equal(dups.length, 1, 'one private duplicate of the socket')
  return dups[0]!
}

test('io_uring: a socket sits in the reactor epoll only while it waits for room (every freed skb wakes each epoll waiter)', async (t) => {
  if (uringUnavailable()) return t.skip(`io_uring cannot run here: ${uringUnavailable()}`)
  const pair = await tcpPair()
  t.after(() => pair.close())
  pair.server.pause()
  const zc = ZeroCopySocket.from(pair.client, { engine: 'io_uring', copiedThreshold: Infinity })
  const first = await zc.send(Buffer.alloc(1000, 1))
  assert.equal(first.mechanism, 'io_uring')
  const dup = privateDuplicate(pair.client)
  assert.ok(!reactorWatches().has(dup), 'idle: not in the epoll set')
  // More than the socket buffers hold: EAGAIN, and a wait for room.
  const big = Buffer.alloc(16 << 20, 2)
  const sending = zc.send(big)
  await new Promise((r) => setTimeout(r, 100))
  assert.ok(zc.stats.eagain > 0, 'the kernel said EAGAIN')
  assert.ok(reactorWatches().has(dup), 'waiting for room: in the epoll set')
  const received = collect(pair.server)
  pair.server.resume()
  assert.equal((await sending).bytes, big.length)
  assert.ok(!reactorWatches().has(dup), 'room came: out of the epoll set again')
  pair.client.end()
  assert.equal((await received).length, 1000 + big.length)
  await zc.close()
})
