// A sender and receiver in the style of the kernel's msg_zerocopy selftest, written on
// this package's public API, so either side can run against the selftest's.
//
//   receiver: node dist/examples/msg_zerocopy.js -4 -r -p 8000 -t 4 tcp
//   sender:   node dist/examples/msg_zerocopy.js -4 -D 127.0.0.1 -p 8000 -t 4 -z tcp
//
// Output on stderr, in the selftest's shapes:
//   sender    tx=<sends> (<MB> MB) txc=<completions> zc=y|n
//   receiver  rx=<reads or datagrams> (<MB> MB)
// zc=y only if the kernel reported true zero-copy on every completion. With -Z 0|1 a
// completion that disagrees prints "serr: ee_code: <got> != expected <want>" once and
// makes the exit code 1; missing completions at the end are an error too.
import * as dgram from 'node:dgram'
import * as fs from 'node:fs'
import * as net from 'node:net'
import { allocPageAligned, receiveDatagrams, sendFileZeroCopy, setReceiveBuffer, ZeroCopySocket, type SendResult } from '../lib'

interface Config {
  family: 4 | 6
  dst: string | undefined
  src: string | undefined
  port: number
  receiver: boolean
  payload: number
  seconds: number
  zerocopy: boolean
  verbose: number
  /** Sends per batch (-l): one sendEach call, one wait for its completions. 0: the default for the mode. */
  batch: number
  expectZc: 0 | 1 | undefined
  file: string | undefined
  test: 'tcp' | 'udp'
}

const USAGE = `usage: msg_zerocopy [-4|-6] [-D dst] [-S src] [-p port] [-r] [-s payload] [-t seconds]
                    [-z] [-v] [-l n] [-C cpu] [-Z 0|1] [-f file] tcp|udp`

function fail(message: string): never {
  console.error(`msg_zerocopy: ${message}`)
  process.exit(2)
}

export function parseArgs(argv: string[]): Config {
  const cfg: Config = {
    family: 4,
    dst: undefined,
    src: undefined,
    port: 8000,
    receiver: false,
    payload: 0,
    seconds: 4,
    zerocopy: false,
    verbose: 0,
    batch: 0,
    expectZc: undefined,
    file: undefined,
    test: 'tcp',
  }
  const value = (i: number): string => argv[i + 1] ?? fail(`${argv[i]} needs a value\n${USAGE}`)
  const int = (i: number, min: number): number => {
    const n = Number(value(i))
    if (!Number.isInteger(n) || n < min) fail(`${argv[i]} needs an integer >= ${min}`)
    return n
  }
  let i = 0
  for (; i < argv.length - 1; i++) {
    switch (argv[i]) {
      case '-4': cfg.family = 4; break
      case '-6': cfg.family = 6; break
      case '-D': cfg.dst = value(i++); break
      case '-S': cfg.src = value(i++); break
      case '-p': cfg.port = int(i++, 1); break
      case '-r': cfg.receiver = true; break
      case '-s': cfg.payload = int(i++, 1); break
      case '-t': cfg.seconds = int(i++, 1); break
      case '-z': cfg.zerocopy = true; break
      case '-v': cfg.verbose++; break
      case '-l': cfg.batch = int(i++, 1); break
      case '-C': int(i++, 0); console.error('msg_zerocopy: -C (cpu affinity) is not supported from Node; ignored'); break
      case '-Z': {
        const z = value(i++)
        if (z !== '0' && z !== '1') fail('-Z takes 0 or 1')
        cfg.expectZc = Number(z) as 0 | 1
        break
      }
      case '-f': cfg.file = value(i++); break
      default: fail(`unknown option ${argv[i]}\n${USAGE}`)
    }
  }
  const test = argv[i]
  if (test !== 'tcp' && test !== 'udp') fail(`the test name (tcp or udp) comes last\n${USAGE}`)
  cfg.test = test
  if (cfg.file !== undefined && test !== 'tcp') fail('-f sends a file over tcp only')
  if (!cfg.receiver && cfg.dst === undefined) fail('a sender needs -D <destination>')
  // The selftest's default payload: as much as one datagram or segment carries.
  if (cfg.payload === 0) cfg.payload = test === 'udp' ? (cfg.family === 4 ? 65507 : 65487) : 1 << 16
  if (cfg.batch === 0) cfg.batch = test === 'tcp' && !cfg.zerocopy ? 1 : 32
  return cfg
}

