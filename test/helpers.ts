// Real kernel objects for tests: temp files, pipes, loopback TCP pairs, and the
// assertions every test shares. Everything made here is cleaned up by the caller's
// `t.after` or by `using`-style try/finally.
import * as assert from 'node:assert/strict'
import * as crypto from 'node:crypto'
import * as dgram from 'node:dgram'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { libuvReadsUdpErrorQueue } from '../lib/socket-registry'
import { dup, pipe, type PipeEnds } from '../lib'
import { native } from '../lib/native'
import { dgramSocketFd } from '../lib/node-internals'
import { chooseEngine } from '../lib/engine'
import { ringFds } from '../lib/uring'

/** The engine sockets get in this run (ZEROCOPY_ENGINE), and its zero-copy mechanism names. */
export const engine = chooseEngine('auto').engine
export const zcMechanism = engine === 'io_uring' ? 'io_uring' : 'msg_zerocopy'
export const fileZcMechanism = engine === 'io_uring' ? 'mmap+io_uring' : 'mmap+msg_zerocopy'
/** Node 24+ dgram sockets copy on the epoll engine (libuv reads their error queue). */
export function dgramCopies(): boolean {
  return engine === 'epoll' && libuvReadsUdpErrorQueue()
}

export function sha256(data: Uint8Array): string {
  return crypto.createHash('sha256').update(data).digest('hex')
}

/** A temp directory removed when the test ends. */
export function tempDir(t: { after(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zerocopy-test-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Random bytes, reproducible per seed so failures can be replayed. */
export function randomBytes(size: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(size)
  let x = seed >>> 0 || 1
  for (let i = 0; i < size; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

/** A pipe whose ends are closed when the test ends (unless already closed). */
export function testPipe(t: { after(fn: () => void): void }, options?: Parameters<typeof pipe>[0]): PipeEnds {
  const p = pipe(options)
  t.after(() => {
    closeQuietly(p.readFd)
    closeQuietly(p.writeFd)
  })
  return p
}

export function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd)
  } catch {
    // already closed by the test
  }
}

/** Reads exactly `length` bytes from a blocking fd (a pipe end or file). */
export function readExactly(fd: number, length: number): Buffer {
  const out = Buffer.alloc(length)
  let got = 0
  while (got < length) {
    const n = fs.readSync(fd, out, got, length - got, null)
    if (n === 0) break
    got += n
  }
  return out.subarray(0, got)
}

/** A connected loopback TCP pair: `client` is ours to write to, `server` collects. */
export interface TcpPair {
  client: net.Socket
  server: net.Socket
  /** The client socket's fd (libuv's, non-blocking). */
  clientFd: number
  close(): Promise<void>
}

export async function tcpPair(): Promise<TcpPair> {
  const listener = net.createServer()
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
  const { port } = listener.address() as net.AddressInfo
  const accepted = new Promise<net.Socket>((resolve) => listener.once('connection', resolve))
  const client = net.connect(port, '127.0.0.1')
  await new Promise<void>((resolve, reject) => {
    client.once('connect', resolve)
    client.once('error', reject)
  })
  const server = await accepted
  listener.close()
  const clientFd = socketFd(client)
  return {
    client,
    server,
    clientFd,
    async close() {
      client.destroy()
      server.destroy()
    },
  }
}

/** A connected pair over a Unix-domain socket (no SO_ZEROCOPY there), closed after the test. */
export async function unixPair(t: { after(fn: () => void): void }): Promise<{ client: net.Socket; peer: net.Socket }> {
  const sockPath = path.join(tempDir(t), 's')
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(sockPath, resolve))
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve))
  const client = net.connect(sockPath)
  await new Promise<void>((resolve) => client.once('connect', resolve))
  const peer = await accepted
  server.close()
  t.after(() => {
    client.destroy()
    peer.destroy()
  })
  return { client, peer }
}

/** What a promise settled to, without throwing. */
export function outcome<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: NodeJS.ErrnoException }> {
  return p.then(
    (value) => ({ ok: true as const, value }),
    (error: NodeJS.ErrnoException) => ({ ok: false as const, error }),
  )
}

/** Collects everything a socket receives until it ends. */
export function collect(socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = []
  return new Promise((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.once('end', () => resolve(Buffer.concat(chunks)))
    socket.once('error', reject)
  })
}

