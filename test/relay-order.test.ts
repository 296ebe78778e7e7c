// One write order per socket: a relay into a destination takes its place among the
// sends (ZeroCopySocket) and Node's writes to that socket, in call order, and a
// socket in a relay or an upload is claimed by its kernel identity, whatever names
// it (the net.Socket, its fd, a duplicate). On real loopback TCP, checked by the exact
// bytes the peer reads; run it with ZEROCOPY_ENGINE=epoll and =io_uring.
import * as assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'
import * as tls from 'node:tls'
import { before, test } from 'node:test'
import { Worker } from 'node:worker_threads'
import { receiveToFile, relay, ZeroCopySocket } from '../lib'
import { native } from '../lib/native'
import { openFdTargets, randomBytes, sha256, socketFd, tcpPair, tempDir } from './helpers'
import { assertNothingLeft, chain, received, warmRelayThread, within, type Chain } from './relay-util'

before(async () => {
  await warmRelayThread()
  // So are the send engine's (the reactor's epoll, the io_uring ring).
  const p = await tcpPair()
  const zc = ZeroCopySocket.from(p.client)
  await zc.send(Buffer.from('warm'))
  await zc.close()
  await p.close()
})

/** The code a call is refused with (a refusal comes at once: an accepted call fails here). */
const code = async (p: Promise<unknown>) => ((await within(p.then(() => undefined, (e: NodeJS.ErrnoException) => e), 3000, 'the refusal')) as NodeJS.ErrnoException | undefined)?.code

/** Resolves once `s` has received at least `n` bytes (it keeps reading). */
function receivedAtLeast(s: net.Socket, n: number): Promise<void> {
  let got = 0
  return new Promise((resolve) => {
    const onData = (chunk: Buffer) => {
      got += chunk.length
      if (got < n) return
      s.off('data', onData)
      resolve()
    }
    s.on('data', onData)
  })
}

/** Everything the server reads until the proxy's end, and the chain closed. */
async function finish(c: Chain, atServer: Promise<Buffer>): Promise<Buffer> {
  c.proxyOut.end()
  const bytes = await within(atServer, 10000, 'the server')
  await c.close()
  return bytes
}

test('a send still partly unsent when a relay starts goes whole before the relayed bytes', async () => {
  const fds = openFdTargets()
  const c = await chain()
  const zc = ZeroCopySocket.from(c.proxyOut)
  c.server.pause() // the kernel's buffers fill: most of the send waits in the queue
  const big = randomBytes(16 << 20, 71)
  const sent = zc.send(big)
  await new Promise((resolve) => setTimeout(resolve, 20))
  assert.ok(zc.stats.unsent > 0, 'the send is still partly unsent')
  const relayed = randomBytes(1000, 72)
  const r = relay(c.proxyIn, c.proxyOut, { direction: 'a->b', length: relayed.length })
  c.client.write(relayed)
  const atServer = received(c.server)
  c.server.resume()
  assert.equal((await within(r, 10000, 'relay')).aToB, relayed.length)
  assert.equal((await within(sent, 10000, 'send')).bytes, big.length)
  await zc.close()
  const bytes = await finish(c, atServer)
  assert.equal(bytes.length, big.length + relayed.length)
  assert.equal(sha256(bytes), sha256(Buffer.concat([big, relayed])))
  assertNothingLeft(fds)
})

test("sends and Node's writes made during a relay go after the relayed bytes, in call order", async () => {
  const fds = openFdTargets()
  const c = await chain()
  const zc = ZeroCopySocket.from(c.proxyOut)
  const relayed = randomBytes(2 << 20, 73)
  const half = relayed.length / 2
  const atServer = received(c.server)
  const started = receivedAtLeast(c.server, 1)
  const r = relay(c.proxyIn, c.proxyOut, { direction: 'a->b', length: relayed.length })
  c.client.write(relayed.subarray(0, half))
  await within(started, 5000, 'the first relayed bytes')
  const sent = zc.send(Buffer.from('<send>'))
  const written = new Promise((resolve) => c.proxyOut.write('<write>', resolve))
  const sent2 = zc.send(Buffer.from('<send2>'))
  await new Promise((resolve) => setTimeout(resolve, 20))
  c.client.write(relayed.subarray(half))
  assert.equal((await within(r, 10000, 'relay')).aToB, relayed.length)
  await within(Promise.all([sent, written, sent2]), 5000, 'the sends and the write')
  await zc.close()
  const bytes = await finish(c, atServer)
  assert.equal(sha256(bytes), sha256(Buffer.concat([relayed, Buffer.from('<send><write><send2>')])))
  assertNothingLeft(fds)
})

