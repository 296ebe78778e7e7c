// Issue 21, item 1: nothing the package keeps holds a socket, or the HTTP objects around
// it, reachable once Node closed the socket, whatever path the failure took. Each case
// runs its transfers in a function of its own and keeps only WeakRefs (test/gc-util.ts):
// after the sockets closed and a forced GC, none may be alive, and the registry holds
// no channel more than before.
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as https from 'node:https'
import * as net from 'node:net'
import * as path from 'node:path'
import * as tls from 'node:tls'
import { test } from 'node:test'
import { sendFileZeroCopy, sendZeroCopy } from '../lib/index'
import { registrySize } from '../lib/socket-registry'
import { cert, key } from './fixtures/tls-cert'
import { Reachability } from './gc-util'
import { engine, tempDir } from './helpers'
import { exitWatchdog, MiB, within } from './regress-util'

exitWatchdog()

const FILE_SIZE = 8 * MiB
const CANCEL_AT = 100 * 1024
const CLIENTS = 6

/** How a client goes: closes with unread bytes, resets, or stops reading (until the test says). */
type Client = 'close' | 'reset' | 'stall'

function bigFile(t: { after(fn: () => void): void }): string {
  const file = path.join(tempDir(t), 'big')
  fs.writeFileSync(file, Buffer.alloc(FILE_SIZE, 0x61))
  return file
}

interface Peer {
  /** Resolves when the client has read `CANCEL_AT` bytes and acted (cancelled or paused). */
  acted: Promise<void>
  closed: Promise<void>
  socket: net.Socket
}

function client(port: number, request: string | undefined, how: Client, secure: boolean): Peer {
  const c = secure ? tls.connect({ port, host: '127.0.0.1', ca: cert, servername: 'localhost' }) : net.connect(port, '127.0.0.1')
  let got = 0
  let acted!: () => void
  const peer: Peer = {
    acted: new Promise<void>((resolve) => (acted = resolve)),
    closed: new Promise<void>((resolve) => c.once('close', () => resolve())),
    socket: c,
  }
  c.on('error', () => {})
  c.once('close', () => acted())
  if (request !== undefined) c.write(request)
  let done = false
  c.on('data', (chunk: Buffer) => {
    got += chunk.length
    if (got < CANCEL_AT || done) return
    done = true
    if (how === 'reset') c.resetAndDestroy()
    else if (how === 'close') c.destroy()
    else c.pause()
    acted()
  })
  return peer
}

/** Things an application hangs on its connection and response. */
function hang(r: Reachability, name: string, on: object): void {
  const appState = { name, payload: Buffer.alloc(1024) }
  ;(on as { appState?: object }).appState = appState
  r.watch(`${name}.appState`, appState)
}

interface Run {
  r: Reachability
  /** Each call's rejection code or name ('resolved' if it resolved). */
  outcomes: string[]
}

/**
 * A server (HTTP when `request` is given) answering each connection with `respond`;
 * CLIENTS clients go as `how` says. With 'stall', `midway` runs once every client
 * stopped reading, and the clients read on afterwards. Resolves once every server
 * socket closed and every call settled, with WeakRefs to the sockets, requests,
 * responses and what was hung on them.
 */