/** Collects everything a socket receives until it closes, ended or reset: what came, and the error if any. */
export function collectUntilClose(socket: net.Socket): Promise<{ data: Buffer; error: NodeJS.ErrnoException | undefined }> {
  const chunks: Buffer[] = []
  let error: NodeJS.ErrnoException | undefined
  return new Promise((resolve) => {
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', (err) => (error = err))
    socket.once('close', () => resolve({ data: Buffer.concat(chunks), error }))
  })
}

/**
 * A loopback UDP pair: `sender` connected to a receiver whose datagrams collect in
 * `got`; both closed when the test ends.
 */
/** A connected UDP sender and its loopback receiver, collecting datagrams; the caller closes both. */
export async function openUdpPair(): Promise<{ sender: dgram.Socket; receiver: dgram.Socket; got: Buffer[] }> {
  // A receive buffer big enough for a whole batch: loopback drops what does not fit.
  const receiver = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 })
  await new Promise<void>((resolve) => receiver.bind(0, '127.0.0.1', resolve))
  const sender = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => sender.connect(receiver.address().port, '127.0.0.1', resolve))
  const got: Buffer[] = []
  receiver.on('message', (m) => got.push(m))
  return { sender, receiver, got }
}

/** Closes sockets that may be closed already. */
export function closeSocketsQuietly(sockets: Array<{ close(): unknown }>): void {
  for (const s of sockets) {
    try {
      s.close()
    } catch {
      // closed by the test
    }
  }
}

export async function udpPair(t: { after(fn: () => void): void }): Promise<{ sender: dgram.Socket; got: Buffer[] }> {
  const { sender, receiver, got } = await openUdpPair()
  t.after(() => closeSocketsQuietly([sender, receiver]))
  return { sender, got }
}

/** This process's open fds and what each refers to (/proc/self/fd), to compare before and after. */
export function openFdTargets(): Map<string, string> {
  const out = new Map<string, string>()
  // The io_uring engine's ring and eventfd live as long as the environment (made on
  // first use): exactly those two are not a leak. test/workers checks they go with it.
  const ring = new Set(ringFds().map(String))
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    if (ring.has(fd)) continue
    try {
      out.set(fd, fs.readlinkSync(`/proc/self/fd/${fd}`))
    } catch {
      // the readdir's own fd, closed by now
    }
  }
  return out
}

export function socketFd(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd
  assert.ok(typeof fd === 'number' && fd >= 0, 'socket has an fd')
  return fd
}

/** Yields to the event loop (for retrying EAGAIN in tests without spinning). */
export function tick(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 1))
}

/** Asserts that `fn` throws Node's SystemError shape for `code` from `syscall`. */
export function assertSystemError(err: unknown, code: string, syscall: string): void {
  assert.ok(err instanceof Error, 'an Error')
  const e = err as NodeJS.ErrnoException
  assert.equal(e.code, code)
  assert.equal(e.syscall, syscall)
  assert.equal(e.errno, -(os.constants.errno as Record<string, number>)[code]!)
  assert.match(e.message, new RegExp(`^${code}: [a-z].*, ${syscall}$`))
}

export function throwsSystemError(fn: () => unknown, code: string, syscall: string): void {
  let thrown: unknown
  try {
    fn()
  } catch (err) {
    thrown = err
  }
  assert.ok(thrown !== undefined, `expected ${code} from ${syscall}`)
  assertSystemError(thrown, code, syscall)
}

export async function rejectsSystemError(p: Promise<unknown>, code: string, syscall: string): Promise<void> {
  let thrown: unknown
  try {
    await p
  } catch (err) {
    thrown = err
  }
  assert.ok(thrown !== undefined, `expected ${code} from ${syscall}`)
  assertSystemError(thrown, code, syscall)
}

/**
 * A bound UDP socket that only the test reads: a duplicate of a dgram socket's fd, kept
 * after Node closed its own (so Node's reads cannot take the datagrams first), and a
 * connected sender to it. Both closed when the test ends.
 */
export async function quietUdpPair(t: { after(fn: () => void): void }): Promise<{ fd: number; sendAll(list: Buffer[]): Promise<void> }> {
  const receiver = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => receiver.bind(0, '127.0.0.1', resolve))
  const fd = dup(dgramSocketFd(receiver)!)
  const port = receiver.address().port
  await new Promise<void>((resolve) => receiver.close(resolve))
  const sender = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => sender.connect(port, '127.0.0.1', resolve))
  t.after(() => {
    sender.close()
    native.closeFd(fd)
  })
  const sendAll = async (list: Buffer[]) => {
    for (const m of list) await new Promise<void>((resolve, reject) => sender.send(m, (err) => (err ? reject(err) : resolve())))
  }
  return { fd, sendAll }
}
