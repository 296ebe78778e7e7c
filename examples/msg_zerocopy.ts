// The kernel's msg_zerocopy selftest (tools/testing/selftests/net/msg_zerocopy.c) on
// this package: the same command line (examples/msg_zerocopy-config.ts), payload,
// receiver checks, output and exit codes, so that either side runs against the
// selftest's and its own msg_zerocopy.sh can drive it (examples/msg_zerocopy-sh.ts).
//
//   receiver: node dist/examples/msg_zerocopy.js -4 -r -D 127.0.0.1 -t 4 tcp
//   sender:   node dist/examples/msg_zerocopy.js -4 -D 127.0.0.1 -t 4 -z tcp
//
// On stderr, as the selftest prints them:
//   sender    tx=<send calls> (<MB> MB) txc=<completions> zc=y|n
//   receiver  rx=<reads> (<MB> MB)
//   serr: ee_code: <zerocopy> != expected <-Z>    a completion that -Z did not expect (exit 1)
//   missing notifications: <got> < <expected>     completions still missing 500 ms after the end
//   gap: / completed:                             -v / -v -v, per notification (msg_zerocopy-completions.ts)
// zc=y only when -z and -Z 1 were given and no completion said otherwise (the
// selftest's rule). Fatal errors print "msg_zerocopy: <what>[: <strerror>]" and exit 1.
// -c (UDP_CORK) sends the selftest's way on the raw layer (msg_zerocopy-cork.ts).
// Beyond the selftest: -f file (tcp) sends that file, with sendFileZeroCopy under -z
// and as plain copies without; -v also prints the counters and the sender's CPU time.
import { spawnSync } from 'node:child_process'
import * as dgram from 'node:dgram'
import * as fs from 'node:fs'
import * as net from 'node:net'
import { allocPageAligned, constants, dup, receiveDatagrams, recv, sendFileZeroCopy, ZeroCopySocket } from '../lib'
import { dgramSocketFd, netSocketFd } from '../lib/node-internals'
import { CompletionCheck, txLine } from './msg_zerocopy-completions'
import { sendCorked } from './msg_zerocopy-cork'
import { type Config, Fatal, parseArgs, PROG, setOption, strerror } from './msg_zerocopy-config'

const { SOL_SOCKET, SO_RCVBUF, SO_RCVLOWAT, SO_SNDBUF } = constants

/** The selftest's poll timeout: how long the sender waits for the last completions. */
const WAIT_MS = 500
/** The selftest's receiver runs this much longer than its -t. */
const RECEIVER_EXTRA_MS = 400
/** The selftest's SO_SNDBUF / SO_RCVBUF request (the kernel caps it at net.core.wmem_max / rmem_max). */
const SOCKET_BUFFER = 1 << 21
/** The selftest receiver's SO_RCVLOWAT: a TCP read wakes once 64 KiB are queued (or the stream ends). */
const RECEIVE_LOW_WATER = 1 << 16
/** What the TCP receiver discards per recv (the selftest's flush size). */
const FLUSH_BYTES = 1 << 21
/** Datagrams the UDP receiver reads per recvmmsg. */
const BATCH = 256
/** How many payload bytes the UDP receiver compares (the selftest's recv buffer). */
const CHECKED_BYTES = 64

/** The selftest's payload: 'a' + i % 26, for every test and both sides. */
export function payloadPattern(length: number): Buffer {
  const buf = allocPageAligned(length)
  for (let i = 0; i < length; i++) buf[i] = 0x61 + (i % 26)
  return buf
}

const mb = (bytes: number) => Math.floor(bytes / (1 << 20))
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, ms)))

/** Fails with glibc error()'s words: "<what>: <strerror>". */
function fatal(what: string, err: unknown): Fatal {
  return new Fatal(`${what}: ${strerror(err)}`)
}

/**
 * The selftest pins itself to -C's cpu (default -1: nowhere) and says when it cannot.
 * Node cannot set its own affinity, so taskset pins the main thread (where the sends
 * and receives run), which is what the selftest's sched_setaffinity(0) pins.
 */
function pinCpu(cfg: Config): void {
  const pinned = cfg.cpu >= 0 && spawnSync('taskset', ['-p', '-c', String(cfg.cpu), String(process.pid)], { stdio: 'ignore' }).status === 0
  if (!pinned) console.error('cpu: unable to pin, may increase variance.')
  else if (cfg.verbose > 0) console.error(`cpu: ${cfg.cpu}`)
}

// ---- receiver ----------------------------------------------------------------------

/**
 * SO_REUSEPORT on receivers, as the selftest sets it: Node's `reusePort` (22.12 and
 * later; older Node ignores the option, and a second receiver on the port then fails
 * to bind where two selftest receivers would share it).
 */
