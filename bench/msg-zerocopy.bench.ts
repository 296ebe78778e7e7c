// examples/msg_zerocopy, sender and receiver, against a C pair that does what the
// kernel's msg_zerocopy selftest does (bench/c/selftest_pair.c), with the same
// payload (65435 B), the same options and the same placement (sender on CPU 0,
// receiver on CPU 1): tcp and udp, with and without -z, on loopback and, as root,
// across the namespace sink (tcp to a receiver on host B; udp into B's blackhole, no
// receiver). A row's rate is its sender's: bytes sent over its own wall time.
import { spawn, spawnSync } from 'node:child_process'
import * as path from 'node:path'
import { MAX_PAYLOAD } from '../examples/msg_zerocopy-config'
import { createSink, netnsUnavailable, RECEIVER_ADDRESS, SINK_ADDRESS } from '../examples/netns-topology'
import { cBinary, onCpu, parseResult, toRow, type BenchContext, type Measured, type Row } from './harness'

const EXAMPLE = path.join(__dirname, '..', 'examples', 'msg_zerocopy.js')

interface Route {
  name: string
  proto: 'tcp' | 'udp'
  address: string
  /** Runs a command where the sender lives (namespace, CPU 0). */
  tx: string[]
  /** Runs a command where the receiver lives (CPU 1); none for the sink. */
  rx: string[] | undefined
  /** Runs `ss` where the receiver lives. */
  ss: string[]
}

let nextPort = 18700

/** Waits (up to 5 s) until a receiver holds `port`. */
async function bound(route: Route, port: number): Promise<void> {
  const deadline = Date.now() + 5000
  while (Date.now() < deadline) {
    const [cmd, ...args] = [...route.ss, 'ss', '-Han', route.proto === 'tcp' ? '-lt' : '-u', `sport = :${port}`]
    if (spawnSync(cmd!, args).stdout?.toString().trim()) return
    await new Promise((r) => setTimeout(r, 20))
  }
  throw new Error(`no receiver on port ${port}`)
}

/** Starts the receiver (if the route has one) for longer than the sender runs; returns how to stop it. */
async function startReceiver(route: Route, argv: string[], port: number): Promise<() => void> {
  if (route.rx === undefined) return () => {}
  const [cmd, ...args] = [...route.rx, ...argv]
  const child = spawn(cmd!, args, { stdio: 'ignore', detached: true })
  await bound(route, port)
  return () => {
    try {
      process.kill(-child.pid!, 'SIGKILL') // the process group: `ip netns exec` and what it runs
    } catch {
      // already gone
    }
  }
}

async function examplePair(route: Route, seconds: number, zerocopy: boolean): Promise<Measured> {
  const port = nextPort++
  const common = ['-4', '-D', route.address, '-p', String(port)]
  const z = zerocopy ? ['-z'] : []
  const stop = await startReceiver(route, [process.execPath, EXAMPLE, ...common, '-r', '-t', String(seconds + 3), route.proto], port)
  try {
    const [cmd, ...args] = [...route.tx, process.execPath, EXAMPLE, ...common, '-t', String(seconds), '-v', ...z, route.proto]
    const out = spawnSync(cmd!, args, { timeout: 120000, encoding: 'utf8' })
    const line = (name: string) => JSON.parse(new RegExp(`^${name}: (.*)$`, 'm').exec(out.stderr)?.[1] ?? 'null')
    const stats = line('stats') as { zeroCopyBytes: number; copyBytes: number; zeroCopyCalls: number; copyCalls: number } | null
    const time = line('time') as { seconds: number; cpuSeconds: number } | null
    if (out.status !== 0 || stats === null || time === null) throw new Error(`msg_zerocopy example failed: ${out.stderr}`)
    return { bytes: stats.zeroCopyBytes + stats.copyBytes, calls: stats.zeroCopyCalls + stats.copyCalls, ...time }
  } finally {
    stop()
  }
}

async function cPair(route: Route, seconds: number, zerocopy: boolean): Promise<Measured> {
  const port = nextPort++
  const bin = cBinary('selftest_pair')
  const common = [route.proto, '4', route.address, String(port)]
  // The selftest's -t s runs 200 ms + s; so does this.
  const stop = await startReceiver(route, [bin, 'rx', ...common, String(seconds + 3.6), String(MAX_PAYLOAD)], port)
  try {
    const [cmd, ...args] = [...route.tx, bin, 'tx', ...common, String(seconds + 0.2), String(MAX_PAYLOAD), zerocopy ? '1' : '0']
    const out = spawnSync(cmd!, args, { timeout: 120000, encoding: 'utf8' })
    if (out.status !== 0) throw new Error(`selftest_pair failed: ${out.stderr}`)
    return parseResult(out.stdout)
  } finally {
    stop()
  }
}

async function measureRoute(route: Route, ctx: BenchContext): Promise<Row[]> {
  const seconds = Math.max(1, Math.round(ctx.seconds))
  const rows: Array<() => Promise<Row>> = []
  for (const zerocopy of [false, true]) {
    const bench = `msg_zerocopy pair ${route.name}`
    const group = `${route.proto}${zerocopy ? ' -z' : ''}`
    const c = `C pair (the selftest's loop)${zerocopy ? ' -z' : ''}`
    rows.push(async () => toRow(bench, group, `examples/msg_zerocopy${zerocopy ? ' -z' : ''}`, 'zerocopy', await examplePair(route, seconds, zerocopy), c))
    rows.push(async () => toRow(bench, group, c, 'c', await cPair(route, seconds, zerocopy)))
  }
  // One at a time, starting at a different one each round (as inRotation does, async).
  const out = new Array<Row>(rows.length)
  for (let k = 0; k < rows.length; k++) {
    const i = (ctx.round + k) % rows.length
    out[i] = await rows[i]!()
  }
  return out
}

export async function run(ctx: BenchContext): Promise<Row[]> {
  const rows: Row[] = []
  for (const proto of ['tcp', 'udp'] as const) {
    rows.push(...(await measureRoute({ name: 'loopback', proto, address: '127.0.0.1', tx: onCpu(0), rx: onCpu(1), ss: [] }, ctx)))
  }
  const why = netnsUnavailable()
  if (why !== undefined) {
    process.stderr.write(`msg-zerocopy: skipping the namespace sink (${why})\n`)
    return rows
  }
  const topology = createSink()
  try {
    const inA = ['ip', 'netns', 'exec', topology.sender]
    const inB = ['ip', 'netns', 'exec', topology.receiver]
    rows.push(...(await measureRoute({ name: 'netns', proto: 'tcp', address: RECEIVER_ADDRESS, tx: [...inA, ...onCpu(0)], rx: [...inB, ...onCpu(1)], ss: inB }, ctx)))
    rows.push(...(await measureRoute({ name: 'netns sink', proto: 'udp', address: SINK_ADDRESS, tx: [...inA, ...onCpu(0)], rx: undefined, ss: inB }, ctx)))
  } finally {
    topology.remove()
  }
  return rows
}
