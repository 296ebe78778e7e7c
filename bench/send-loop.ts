// One sending process for bench/zerocopy-send.bench.ts, so Node senders are measured
// exactly like the C one (own process, own CPU time), also inside a namespace.
//   node dist/bench/send-loop.js tcp|udp <address> <port> <bytes per send> <seconds> <mode> <window> [sockets]
// mode: zerocopy (default copy policy) | zerocopy-forced (never switches to copies) |
//       zerocopy-batch (sendEach of BATCH sends of one buffer, MSG_ZEROCOPY kept) |
//       zerocopy-batch-registered (the same from allocRegistered buffers) |
//       write (stock Node: socket.write / dgram send). `window` sends (batches) are
// kept in flight, each from its own buffer, reused only when its send has settled;
// with `sockets` (default 1), over that many sockets to the same address, round-robin
// (the many-connection server: on io_uring their sends of one tick share one enter).
// The first WARMUP_SECONDS are not measured: V8 compiles the hot functions on a thread
// that shares the sender's pinned core, and a server runs long past that; the counters,
// the clock and the CPU time start after it (the C loops need no warm-up).
// Prints {"bytes","calls","seconds","cpuSeconds","zeroCopy","copied"} on stdout.
import * as dgram from 'node:dgram'
import * as net from 'node:net'
import { allocPageAligned, allocRegistered, ZeroCopySocket } from '../lib'

type Mode = 'zerocopy' | 'zerocopy-forced' | 'zerocopy-batch' | 'zerocopy-batch-registered' | 'write'
/** Sends per sendEach call in zerocopy-batch mode. */
export const BATCH = 32
/** Unmeasured time before the measured `seconds`. */
const WARMUP_SECONDS = Number(process.env.ZEROCOPY_BENCH_WARMUP ?? 0.4)

async function connect(proto: string, address: string, port: number): Promise<net.Socket | dgram.Socket> {
  if (proto === 'tcp') {
    const s = net.connect(port, address)
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve)
      s.once('error', reject)
    })
    return s
  }
  const s = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => s.connect(port, address, resolve))
  return s
}

function plainSend(socket: net.Socket | dgram.Socket, buf: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error | null) => (err ? reject(err) : resolve())
    if (socket instanceof net.Socket) socket.write(buf, done)
    else socket.send(buf, done)
  })
}

async function main(): Promise<void> {
  const [proto, address, port, size, seconds, mode, window, nsockets] = process.argv.slice(2)
  const sockets = await Promise.all(Array.from({ length: Number(nsockets ?? 1) }, () => connect(proto!, address!, Number(port))))
  const zcs = sockets.map((socket) =>
    mode === 'write' ? undefined : ZeroCopySocket.from(socket, mode === 'zerocopy' ? {} : { copiedThreshold: Infinity }),
  )
  const registered = mode === 'zerocopy-batch-registered'
  const buffers = Array.from({ length: Number(window) }, () => (registered ? allocRegistered : allocPageAligned)(Number(size)).fill(0x6e))
  let bytes = 0
  let calls = 0
  let zeroCopy = 0
  let copied = 0
  let cpu0 = process.cpuUsage()
  let t0 = performance.now()
  const warmEnd = t0 + WARMUP_SECONDS * 1000
  const end = warmEnd + Number(seconds) * 1000
  let warm = WARMUP_SECONDS <= 0
  const measureFromNow = (now: number): void => {
    warm = true
    bytes = calls = zeroCopy = copied = 0
    cpu0 = process.cpuUsage()
    t0 = now
  }
  await Promise.all(
    buffers.map(async (buf, j) => {
      const socket = sockets[j % sockets.length]!
      const zc = zcs[j % sockets.length]
      const batch = Array.from({ length: BATCH }, () => buf) // zerocopy-batch: BATCH sends of this buffer
      for (;;) {
        const now = performance.now()
        if (now >= end) break
        if (!warm && now >= warmEnd) measureFromNow(now)
        if (zc !== undefined && (mode === 'zerocopy-batch' || registered)) {
          const r = await zc.sendEach(batch)
          if (r.zeroCopy) zeroCopy += BATCH
          if (r.copied) copied += BATCH
          bytes += r.bytes
          calls += BATCH
          continue
        }
        if (zc !== undefined) {
          const r = await zc.send(buf)
          if (r.zeroCopy) zeroCopy++
          if (r.copied) copied++
        } else {
          await plainSend(socket, buf)
          copied++
        }
        bytes += buf.length
        calls++
      }
    }),
  )
  const elapsed = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  for (const [k, socket] of sockets.entries()) {
    await zcs[k]?.close()
    if (socket instanceof net.Socket) socket.destroy()
    else socket.close()
  }
  const m = { bytes, calls, seconds: elapsed, cpuSeconds: (cpu.user + cpu.system) / 1e6, zeroCopy, copied, mode: mode as Mode }
  console.log(JSON.stringify(m))
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err)
    process.exit(1)
  })
}