const REUSE_PORT = { reusePort: true } as Record<string, unknown>

async function listen(bind: (done: (err?: Error) => void) => void): Promise<void> {
  await new Promise<void>((resolve, reject) => bind((err) => (err ? reject(fatal('bind', err)) : resolve())))
}

/**
 * The selftest receiver's socket options: SO_RCVBUF 2 MiB (plain SO_RCVBUF, so the
 * kernel caps it at net.core.rmem_max, as it caps the selftest's; for TCP it also
 * stops the window's autotuning) and SO_RCVLOWAT 64 KiB. The selftest sets them before
 * its bind; Node binds as it makes the socket, so here they follow the bind: for TCP on
 * the listening socket, whose connections inherit them. (SO_REUSEPORT is REUSE_PORT's.)
 */
function receiveOptions(fd: number): void {
  setOption(fd, SOL_SOCKET, SO_RCVBUF, SOCKET_BUFFER)
  setOption(fd, SOL_SOCKET, SO_RCVLOWAT, RECEIVE_LOW_WATER)
}

/**
 * TCP: accept one connection on -D, then for -t + 0.6 s discard whatever arrives
 * without copying it (recv(NULL, 2 MiB, MSG_TRUNC)); the end of the stream does not
 * end the run, as in the selftest. Node only tells when bytes came: the connection is
 * read through a socket of our own on a duplicate of its fd whose reads take one byte
 * (net.Socket's `onread` with a 1-byte buffer); behind each, the queue is dropped in
 * the kernel, so Node's next read finds it empty.
 */
async function receiveTcp(cfg: Config): Promise<{ reads: number; bytes: number }> {
  const server = net.createServer({ pauseOnConnect: true })
  await listen((done) => {
    server.once('error', done)
    server.listen({ port: cfg.port, host: cfg.dst, backlog: 1, ipv6Only: false, ...REUSE_PORT }, () => done())
  })
  receiveOptions(netSocketFd(server as unknown as net.Socket)!) // (a Server's handle has its fd where a Socket's has)
  const accepted = await new Promise<net.Socket>((resolve) => server.once('connection', resolve))
  server.close() // the selftest closes its listening socket once it has a connection
  const tstop = Date.now() + cfg.runtimeMs + RECEIVER_EXTRA_MS
  const fd = dup(netSocketFd(accepted)!)
  accepted.destroy() // closes Node's fd only: the connection lives on in ours
  let reads = 0
  let bytes = 0
  let failure: Fatal | undefined
  // One wake-up, one read in rx= (the selftest's one recv per poll): Node's byte and
  // what is dropped behind it.
  const flush = (): number => {
    try {
      return recv(fd, null, constants.MSG_TRUNC | constants.MSG_DONTWAIT, FLUSH_BYTES)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') failure ??= fatal('flush', err)
      return 0
    }
  }
  // (`onread` is Node's since v12 for sockets it makes, fds included; @types/node lacks it here.)
  const conn = new net.Socket({
    fd,
    readable: true,
    writable: false,
    onread: {
      buffer: Buffer.alloc(1),
      callback: (n: number) => {
        reads++
        bytes += n + flush()
        return true
      },
    },
  } as net.SocketConstructorOpts)
  conn.on('error', (err) => (failure ??= fatal('flush', err)))
  await sleep(tstop - Date.now())
  conn.destroy()
  if (failure) throw failure
  return { reads, bytes }
}

/**
 * UDP: bind -D, then for -t + 0.6 s take every datagram, failing unless it has the
 * payload's size and its first 64 bytes are the payload's (the selftest's checks).
 * Node reads one datagram per 'message'; the rest of the queue is read behind it,
 * up to 256 per recvmmsg, 64 bytes each, with each datagram's full length.
 */