const mb = (bytes: number) => Math.floor(bytes / (1 << 20))

// Batches and how many are in flight, each from its own buffer, measured here against
// the C sender (bench/zerocopy-send.bench.ts):
// - With -z, a batch waits for the kernel's completions; four in flight keep the
//   socket busy meanwhile. Datagrams go 32 per sendmmsg: one send() Promise each
//   costs about 3 us of CPU more per datagram than C, a batch of 32 about 0.6.
// - Without -z, a send settles as soon as the kernel has the copy, so one batch in
//   flight is enough. For TCP, one 64 KiB send at a time ran at C's speed, batches of
//   32 back to back at 0.65-0.8x (why is not pinned down; the kernel does the work).
const batchesInFlight = (cfg: Config) => (cfg.zerocopy ? 4 : 1)
// What the UDP receiver asks for as its receive buffer: room for the moments it loses
// its CPU, since UDP drops what does not fit. Root gets it all; others get
// net.core.rmem_max.
const UDP_RECEIVE_BUFFER = 64 << 20

async function receive(cfg: Config): Promise<number> {
  const host = cfg.src ?? (cfg.family === 4 ? '0.0.0.0' : '::')
  let reads = 0
  let bytes = 0
  const report = () => {
    console.error(`rx=${reads} (${mb(bytes)} MB)`)
    return 0
  }
  if (cfg.test === 'udp') {
    const socket = dgram.createSocket(cfg.family === 4 ? 'udp4' : 'udp6')
    // Node hands over one datagram per 'message'; behind it, read and discard the rest
    // of the queue in batches (recvmmsg into empty buffers: counted, not copied), so
    // that the receiver keeps up with a batched sender.
    const none = Array.from({ length: 256 }, () => Buffer.alloc(0))
    const lengths = new Uint32Array(none.length)
    socket.on('message', (m) => {
      reads++
      bytes += m.length
      for (let round = 0; round < 64; round++) {
        const n = receiveDatagrams(socket, none, lengths)
        for (let i = 0; i < n; i++) bytes += lengths[i]!
        reads += n
        if (n < none.length) break
      }
    })
    await new Promise<void>((resolve) => socket.bind(cfg.port, host, resolve))
    const room = setReceiveBuffer(socket, UDP_RECEIVE_BUFFER)
    if (cfg.verbose > 0) console.error(`receive buffer: ${room} bytes`)
    // Like the selftest: run for the set time (plus a grace second), then report.
    await new Promise((resolve) => setTimeout(resolve, (cfg.seconds + 1) * 1000))
    socket.close()
    return report()
  }
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(cfg.port, host, resolve))
  const conn = await new Promise<net.Socket>((resolve) => server.once('connection', resolve))
  server.close()
  await new Promise<void>((resolve, reject) => {
    conn.on('data', (chunk: Buffer) => {
      reads++
      bytes += chunk.length
    })
    conn.once('end', resolve)
    conn.once('error', reject)
  })
  conn.destroy()
  return report()
}

async function connect(cfg: Config): Promise<net.Socket | dgram.Socket> {
  if (cfg.test === 'tcp') {
    const socket = net.connect({ host: cfg.dst!, port: cfg.port, family: cfg.family, ...(cfg.src ? { localAddress: cfg.src } : {}) })
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    return socket
  }
  const socket = dgram.createSocket(cfg.family === 4 ? 'udp4' : 'udp6')
  if (cfg.src) await new Promise<void>((resolve) => socket.bind(0, cfg.src, resolve))
  await new Promise<void>((resolve) => socket.connect(cfg.port, cfg.dst!, resolve))
  return socket
}