test("after zc.close() during a relay, Node's writes still wait for the relayed bytes", async () => {
  const fds = openFdTargets()
  const c = await chain()
  const zc = ZeroCopySocket.from(c.proxyOut)
  const relayed = randomBytes(2 << 20, 74)
  const half = relayed.length / 2
  const atServer = received(c.server)
  const started = receivedAtLeast(c.server, 1)
  const r = relay(c.proxyIn, c.proxyOut, { direction: 'a->b', length: relayed.length })
  c.client.write(relayed.subarray(0, half))
  await within(started, 5000, 'the first relayed bytes')
  await within(zc.close(), 5000, 'zc.close()')
  const written = new Promise((resolve) => c.proxyOut.write('<after>', resolve))
  await new Promise((resolve) => setTimeout(resolve, 20))
  c.client.write(relayed.subarray(half))
  assert.equal((await within(r, 10000, 'relay')).aToB, relayed.length)
  assert.equal(await within(written, 5000, 'the held write'), null)
  for (const key of ['_write', '_writev', '_final']) assert.equal(Object.hasOwn(c.proxyOut, key), false, key)
  const bytes = await finish(c, atServer)
  assert.equal(sha256(bytes), sha256(Buffer.concat([relayed, Buffer.from('<after>')])))
  assertNothingLeft(fds)
})

test('a ZeroCopySocket attached during a relay queues its sends behind it (the destination named by fd)', async () => {
  const fds = openFdTargets()
  const c = await chain()
  const relayed = randomBytes(2 << 20, 75)
  const half = relayed.length / 2
  const atServer = received(c.server)
  const started = receivedAtLeast(c.server, 1)
  const r = relay(c.proxyIn, socketFd(c.proxyOut), { direction: 'a->b', length: relayed.length })
  c.client.write(relayed.subarray(0, half))
  await within(started, 5000, 'the first relayed bytes')
  const zc = ZeroCopySocket.from(c.proxyOut)
  const sent = zc.send(Buffer.from('<send>'))
  const written = new Promise((resolve) => c.proxyOut.write('<write>', resolve))
  await new Promise((resolve) => setTimeout(resolve, 20))
  c.client.write(relayed.subarray(half))
  assert.equal((await within(r, 10000, 'relay')).aToB, relayed.length)
  await within(Promise.all([sent, written]), 5000, 'the send and the write')
  await zc.close()
  // The relay's hold (under the channel's gate) and the gate both went: nothing of either is left.
  for (const key of ['_write', '_writev', '_final']) assert.equal(Object.hasOwn(c.proxyOut, key), false, key)
  const bytes = await finish(c, atServer)
  assert.equal(sha256(bytes), sha256(Buffer.concat([relayed, Buffer.from('<send><write>')])))
  assertNothingLeft(fds)
})

test('a socket in a relay is claimed by its kernel identity: its fd or a duplicate is refused too', async (t) => {
  const c = await chain()
  const other = await chain()
  const r = relay(c.proxyIn, c.proxyOut)
  const fdA = socketFd(c.proxyIn)
  const dupB = native.dupFd(socketFd(c.proxyOut))
  t.after(() => native.closeFd(dupB))
  assert.equal(await code(relay(fdA, other.proxyOut)), 'ERR_INVALID_STATE')
  assert.equal(await code(relay(other.proxyIn, dupB, { direction: 'a->b' })), 'ERR_INVALID_STATE')
  assert.equal(await code(receiveToFile(fdA, path.join(tempDir(t), 'f'))), 'ERR_INVALID_STATE')
  // The refusals moved nothing: the first relay still gets every byte, both ways.
  c.client.end('x')
  c.server.end('y')
  assert.deepEqual(await within(r, 5000, 'the first relay'), { aToB: 1, bToA: 1, mechanism: 'copy' })
  await Promise.all([c.close(), other.close()])
})

test('an upload claims its socket by identity: a relay of its fd is refused', async (t) => {
  const c = await chain()
  const other = await chain()
  const file = path.join(tempDir(t), 'upload')
  const u = receiveToFile(c.proxyIn, file)
  assert.equal(await code(relay(socketFd(c.proxyIn), other.proxyOut)), 'ERR_INVALID_STATE')
  assert.equal(await code(receiveToFile(socketFd(c.proxyIn), `${file}2`)), 'ERR_INVALID_STATE')
  c.client.end('upload')
  assert.equal((await within(u, 5000, 'upload')).bytes, 6)
  await Promise.all([c.close(), other.close()])
})