async function receiveUdp(cfg: Config): Promise<{ reads: number; bytes: number }> {
  const socket = dgram.createSocket({ type: cfg.family === 4 ? 'udp4' : 'udp6', reuseAddr: false, ...REUSE_PORT })
  await listen((done) => {
    socket.once('error', done)
    socket.bind({ port: cfg.port, address: cfg.dst, exclusive: true }, () => done())
  })
  receiveOptions(dgramSocketFd(socket)!)
  const tstop = Date.now() + cfg.runtimeMs + RECEIVER_EXTRA_MS
  const expected = payloadPattern(Math.max(0, Math.min(cfg.payload, CHECKED_BYTES)))
  const heads = Buffer.alloc(BATCH * CHECKED_BYTES)
  const views = Array.from({ length: BATCH }, (_, i) => heads.subarray(i * CHECKED_BYTES, (i + 1) * CHECKED_BYTES))
  const lengths = new Uint32Array(BATCH)
  let reads = 0
  let bytes = 0
  let failure: Fatal | undefined
  const check = (length: number, data: Buffer): boolean => {
    if (length !== cfg.payload) failure ??= new Fatal(`recv: ret=${length} != ${cfg.payload >>> 0}`) // (%u, as printed there)
    else if (!data.subarray(0, Math.min(length, CHECKED_BYTES)).equals(expected)) failure ??= new Fatal('recv: data mismatch')
    else {
      reads++
      bytes += length
      return true
    }
    socket.close()
    return false
  }
  socket.on('message', (m: Buffer) => {
    if (failure || !check(m.length, m)) return
    try {
      for (let n = BATCH; n === BATCH; ) {
        n = receiveDatagrams(socket, views, lengths)
        for (let i = 0; i < n; i++) if (!check(lengths[i]!, views[i]!)) return
      }
    } catch (err) {
      failure ??= fatal('recv', err)
    }
  })
  socket.on('error', (err) => (failure ??= fatal('recv', err)))
  while (Date.now() < tstop && !failure) await sleep(Math.min(50, tstop - Date.now()))
  if (failure) throw failure
  socket.close()
  return { reads, bytes }
}

async function receive(cfg: Config): Promise<number> {
  const { reads, bytes } = cfg.test === 'tcp' ? await receiveTcp(cfg) : await receiveUdp(cfg)
  console.error(`rx=${reads} (${mb(bytes)} MB)`)
  return 0
}

// ---- sender ------------------------------------------------------------------------

/**
 * The sender's socket: a connected net.Socket for tcp; for udp, an fd of a connected
 * UDP socket that libuv does not watch. From Node 24 (libuv 1.52) libuv reads the
 * error queue of every UDP socket it watches and would take the completions (a
 * ZeroCopySocket on a dgram.Socket then sends copies, and says so); on a duplicate of
 * the fd, with Node's own socket closed, the completions are ours on every Node.
 */
async function connect(cfg: Config): Promise<net.Socket | number> {
  if (cfg.test === 'tcp') {
    const socket = net.connect({ host: cfg.dst, port: cfg.port, family: cfg.family })
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', (err) => reject(fatal('connect', err)))
    })
    // The selftest's SO_SNDBUF 2 MiB (capped at net.core.wmem_max; no more autotuning).
    setOption(netSocketFd(socket)!, SOL_SOCKET, SO_SNDBUF, SOCKET_BUFFER)
    return socket
  }
  const socket = dgram.createSocket(cfg.family === 4 ? 'udp4' : 'udp6')
  await new Promise<void>((resolve, reject) => {
    const failed = (err: Error) => reject(fatal('connect', err))
    socket.once('error', failed)
    socket.connect(cfg.port, cfg.dst, (err?: Error) => (err ? failed(err) : resolve()))
  })
  const fd = dup(dgramSocketFd(socket)!)
  await new Promise<void>((resolve) => socket.close(resolve))
  setOption(fd, SOL_SOCKET, SO_SNDBUF, SOCKET_BUFFER)
  return fd
}

/** What the sender counts, as the selftest names it. */
interface TxCounters {
  packets: number
  bytes: number
}

function account(tx: TxCounters, r: { calls: number; bytes: number }): void {
  tx.packets += r.calls
  tx.bytes += r.bytes
}

/**
 * Sends the payload until -t runs out. Copies go 32 sends per sendEach (one crossing
 * into native code; for udp one sendmmsg), which measured faster than one send per
 * Promise against the selftest's receiver (bench/msg-zerocopy.bench.ts). Under -z a
 * batch of -l sends goes in one sendEach and waits for its completions, four batches
 * in flight. Every send, as in the selftest, sends the same buffer.
 */
async function sendPayload(cfg: Config, zc: ZeroCopySocket, tx: TxCounters, tstop: number): Promise<void> {
  const payload = payloadPattern(cfg.payload)
  const batch = cfg.zerocopy ? Math.max(1, cfg.notificationLimit) : 32
  const views = Array.from({ length: batch }, () => payload)
  // (The selftest counts only sends of a non-empty payload: -s 0 sends, and counts none.)
  const lanes = Array.from({ length: cfg.zerocopy ? 4 : 1 }, async () => {
    do {
      const r = await zc.sendEach(views, { copy: !cfg.zerocopy })
      if (cfg.payload > 0) account(tx, r)
    } while (Date.now() < tstop)
  })
  await Promise.all(lanes)
}

