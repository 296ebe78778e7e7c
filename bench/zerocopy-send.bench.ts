// Zero-copy sends that await their releases, on both engines (epoll: MSG_ZEROCOPY;
// io_uring: SEND_ZC), against socket.write and against the same loops in C
// (bench/c/zc_sender.c; bench/c/uring_sender.c, with and without a registered buffer),
// on loopback TCP and, as root, UDP into the
// namespace sink (forwarded to a blackhole: true zero-copy, like a real NIC). Every
// sender runs in its own process; the TCP reader is bench/c/tcp_sink.c. The
// msg_zerocopy example is measured as a pair, in bench/msg-zerocopy.bench.ts.
import { execFileSync } from 'node:child_process'
import * as path from 'node:path'
import { createSink, netnsUnavailable, SINK_ADDRESS } from '../examples/netns-topology'
import { BATCH } from './send-loop'
import { cBinary, formatBytes, inRotation, onCpu, parseResult, start, toRow, type BenchContext, type Measured, type Row } from './harness'

const SIZES = [64 * 1024, 1024 * 1024]
const UDP_SIZE = 60000 // one 64 KB-class datagram under the 65535 MTU
const WINDOW = 4 // sends in flight per Node sender; more only adds cache pressure on loopback
/**
 * Datagrams a UDP sender also runs with in flight: one send() per datagram, 32 awaited
 * at a time (1.9 MB), so that releases arrive together and the sends they start in the
 * same tick reach the kernel together (same-tick batching). The C loops have no window.
 */
const UDP_WIDE_WINDOW = 32
// The C SEND_ZC fixed loop with its datagrams linked, as sendEach keeps them in order:
// what the ordering itself costs the kernel (each linked send runs as task work).
const ORDERED_TWIN = 'C io_uring SEND_ZC fixed buffer, linked in order'
/**
 * The many-connection server: SOCKETS UDP sockets, each with WINDOW single send()s in
 * flight. On io_uring the sends of every socket made in one tick share one
 * io_uring_enter; the C twin sends round-robin over as many sockets, one sendmsg each.
 */
const SOCKETS = 8

interface Path {
  name: string
  proto: 'tcp' | 'udp'
  address: string
  port: number
  /** Prefix that runs a command inside the path's network namespace. */
  wrap: string[]
}

function runSender(wrap: string[], file: string, args: string[], env: NodeJS.ProcessEnv = process.env): Measured {
  const [cmd, ...rest] = [...wrap, file, ...args]
  return parseResult(execFileSync(cmd!, rest, { timeout: 120000, env }).toString())
}

function measurePath(p: Path, size: number, ctx: BenchContext): Row[] {
  const bench = `send ${p.name}`
  const group = `${formatBytes(size)} sends`
  const args = [p.proto, p.address, String(p.port), String(size), String(ctx.seconds)]
  // Node senders on one engine (ZEROCOPY_ENGINE), or on the default one here.
  const node = (mode: string, engine?: 'epoll' | 'io_uring', window = WINDOW) =>
    runSender(p.wrap, process.execPath, [path.join(__dirname, 'send-loop.js'), ...args, mode, String(window)], {
      ...process.env,
      ZEROCOPY_ENGINE: engine ?? '',
    })
  const c = (mode: string) => runSender(p.wrap, cBinary('zc_sender'), [...args, mode])
  const cUring = (mode: string) => runSender(p.wrap, cBinary('uring_sender'), [...args, mode])
  const row = (variant: string, role: Row['role'], m: Measured, cTwin?: string | string[]): Row =>
    toRow(bench, group, variant, role, m, cTwin)
  const wide: Array<() => Row> =
    p.proto !== 'udp'
      ? []
      : [
          () => row(`ZeroCopySocket.send, ${UDP_WIDE_WINDOW} in flight (epoll engine, kept)`, 'zerocopy', node('zerocopy-forced', 'epoll', UDP_WIDE_WINDOW), 'C send MSG_ZEROCOPY'),
          () => row(`ZeroCopySocket.send, ${UDP_WIDE_WINDOW} in flight (io_uring engine, kept)`, 'zerocopy', node('zerocopy-forced', 'io_uring', UDP_WIDE_WINDOW), 'C send MSG_ZEROCOPY'),
          () => row(`dgram send, ${UDP_WIDE_WINDOW} in flight`, 'stock-node-variant', node('write', undefined, UDP_WIDE_WINDOW), 'C send'),
        ]
  return inRotation(ctx.round, [
    ...wide,
    () => row('ZeroCopySocket.send (epoll engine, MSG_ZEROCOPY kept)', 'zerocopy', node('zerocopy-forced', 'epoll'), 'C send MSG_ZEROCOPY'),
    () => row(`ZeroCopySocket.sendEach (${BATCH} per call, epoll engine, kept)`, 'zerocopy', node('zerocopy-batch', 'epoll'), 'C send MSG_ZEROCOPY'),
    () => row('ZeroCopySocket.send (io_uring engine, kept)', 'zerocopy', node('zerocopy-forced', 'io_uring'), ['C send MSG_ZEROCOPY', 'C io_uring SEND_ZC']),
    () => row(`ZeroCopySocket.sendEach (${BATCH} per call, io_uring engine, kept)`, 'zerocopy', node('zerocopy-batch', 'io_uring'), ['C send MSG_ZEROCOPY', 'C io_uring SEND_ZC']),
    () =>
      row(
        `ZeroCopySocket.sendEach (${BATCH} per call, io_uring, registered buffers)`,
        'zerocopy',
        node('zerocopy-batch-registered', 'io_uring'),
        ['C io_uring SEND_ZC fixed buffer', ...(p.proto === 'udp' ? [ORDERED_TWIN] : []), 'C send MSG_ZEROCOPY'],
      ),
    () => row('ZeroCopySocket.send (default engine and policy)', 'zerocopy', node('zerocopy'), 'C send'),
    () => row(p.proto === 'tcp' ? 'socket.write' : 'dgram send', 'stock-node', node('write'), 'C send'),
    () => row('C send MSG_ZEROCOPY', 'c', c('zerocopy')),
    () => row('C io_uring SEND_ZC', 'c', cUring('send_zc')),
    () => row('C io_uring SEND_ZC fixed buffer', 'c', cUring('send_zc_fixed')),
    ...(p.proto === 'udp' ? [() => row(ORDERED_TWIN, 'c', cUring('send_zc_fixed_ordered'))] : []),
    () => row('C send', 'c', c('copy')),
  ])
}