async function cancellations(
  kind: 'http' | 'https' | 'tcp',
  respond: (target: http.ServerResponse | net.Socket) => Promise<unknown>,
  how: Client,
  midway?: () => void,
): Promise<Run> {
  const r = new Reachability()
  const outcomes: string[] = []
  let n = 0
  const closed: Array<Promise<void>> = []
  const calls: Array<Promise<unknown>> = []
  const began = (socket: net.Socket, target: http.ServerResponse | net.Socket) => {
    const i = n++
    r.watch(`socket ${i}`, socket)
    hang(r, `socket ${i}`, socket)
    closed.push(new Promise((resolve) => socket.once('close', () => resolve())))
    calls.push(
      respond(target).then(
        () => outcomes.push('resolved'),
        (err: NodeJS.ErrnoException) => outcomes.push(err.code ?? err.name),
      ),
    )
  }
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    r.watch(`req ${n}`, req)
    r.watch(`res ${n}`, res)
    hang(r, `res ${n}`, res)
    began(req.socket, res)
  }
  const server =
    kind === 'http'
      ? http.createServer(onRequest)
      : kind === 'https'
        ? https.createServer({ key, cert }, onRequest)
        : net.createServer((socket) => {
          socket.on('error', () => {})
          began(socket, socket)
        })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  const peers: Peer[] = []
  for (let i = 0; i < CLIENTS; i++) peers.push(client(port, kind === 'tcp' ? undefined : 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', how, kind === 'https'))
  await within(10000, Promise.all(peers.map((p) => p.acted)), 'the clients to cancel or stall')
  if (how === 'stall') {
    midway?.()
    for (const p of peers) p.socket.resume()
  }
  await within(10000, Promise.all(calls), 'the calls to settle')
  for (const p of peers) p.socket.destroy()
  await within(10000, Promise.all([...closed, ...peers.map((p) => p.closed)]), 'the sockets to close')
  server.close()
  return { r, outcomes }
}

async function assertCollected(make: () => Promise<Run>, outcome?: string): Promise<void> {
  const before = registrySize()
  const { r, outcomes } = await make()
  if (outcome !== undefined) assert.deepEqual(outcomes, outcomes.map(() => outcome), 'how the calls ended')
  const alive = await r.survivors()
  assert.deepEqual(alive, [], `still reachable after the sockets closed (engine ${engine}): ${alive.join(', ')}`)
  assert.equal(registrySize(), before, 'the registry forgot every closed channel')
}

for (const how of ['close', 'reset'] as const) {
  test(`sendFileZeroCopy(res, file): clients that ${how} mid-download leave nothing reachable`, async (t) => {
    const file = bigFile(t)
    await assertCollected(() => cancellations('http', (res) => sendFileZeroCopy(res, file), how))
  })

  test(`sendZeroCopy(res, buf): clients that ${how} mid-body leave nothing reachable`, async () => {
    const body = Buffer.alloc(FILE_SIZE, 0x62)
    await assertCollected(() => cancellations('http', (res) => sendZeroCopy(res, body), how))
  })

  test(`sendFileZeroCopy(socket, file): peers that ${how} leave nothing reachable`, async (t) => {
    const file = bigFile(t)
    await assertCollected(() => cancellations('tcp', (socket) => sendFileZeroCopy(socket as net.Socket, file), how))
  })

  test(`sendZeroCopy(socket, buf): peers that ${how} leave nothing reachable`, async () => {
    const body = Buffer.alloc(FILE_SIZE, 0x63)
    await assertCollected(() => cancellations('tcp', (socket) => sendZeroCopy(socket as net.Socket, body), how))
  })
}

test('sendFileZeroCopy(res, file) over HTTPS (honest copies through TLS): clients that close mid-download leave nothing reachable', async (t) => {
  const file = bigFile(t)
  await assertCollected(() => cancellations('https', (res) => sendFileZeroCopy(res, file), 'close'))
})

test('sendFileZeroCopy(res, file) aborted by its signal mid-body leaves nothing reachable', async (t) => {
  const file = bigFile(t)
  const controllers: AbortController[] = []
  await assertCollected(
    () =>
      cancellations(
        'http',
        (res) => {
          const ac = new AbortController()
          controllers.push(ac)
          return sendFileZeroCopy(res, file, { signal: ac.signal, windowSize: MiB })
        },
        'stall',
        () => controllers.splice(0).forEach((ac) => ac.abort()),
      ),
    'ABORT_ERR',
  )
})

test('sendFileZeroCopy(socket, file) aborted mid-file leaves nothing reachable', async (t) => {
  const file = bigFile(t)
  const controllers: AbortController[] = []
  await assertCollected(
    () =>
      cancellations(
        'tcp',
        (socket) => {
          const ac = new AbortController()
          controllers.push(ac)
          return sendFileZeroCopy(socket as net.Socket, file, { signal: ac.signal, windowSize: MiB })
        },
        'stall',
        () => controllers.splice(0).forEach((ac) => ac.abort()),
      ),
    'ABORT_ERR',
  )
})

test('sendZeroCopy(res, buf) aborted by the server closing the response mid-body leaves nothing reachable', async () => {
  const body = Buffer.alloc(FILE_SIZE, 0x65)
  const responses: http.ServerResponse[] = []
  await assertCollected(() =>
    cancellations(
      'http',
      (res) => {
        responses.push(res as http.ServerResponse)
        return sendZeroCopy(res, body)
      },
      'stall',
      () => responses.splice(0).forEach((res) => res.destroy()),
    ),
  )
})

test('sendFileZeroCopy(socket, file) of a file truncated mid-send leaves nothing reachable', async (t) => {
  const dir = tempDir(t)
  const files: string[] = []
  await assertCollected(
    () =>
      cancellations(
        'tcp',
        (socket) => {
          const file = path.join(dir, `t${files.length}`)
          files.push(file)
          fs.writeFileSync(file, Buffer.alloc(FILE_SIZE, 0x64))
          return sendFileZeroCopy(socket as net.Socket, file, { windowSize: MiB, maxWindows: 8 })
        },
        'stall',
        () => files.forEach((file) => fs.truncateSync(file, 0)),
      ),
    'ERR_ZEROCOPY_FILE_TRUNCATED',
  )
})

test("Node's close reaches the channel even when the application removed the socket's 'close' listeners", async () => {
  const before = registrySize()
  const r = new Reachability()
  await (async () => {
    const server = net.createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve))
    const c = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
    c.on('error', () => {})
    c.resume()
    const s = await accepted
    server.close()
    r.watch('server socket', s)
    hang(r, 'server socket', s)
    await sendZeroCopy(s, Buffer.alloc(64 * 1024, 0x66))
    // A library tidying up its own listeners takes everyone's.
    s.removeAllListeners('close')
    const gone = new Promise<void>((resolve) => c.once('close', () => resolve()))
    s.destroy()
    await within(5000, gone, 'the client to see the close')
  })()
  const alive = await r.survivors()
  assert.deepEqual(alive, [], `still reachable after the socket closed (engine ${engine}): ${alive.join(', ')}`)
  assert.equal(registrySize(), before, 'the registry forgot the channel')
})