/** -f: the file, again and again until -t runs out; -z picks sendFileZeroCopy, else copies. */
async function sendFile(cfg: Config, socket: net.Socket, zc: ZeroCopySocket, tx: TxCounters, tstop: number): Promise<void> {
  const file = cfg.file!
  if (cfg.zerocopy) {
    do account(tx, await sendFileZeroCopy(socket, file, { socketOptions: { copiedThreshold: Infinity } }))
    while (Date.now() < tstop)
    return
  }
  const handle = await fs.promises.open(file, 'r')
  try {
    const chunk = Buffer.allocUnsafe(1 << 20)
    do {
      for (let offset = 0; ; ) {
        const { bytesRead } = await handle.read(chunk, 0, chunk.length, offset)
        if (bytesRead === 0) break
        offset += bytesRead
        account(tx, await zc.send(chunk.subarray(0, bytesRead), { copy: true }))
      }
    } while (Date.now() < tstop)
  } finally {
    await handle.close()
  }
}

async function send(cfg: Config): Promise<number> {
  const socket = await connect(cfg)
  if (cfg.cork !== 0) return sendCorked(cfg, socket as number, payloadPattern(Math.max(0, cfg.payload)), Date.now() + cfg.runtimeMs)
  // The selftest's iov_len is a size_t: the kernel refuses a negative -s.
  if (cfg.payload < 0 && cfg.file === undefined) throw new Fatal('send: Invalid argument')
  // Each notification is looked at as the selftest does (-Z, -v lines).
  const check = new CompletionCheck(cfg.expectZerocopy, cfg.verbose)
  // -z keeps MSG_ZEROCOPY even where the kernel copies (as the selftest does), so that
  // every completion says what the kernel did.
  const zc = ZeroCopySocket.from(socket, { copiedThreshold: Infinity, onNotification: check.notification })
  check.gapsMeanDrops = zc.stats.engine === 'epoll'
  const tx: TxCounters = { packets: 0, bytes: 0 }
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const tstop = Date.now() + cfg.runtimeMs
  const sending = cfg.file !== undefined && socket instanceof net.Socket ? sendFile(cfg, socket, zc, tx, tstop) : sendPayload(cfg, zc, tx, tstop)
  let error: unknown
  const settled = sending.catch((err: unknown) => {
    error = err
  })
  // The last completions get the selftest's grace time; what is still missing then is
  // reported, not waited for.
  await Promise.race([settled, sleep(tstop - Date.now() + WAIT_MS)])
  if (error !== undefined) throw fatal('send', error)
  const stats = zc.stats
  if (cfg.zerocopy && stats.completedIds < stats.zeroCopyCalls) {
    console.error(`missing notifications: ${stats.completedIds} < ${stats.zeroCopyCalls}`)
  }
  if (cfg.verbose > 0) {
    // For scripts (bench/): exact counters, wall and CPU time of the sending.
    const cpu = process.cpuUsage(cpu0)
    console.error(`stats: ${JSON.stringify(stats)}`)
    console.error(`time: ${JSON.stringify({ seconds: (performance.now() - t0) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 })}`)
    if (cfg.zerocopy && stats.mode === 'copy') console.error(`note: ${stats.fallbackReason}`)
  }
  if (socket instanceof net.Socket) {
    if (stats.outstandingIds === 0 && stats.unsent === 0) await new Promise<void>((resolve) => socket.end(resolve))
    socket.destroy()
  } else {
    // An fd's ZeroCopySocket is closed before the fd (it settles once its sends have).
    await Promise.race([zc.close(), sleep(WAIT_MS)])
    fs.closeSync(socket)
  }
  // The selftest's zc=y: -z and -Z 1, and no notification said otherwise. (Where this
  // package could not send zero-copy at all, where the selftest would have failed on
  // SO_ZEROCOPY, it says n.)
  const sentZeroCopy = stats.zeroCopyCalls > 0 || stats.copyCalls === 0
  console.error(txLine(tx.packets, tx.bytes, stats.completedIds, cfg.zerocopy && check.expectZerocopy === 1 && sentZeroCopy))
  return check.exitcode
}

async function main(argv: string[]): Promise<number> {
  const cfg = parseArgs(argv)
  pinCpu(cfg)
  // What the selftest refuses itself after pinning (its do_setup_rx), then what Node cannot do.
  if (cfg.receiver && (cfg.test === 'packet' || cfg.test === 'packet_dgram')) throw new Fatal('Use PF_INET/SOCK_RAW to read')
  if (cfg.receiver && cfg.test === 'raw_hdrincl') throw new Fatal('IPPROTO_RAW: not supported on Rx')
  if (cfg.test !== 'tcp' && cfg.test !== 'udp') {
    throw new Fatal(`${cfg.test}: not supported by this example: Node.js has no raw, packet or RDS sockets (tcp and udp are)`)
  }
  return cfg.receiver ? receive(cfg) : send(cfg)
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: Error) => {
      console.error(err instanceof Fatal ? `${PROG}: ${err.message}` : `${PROG}: ${err.stack ?? err.message}`)
      process.exit(1)
    },
  )
}