async function send(cfg: Config): Promise<number> {
  const socket = await connect(cfg)
  // -z keeps MSG_ZEROCOPY even where the kernel copies, so zc=n tells the truth.
  const zc = ZeroCopySocket.from(socket, { copiedThreshold: Infinity })
  // Like the selftest, every send of a batch sends the same buffer; a buffer is reused
  // only once the kernel has released all of its batch.
  const batches = Array.from({ length: batchesInFlight(cfg) }, () => {
    const buf = allocPageAligned(cfg.payload).fill(0x7a)
    return Array.from({ length: cfg.batch }, () => buf)
  })
  let sends = 0
  let bytes = 0
  let allZeroCopy = true
  let mismatch = false
  const check = (r: SendResult) => {
    if (!r.zeroCopy) allZeroCopy = false
    if (cfg.zerocopy && cfg.expectZc !== undefined && !mismatch) {
      const got = r.copied ? 1 : 0 // ee_code: SO_EE_CODE_ZEROCOPY_COPIED or 0
      const want = cfg.expectZc === 1 ? 0 : 1
      if (got !== want) {
        console.error(`serr: ee_code: ${got} != expected ${want}`)
        mismatch = true
      }
    }
  }
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const end = Date.now() + cfg.seconds * 1000
  let error: unknown
  try {
    if (cfg.file !== undefined) {
      while (Date.now() < end) {
        const r = await sendFileZeroCopy(socket, cfg.file, { socketOptions: { copiedThreshold: Infinity } })
        sends += r.calls
        bytes += r.bytes
        check({ bytes: r.bytes, zeroCopy: r.zeroCopy, copied: r.copied, mechanism: 'msg_zerocopy', calls: r.calls })
      }
    } else {
      await Promise.all(
        batches.map(async (batch) => {
          while (Date.now() < end) {
            const r = await zc.sendEach(batch, { copy: !cfg.zerocopy })
            sends += r.calls // a short TCP send leaves the rest to one more call (and id)
            bytes += r.bytes
            check(r)
          }
        }),
      )
    }
  } catch (err) {
    error = err
  }
  const stats = zc.stats
  if (cfg.verbose > 0) {
    // For scripts (bench/zerocopy-send.bench.ts): exact counters, wall and CPU time of the sending.
    const cpu = process.cpuUsage(cpu0)
    console.error(`stats: ${JSON.stringify(stats)}`)
    console.error(`time: ${JSON.stringify({ seconds: (performance.now() - t0) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 })}`)
  }
  await zc.close()
  if (socket instanceof net.Socket) {
    await new Promise<void>((resolve) => socket.end(resolve))
    socket.destroy()
  } else {
    socket.close()
  }
  const zcFlag = cfg.zerocopy && allZeroCopy && stats.zeroCopyCalls > 0 ? 'y' : 'n'
  console.error(`tx=${sends} (${mb(bytes)} MB) txc=${stats.completedIds} zc=${zcFlag}`)
  if (error !== undefined) {
    console.error(`msg_zerocopy: ${(error as Error).message}`)
    return 1
  }
  if (stats.outstandingIds !== 0) {
    console.error(`msg_zerocopy: ${stats.outstandingIds} completions missing`)
    return 1
  }
  if (cfg.zerocopy && stats.mode === 'copy' && cfg.verbose > 0) console.error(`note: ${stats.fallbackReason}`)
  return mismatch ? 1 : 0
}

if (require.main === module) {
  const cfg = parseArgs(process.argv.slice(2))
  if (cfg.file !== undefined && !fs.existsSync(cfg.file)) fail(`no such file: ${cfg.file}`)
  ;(cfg.receiver ? receive(cfg) : send(cfg)).then(
    (code) => process.exit(code),
    (err: Error) => {
      console.error(`msg_zerocopy: ${err.message}`)
      process.exit(1)
    },
  )
}