function measureManySockets(p: Path, size: number, ctx: BenchContext): Row[] {
  const bench = `send ${p.name}`
  const group = `${formatBytes(size)} sends, ${SOCKETS} sockets`
  const args = [p.proto, p.address, String(p.port), String(size), String(ctx.seconds)]
  const node = (mode: string, engine?: 'epoll' | 'io_uring') =>
    runSender(p.wrap, process.execPath, [path.join(__dirname, 'send-loop.js'), ...args, mode, String(SOCKETS * WINDOW), String(SOCKETS)], {
      ...process.env,
      ZEROCOPY_ENGINE: engine ?? '',
    })
  const c = (mode: string) => runSender(p.wrap, cBinary('zc_sender'), [...args, mode, String(SOCKETS)])
  const row = (variant: string, role: Row['role'], m: Measured, cTwin?: string | string[]): Row => toRow(bench, group, variant, role, m, cTwin)
  const each = `${SOCKETS} sockets x ${WINDOW} in flight`
  return inRotation(ctx.round, [
    () => row(`ZeroCopySocket.send, ${each} (io_uring engine, kept)`, 'zerocopy', node('zerocopy-forced', 'io_uring'), `C send MSG_ZEROCOPY, ${SOCKETS} sockets`),
    () => row(`ZeroCopySocket.send, ${each} (epoll engine, kept)`, 'zerocopy', node('zerocopy-forced', 'epoll'), `C send MSG_ZEROCOPY, ${SOCKETS} sockets`),
    () => row(`dgram send, ${each}`, 'stock-node', node('write'), `C send, ${SOCKETS} sockets`),
    () => row(`C send MSG_ZEROCOPY, ${SOCKETS} sockets`, 'c', c('zerocopy')),
    () => row(`C send, ${SOCKETS} sockets`, 'c', c('copy')),
  ])
}

export async function run(ctx: BenchContext): Promise<Row[]> {
  const rows: Row[] = []
  const [pin, ...pinArgs] = [...onCpu(1), cBinary('tcp_sink')]
  const sink = start(pin!, [...pinArgs, '0'], ['ignore', 'pipe', 'inherit'])
  try {
    const port = await new Promise<number>((resolve) => sink.child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))))
    const loopback: Path = { name: 'TCP loopback', proto: 'tcp', address: '127.0.0.1', port, wrap: onCpu(0) }
    for (const size of SIZES) rows.push(...measurePath(loopback, size, ctx))
  } finally {
    sink.done.catch(() => {}) // killed on purpose
    sink.child.kill()
  }
  const why = netnsUnavailable()
  if (why !== undefined) {
    process.stderr.write(`zerocopy-send: skipping the namespace sink (${why})\n`)
    return rows
  }
  const topology = createSink()
  try {
    const udp: Path = { name: 'UDP netns sink', proto: 'udp', address: SINK_ADDRESS, port: 9, wrap: ['ip', 'netns', 'exec', topology.sender, ...onCpu(0)] }
    rows.push(...measurePath(udp, UDP_SIZE, ctx))
    rows.push(...measureManySockets(udp, UDP_SIZE, ctx))
  } finally {
    topology.remove()
  }
  return rows
}
