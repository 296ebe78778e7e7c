// Shared by the relay and receiveToFile tests: a client <-> proxy <-> server chain of
// real loopback TCP connections, fd snapshots that ignore the relay thread's own epoll
// and eventfd (made once per process), and bounded waits.
import * as assert from 'node:assert/strict'
import * as net from 'node:net'
import { relay } from '../lib'
import { runningJobs } from '../lib/relay-engine'
import { openFdTargets } from './helpers'

/** client <-> proxyIn (one connection), proxyOut <-> server (another). */
export interface Chain {
  client: net.Socket
  proxyIn: net.Socket
  proxyOut: net.Socket
  server: net.Socket
  close(): Promise<void>
}

/**
 * A loopback TCP connection whose ends allow half-open connections: a test end that
 * receives a forwarded FIN must not end its own side (Node's default), or its later
 * writes would fail. `serverHalfOpen: false` gives the accepted end Node's default.
 */
export async function halfOpenPair(serverHalfOpen = true): Promise<{ client: net.Socket; server: net.Socket }> {
  const listener = net.createServer({ allowHalfOpen: serverHalfOpen })
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
  const { port } = listener.address() as net.AddressInfo
  const accepted = new Promise<net.Socket>((resolve) => listener.once('connection', resolve))
  const client = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  await new Promise<void>((resolve, reject) => {
    client.once('connect', resolve)
    client.once('error', reject)
  })
  const server = await accepted
  listener.close()
  return { client, server }
}

/** `proxyInHalfOpen: false`: proxyIn has Node's default (it ends its side when it reads a FIN). */
export async function chain(options: { proxyInHalfOpen?: boolean } = {}): Promise<Chain> {
  const front = await halfOpenPair(options.proxyInHalfOpen ?? true)
  const back = await halfOpenPair()
  const all = [front.client, front.server, back.client, back.server]
  return {
    client: front.client,
    proxyIn: front.server,
    proxyOut: back.client,
    server: back.server,
    async close() {
      await Promise.all(all.map(closed))
    },
  }
}

/** Destroys a socket and waits for its 'close' (its fd is closed by then). */
export function closed(s: net.Socket): Promise<void> {
  if (s.closed) return Promise.resolve()
  return new Promise((resolve) => {
    s.once('close', () => resolve())
    s.on('error', () => {})
    s.destroy()
  })
}

/** Everything a socket receives until it ends or closes. */
export function received(s: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = []
  return new Promise((resolve) => {
    s.on('data', (c: Buffer) => chunks.push(c))
    s.on('error', () => {})
    const done = () => resolve(Buffer.concat(chunks))
    s.once('end', done)
    s.once('close', done)
  })
}

/**
 * Waits until Node has read the peer's FIN into `s` (and every byte before it), with `s`
 * paused so that nothing is consumed: its readable state has ended, 'end' not yet
 * emitted. Node exposes no public flag for that state, hence the private one (tests only).
 */
export async function untilNodeReadEof(s: net.Socket): Promise<void> {
  const state = (s as unknown as { _readableState: { ended: boolean } })._readableState
  s.pause()
  while (!state.ended) {
    s.read(0)
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
  assert.equal(s.readableEnded, false, "'end' not emitted yet")
}

/** Rejects if `p` has not settled within `ms`: nothing in these tests may hang. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled after ${ms} ms`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

/** fds open now that were not in `before`, and no relay job still running. */
export function assertNothingLeft(before: Map<string, string>): void {
  assert.equal(runningJobs(), 0, 'relay jobs still running')
  const added = [...openFdTargets()].filter(([fd, to]) => before.get(fd) !== to)
  assert.deepEqual(added, [], 'fds left open')
}

/** Writes `data` in the given chunk sizes (cycled), yielding to the loop now and then, then ends. */
export async function writeChunked(s: net.Socket, data: Buffer, sizes: number[]): Promise<void> {
  let at = 0
  for (let i = 0; at < data.length; i++) {
    const n = Math.min(sizes[i % sizes.length]!, data.length - at)
    const ok = s.write(data.subarray(at, at + n))
    at += n
    if (!ok) await new Promise((resolve) => s.once('drain', resolve))
    else if (i % 3 === 0) await new Promise((resolve) => setImmediate(resolve))
  }
  s.end()
}

/** Makes the relay thread's epoll and eventfd (made on first use, kept for the process) before a test counts fds. */
export async function warmRelayThread(): Promise<void> {
  const c = await chain()
  const done = relay(c.proxyIn, c.proxyOut)
  c.client.end()
  c.server.end()
  await done
  await c.close()
}