test('a socket Node closed while the kernel still holds its sends is not kept by the lingering channel', async () => {
  const before = registrySize()
  const r = new Reachability()
  let state = 'pending'
  const { client, sent } = await (async () => {
    const server = net.createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve))
    const c = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
    c.on('error', () => {})
    c.pause() // never reads: the kernel keeps the pages, the channel lingers
    const s = await accepted
    server.close()
    s.on('error', () => {})
    r.watch('server socket', s)
    hang(r, 'server socket', s)
    const p = sendZeroCopy(s, Buffer.alloc(FILE_SIZE, 0x67)).then(
      () => void (state = 'resolved'),
      () => void (state = 'rejected'),
    )
    await new Promise((resolve) => setTimeout(resolve, 50))
    s.destroy()
    return { client: c, sent: p }
  })()
  const alive = await r.survivors()
  assert.equal(state, 'pending', 'the send still waits for the kernel (lingering)')
  assert.deepEqual(alive, [], `reachable while the channel lingers (engine ${engine}): ${alive.join(', ')}`)
  client.destroy() // the reset frees the pages: the send settles, the channel ends
  await within(5000, sent, 'the send to settle after the peer went')
  assert.equal(state, 'rejected')
  await new Promise((resolve) => setTimeout(resolve, 20))
  assert.equal(registrySize(), before, 'the registry forgot the channel')
})