/**
 * A worker_threads Worker that calls receiveToFile(fd, file, { length }) on an fd of
 * this process (fds belong to the process, not to one environment). `called` comes once
 * the call returned (its claim is made synchronously), `settled` with its outcome.
 */
function uploadInWorker(fd: number, file: string, length?: number) {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads')
    const { receiveToFile } = require(workerData.lib)
    const p = receiveToFile(workerData.fd, workerData.file, workerData.length === undefined ? {} : { length: workerData.length })
    parentPort.postMessage({ called: true })
    p.then((r) => parentPort.postMessage({ bytes: r.bytes }), (e) => parentPort.postMessage({ code: e.code, message: e.message }))`
  const worker = new Worker(code, { eval: true, workerData: { lib: path.join(__dirname, '..', 'lib'), fd, file, length } })
  worker.on('error', () => {})
  const messages: Array<Record<string, unknown>> = []
  let wake = () => {}
  worker.on('message', (m: Record<string, unknown>) => {
    messages.push(m)
    wake()
  })
  const nth = (n: number, what: string) =>
    within(
      new Promise<Record<string, unknown>>((resolve) => {
        const check = () => (messages.length > n ? resolve(messages[n]!) : undefined)
        wake = check
        check()
      }),
      5000,
      what,
    )
  return { worker, called: () => nth(0, 'the worker\'s call'), settled: () => nth(1, 'the worker\'s upload') }
}

test('claims are process-wide: a worker naming the fd of a socket the main thread relays is refused', async (t) => {
  const c = await chain()
  const r = relay(c.proxyIn, c.proxyOut, { direction: 'a->b', length: 200_000 })
  const atServer = receivedAtLeast(c.server, 200_000)
  const w = uploadInWorker(socketFd(c.proxyIn), path.join(tempDir(t), 'stolen'), 200_000)
  t.after(() => w.worker.terminate())
  await w.called()
  assert.equal((await w.settled()).code, 'ERR_INVALID_STATE')
  // The refusal moved nothing: every byte goes through the main thread's relay.
  const data = randomBytes(200_000, 81)
  c.client.write(data)
  assert.deepEqual(await within(r, 5000, 'the relay'), { aToB: 200_000, bToA: 0, mechanism: 'copy' })
  await within(atServer, 5000, 'the server')
  await c.close()
})

test("claims are process-wide: a socket a worker's upload holds is refused in the main thread, and free once it ends", async (t) => {
  const c = await chain()
  const other = await chain()
  // The socket only as an fd here: Node in this thread does not read it, the worker's upload does.
  const fd = native.dupFd(socketFd(c.proxyIn), false)
  t.after(() => native.closeFd(fd))
  c.proxyIn.destroy()
  const file = path.join(tempDir(t), 'upload')
  const w = uploadInWorker(fd, file, 1000)
  t.after(() => w.worker.terminate())
  await w.called()
  assert.equal(await code(relay(fd, other.proxyOut)), 'ERR_INVALID_STATE')
  assert.equal(await code(relay(other.proxyIn, fd)), 'ERR_INVALID_STATE')
  assert.equal(await code(receiveToFile(fd, `${file}2`, { length: 1000 })), 'ERR_INVALID_STATE')
  const data = randomBytes(1000, 82)
  c.client.write(data)
  assert.deepEqual(await w.settled(), { bytes: 1000 })
  assert.equal(sha256(fs.readFileSync(file)), sha256(data))
  // Its claim ended with the upload: this thread may relay the socket now.
  const r = relay(fd, c.proxyOut, { direction: 'a->b', length: 3 })
  const atServer = receivedAtLeast(c.server, 3)
  c.client.write('end')
  assert.deepEqual(await within(r, 5000, 'the relay'), { aToB: 3, bToA: 0, mechanism: 'copy' })
  await within(atServer, 5000, 'the server')
  await Promise.all([c.close(), other.close()])
})

test("a terminated worker's claims end with it", async (t) => {
  const c = await chain()
  const fd = native.dupFd(socketFd(c.proxyIn), false)
  t.after(() => native.closeFd(fd))
  c.proxyIn.destroy()
  const w = uploadInWorker(fd, path.join(tempDir(t), 'abandoned'))
  await w.called()
  assert.equal(await code(relay(fd, c.proxyOut, { direction: 'a->b', length: 1 })), 'ERR_INVALID_STATE')
  await w.worker.terminate()
  const r = relay(fd, c.proxyOut, { direction: 'a->b', length: 5 })
  const atServer = receivedAtLeast(c.server, 5)
  c.client.write('after')
  assert.deepEqual(await within(r, 5000, 'the relay'), { aToB: 5, bToA: 0, mechanism: 'copy' })
  await within(atServer, 5000, 'the server')
  await c.close()
})

test('relay(a, an fd of a) is refused: b must be another socket than a', async () => {
  const c = await chain()
  const err = (await within(relay(c.proxyIn, socketFd(c.proxyIn)).catch((e: NodeJS.ErrnoException) => e), 3000, 'the refusal')) as NodeJS.ErrnoException
  assert.equal(err.code, 'ERR_INVALID_ARG_VALUE')
  assert.match(err.message, /another socket than a/)
  const dup = native.dupFd(socketFd(c.proxyIn))
  assert.equal(await code(relay(dup, c.proxyIn, { direction: 'a->b' })), 'ERR_INVALID_ARG_VALUE')
  native.closeFd(dup)
  // Nothing moved: the socket is still Node's and reads the peer's bytes.
  const got = new Promise<Buffer>((resolve) => c.proxyIn.once('data', resolve))
  c.client.write('still mine')
  assert.equal((await within(got, 5000, 'data')).toString(), 'still mine')
  await c.close()
})

test("a TLS socket is refused with the layer's reason, not an object", async () => {
  const c = await chain()
  const secure = new tls.TLSSocket(c.proxyIn)
  for (const p of [relay(secure, c.proxyOut), receiveToFile(secure, '/nonexistent/never-opened')]) {
    const err = (await p.catch((e: NodeJS.ErrnoException) => e)) as NodeJS.ErrnoException
    assert.equal(err.code, 'ERR_ZEROCOPY_PROTOCOL_LAYER')
    assert.doesNotMatch(err.message, /\[object Object\]/)
    assert.match(err.message, /TLS/)
  }
  secure.destroy()
  await c.close()
})

test('a relay that fails while sends and writes wait behind it: each rejects or errors once, no error event', async () => {
  const fds = openFdTargets()
  const c = await chain()
  const zc = ZeroCopySocket.from(c.proxyOut)
  const errors: Error[] = []
  c.proxyOut.on('error', (e) => errors.push(e))
  const r = relay(c.proxyIn, c.proxyOut).catch((e: NodeJS.ErrnoException) => e)
  const sent = zc.send(Buffer.from('queued')).then(() => undefined, (e: NodeJS.ErrnoException) => e)
  const written = new Promise<Error | null | undefined>((resolve) => c.proxyOut.write('held', resolve))
  c.client.resetAndDestroy()
  assert.equal(((await within(r, 5000, 'relay')) as NodeJS.ErrnoException).code, 'ECONNRESET')
  const sendErr = await within(sent, 5000, 'the queued send')
  assert.ok(sendErr instanceof Error && typeof (sendErr as NodeJS.ErrnoException).code === 'string', `the send rejects with a coded error (${String(sendErr)})`)
  const writeErr = await within(written, 5000, 'the held write')
  assert.ok(writeErr instanceof Error && typeof (writeErr as NodeJS.ErrnoException).code === 'string', 'the held write fails')
  await zc.close()
  await c.close()
  assert.deepEqual(errors, [])
  assertNothingLeft(fds)
})

test('a destination still connecting: Node writes before the call go first, those after wait; claimed by identity once connected', async () => {
  const fds = openFdTargets()
  const c = await chain()
  const listener = net.createServer({ allowHalfOpen: true })
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
  const accepted = new Promise<net.Socket>((resolve) => listener.once('connection', resolve))
  const out = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1')
  out.write('<before>')
  const relayed = randomBytes(256 << 10, 76)
  const r = relay(c.proxyIn, out, { direction: 'a->b', length: relayed.length })
  out.write('<after>')
  const server = await accepted
  listener.close()
  const atServer = received(server)
  await new Promise<void>((resolve) => (out.connecting ? out.once('connect', () => resolve()) : resolve()))
  // Now it has an fd: another relay naming that fd is refused.
  const other = await chain()
  assert.equal(await code(relay(other.proxyIn, socketFd(out), { direction: 'a->b' })), 'ERR_INVALID_STATE')
  c.client.write(relayed)
  assert.equal((await within(r, 10000, 'relay')).aToB, relayed.length)
  out.end()
  const bytes = await within(atServer, 5000, 'the server')
  assert.equal(sha256(bytes), sha256(Buffer.concat([Buffer.from('<before>'), relayed, Buffer.from('<after>')])))
  out.destroy()
  server.destroy()
  await Promise.all([c.close(), other.close()])
  assertNothingLeft(fds)
})

test('a destination whose sends failed refuses the relay with that error, before anything moves', async () => {
  const c = await chain()
  const zc = ZeroCopySocket.from(c.proxyOut)
  c.server.resetAndDestroy()
  // Until the send meets the reset, the channel fails with it.
  let failure: NodeJS.ErrnoException | undefined
  for (let i = 0; i < 100 && failure === undefined; i++) {
    failure = await zc.send(Buffer.alloc(1024)).then(() => undefined, (e: NodeJS.ErrnoException) => e)
    if (failure === undefined) await new Promise((resolve) => setTimeout(resolve, 10))
  }
  assert.ok(failure !== undefined, 'a send failed')
  const got: Buffer[] = []
  c.proxyIn.on('data', (chunk: Buffer) => got.push(chunk))
  const err = (await within(relay(c.proxyIn, c.proxyOut, { direction: 'a->b', length: 5 }).catch((e: NodeJS.ErrnoException) => e), 5000, 'relay')) as NodeJS.ErrnoException
  assert.equal(typeof err.code, 'string')
  assert.equal(err.code, failure.code)
  // Nothing moved: the source's bytes are still Node's.
  c.client.write('mine!')
  await within(new Promise((resolve) => c.proxyIn.once('data', resolve)), 5000, 'data')
  assert.equal(Buffer.concat(got).toString(), 'mine!')
  await zc.close()
  await c.close()
})

test("Node's buffered bytes, sends, the relay, then writes and sends made during it: the peer reads them in call order", async () => {
  const fds = openFdTargets()
  const c = await chain()
  const zc = ZeroCopySocket.from(c.proxyOut)
  c.server.pause()
  const written = randomBytes(6 << 20, 77)
  c.proxyOut.write(written) // Node buffers most of it: the server does not read
  const sent = zc.send(randomBytes(3 << 20, 78))
  const relayed = randomBytes(64 << 10, 79)
  const r = relay(c.proxyIn, c.proxyOut, { direction: 'a->b', length: relayed.length })
  c.proxyOut.write('<w1>')
  const sent2 = zc.send(Buffer.from('<s2>'))
  c.proxyOut.write('<w3>')
  c.client.write(relayed)
  const atServer = received(c.server)
  c.server.resume()
  assert.equal((await within(r, 10000, 'relay')).aToB, relayed.length)
  await within(Promise.all([sent, sent2]), 10000, 'the sends')
  await zc.close()
  const bytes = await finish(c, atServer)
  const expected = Buffer.concat([written, randomBytes(3 << 20, 78), relayed, Buffer.from('<w1><s2><w3>')])
  assert.equal(bytes.length, expected.length)
  assert.equal(sha256(bytes), sha256(expected))
  assertNothingLeft(fds)
})

for (const how of ['destroy', 'idle timeout'] as const) {
  test(`a relay waiting for its turn behind a send ends at once when Node closes its source (${how})`, async () => {
    const fds = openFdTargets()
    const c = await chain()
    const zc = ZeroCopySocket.from(c.proxyOut)
    c.server.pause() // the peer does not read: the send ahead of the relay waits
    const sent = zc.send(randomBytes(16 << 20, 80))
    sent.catch(() => {})
    await new Promise((resolve) => setTimeout(resolve, 20))
    assert.ok(zc.stats.unsent > 0, 'the send is still partly unsent')
    c.proxyIn.on('error', () => {})
    const r = relay(c.proxyIn, c.proxyOut, { direction: 'a->b', length: 1000 })
    const started = Date.now()
    if (how === 'destroy') setTimeout(() => c.proxyIn.destroy(), 50)
    else c.proxyIn.setTimeout(100, () => c.proxyIn.destroy()) // Node's docs pattern
    const err = (await within(r.catch((e: NodeJS.ErrnoException) => e), 3000, 'the waiting relay')) as NodeJS.ErrnoException
    assert.equal(err.code, 'ERR_SOCKET_CLOSED')
    assert.ok(Date.now() - started < 1000, `settled ${Date.now() - started} ms after the call`)
    // Nothing of the relay went: the destination carries on with the send.
    c.server.resume()
    assert.equal((await within(sent, 10000, 'the send')).bytes, 16 << 20)
    await zc.close()
    await c.close()
    assertNothingLeft(fds)
  })
}
