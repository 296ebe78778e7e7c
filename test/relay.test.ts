// relay(a, b) on real loopback TCP: bytes hash-equal both ways at once under random
// chunking, bytes Node had buffered going first (never shown to a 'data' listener), a
// FIN Node had already read (allowHalfOpen false too), half-close, resets from either
// side, abort, length mode handing the socket back, 1000 relays at once; every test
// checks that no fd, pipe or running job is left and that every Promise settled.
import * as assert from 'node:assert/strict'
import * as net from 'node:net'
import * as tls from 'node:tls'
import { before, test } from 'node:test'
import * as fc from 'fast-check'
import * as path from 'node:path'
import { pipe, receiveToFile, relay, type RelayResult } from '../lib'
import { closeQuietly, openFdTargets, randomBytes, sha256, socketFd, tcpPair, tempDir } from './helpers'
import { assertNothingLeft, chain, closed, received, untilNodeReadEof, warmRelayThread, within, writeChunked } from './relay-util'

const SEED = Number(process.env.ZEROCOPY_RELAY_SEED ?? 20261206)
const MECHANISMS = ['copy', 'splice'] as const

before(warmRelayThread)

for (const mechanism of MECHANISMS) {
  test(`${mechanism}: both directions at once, random chunking, bytes hash-equal (seed ${SEED})`, async () => {
    const fds = openFdTargets()
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 3 << 20 }),
        fc.integer({ min: 0, max: 3 << 20 }),
        fc.array(fc.integer({ min: 1, max: 300000 }), { minLength: 1, maxLength: 12 }),
        fc.array(fc.integer({ min: 1, max: 300000 }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 4096, max: 1 << 20 }),
        async (upSize, downSize, upChunks, downChunks, bufferSize) => {
          const c = await chain()
          try {
            const up = randomBytes(upSize, upSize + 1)
            const down = randomBytes(downSize, downSize + 7)
            const atServer = received(c.server)
            const atClient = received(c.client)
            const r = relay(c.proxyIn, c.proxyOut, { mechanism, bufferSize })
            await Promise.all([writeChunked(c.client, up, upChunks), writeChunked(c.server, down, downChunks)])
            const result = await within(r, 10000, 'relay')
            assert.deepEqual(result, { aToB: upSize, bToA: downSize, mechanism } satisfies RelayResult)
            assert.equal(sha256(await atServer), sha256(up))
            assert.equal(sha256(await atClient), sha256(down))
          } finally {
            await c.close()
          }
        },
      ),
      { seed: SEED, numRuns: 12, endOnFailure: true },
    )
    assertNothingLeft(fds)
  })
}

test('mechanism auto: copy on loopback, and the result says so', async () => {
  const c = await chain()
  const r = relay(c.proxyIn, c.proxyOut)
  c.client.end('x')
  c.server.end()
  assert.equal((await r).mechanism, 'copy')
  await c.close()
})

test('bytes Node already read and buffered (and an unshifted head) go first', async () => {
  const fds = openFdTargets()
  const c = await chain()
  const head = Buffer.from('GET / HTTP/1.1\r\n\r\n')
  const early = randomBytes(30000, 3) // under the socket's 64 KiB read-ahead
  const late = randomBytes(200000, 4)
  // Node reads what arrives, the application looks at the head and puts it back.
  c.proxyIn.pause()
  c.client.write(Buffer.concat([head, early]))
  while (c.proxyIn.readableLength < head.length + early.length) {
    c.proxyIn.read(0)
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
  const taken = c.proxyIn.read(head.length) as Buffer
  assert.deepEqual(taken, head)
  c.proxyIn.unshift(taken)
  const atServer = received(c.server)
  const r = relay(c.proxyIn, c.proxyOut)
  c.client.end(late)
  c.server.end()
  assert.equal((await within(r, 5000, 'relay')).aToB, head.length + early.length + late.length)
  assert.equal(sha256(await atServer), sha256(Buffer.concat([head, early, late])))
  await c.close()
  assertNothingLeft(fds)
})

test('half-close is forwarded: the server still answers after the client ended', async () => {
  const fds = openFdTargets()
  const c = await chain()
  const r = relay(c.proxyIn, c.proxyOut)
  const atClient = received(c.client)
  const serverGotEnd = new Promise<Buffer>((resolve) => {
    const chunks: Buffer[] = []
    c.server.on('data', (d: Buffer) => chunks.push(d))
    c.server.once('end', () => resolve(Buffer.concat(chunks)))
  })
  c.server.allowHalfOpen = true
  c.client.end('request')
  assert.equal((await within(serverGotEnd, 5000, 'end at the server')).toString(), 'request')
  // The client's half is closed; the other way still works.
  const answer = randomBytes(1 << 20, 9)
  c.server.end(answer)
  assert.equal(sha256(await atClient), sha256(answer))
  assert.deepEqual(await within(r, 5000, 'relay'), { aToB: 7, bToA: answer.length, mechanism: 'copy' })
  assert.ok(c.proxyIn.destroyed && c.proxyOut.destroyed, 'both proxy sockets destroyed after a full relay')
  await c.close()
  assertNothingLeft(fds)
})

for (const side of ['client', 'server'] as const) {
  test(`a reset from the ${side} mid-stream rejects with that error; nothing pending`, async () => {
    const fds = openFdTargets()
    const c = await chain()
    const r = relay(c.proxyIn, c.proxyOut).then(
      () => undefined,
      (err: NodeJS.ErrnoException) => err,
    )
    const resetter = side === 'client' ? c.client : c.server
    const other = side === 'client' ? c.server : c.client
    const otherSaw = received(other)
    // Bytes flow both ways, then one end resets.
    resetter.write(randomBytes(1 << 20, 5))
    other.write(randomBytes(1 << 20, 6))
    await new Promise((resolve) => setTimeout(resolve, 20))
    resetter.resetAndDestroy()
    const err = await within(r, 5000, 'relay after a reset')
    assert.ok(err instanceof Error, 'the relay rejected')
    assert.ok(['ECONNRESET', 'EPIPE'].includes(err.code!), `code ${err.code}`)
    assert.equal(err.errno, err.code === 'ECONNRESET' ? -104 : -32)
    assert.match(err.syscall!, /^(read|send|splice)$/)
    assert.ok(c.proxyIn.destroyed && c.proxyOut.destroyed, 'proxy sockets destroyed')
    await within(otherSaw, 5000, 'the other end sees its connection end')
    await c.close()
    assertNothingLeft(fds)
  })
}

test('abort mid-stream: AbortError, sockets destroyed, nothing left', async () => {
  const fds = openFdTargets()
  const c = await chain()
  const ac = new AbortController()
  // A server that does not read: the relay is blocked on a full socket when aborted.
  c.server.pause()
  const r = relay(c.proxyIn, c.proxyOut, { signal: ac.signal }).then(
    () => assert.fail('resolved'),
    (err: Error) => err,
  )
  c.client.write(randomBytes(16 << 20, 8))
  await new Promise((resolve) => setTimeout(resolve, 50))
  ac.abort()
  const err = await within(r, 5000, 'relay after abort')
  assert.equal(err.name, 'AbortError')
  assert.equal((err as NodeJS.ErrnoException).code, 'ABORT_ERR')
  assert.ok(c.proxyIn.destroyed && c.proxyOut.destroyed)
  await c.close()
  assertNothingLeft(fds)
})

test('an aborted signal rejects before anything starts; the sockets stay usable', async () => {
  const c = await chain()
  const err = await relay(c.proxyIn, c.proxyOut, { signal: AbortSignal.abort() }).catch((e: Error) => e)
  assert.equal((err as Error).name, 'AbortError')
  const got = new Promise<Buffer>((resolve) => c.proxyIn.once('data', resolve))
  c.client.write('still here')
  assert.equal((await got).toString(), 'still here')
  await c.close()
})

test('a Node socket destroyed during the relay rejects with ERR_SOCKET_CLOSED', async () => {
  const fds = openFdTargets()
  const c = await chain()
  const r = relay(c.proxyIn, c.proxyOut).catch((e: NodeJS.ErrnoException) => e)
  await new Promise((resolve) => setTimeout(resolve, 10))
  c.proxyOut.destroy()
  const err = (await within(r, 5000, 'relay')) as NodeJS.ErrnoException
  assert.equal(err.code, 'ERR_SOCKET_CLOSED')
  await c.close()
  assertNothingLeft(fds)
})

test('length mode: exactly n bytes one way, then Node reads the following bytes itself', async () => {
  const fds = openFdTargets()
  for (const mechanism of MECHANISMS) {
    for (const buffered of [0, 1000, 40000]) {
      const c = await chain()
      const header = Buffer.from(`header ${mechanism} ${buffered}\n`)
      const body = randomBytes(3 << 20, buffered + 11)
      const after = Buffer.from('NEXT REQUEST follows the body\n')
      c.proxyIn.pause()
      // `buffered` bytes of the body (and the header) already sit in Node's buffer.
      c.client.write(Buffer.concat([header, body.subarray(0, buffered)]))
      while (c.proxyIn.readableLength < header.length + buffered) {
        c.proxyIn.read(0)
        await new Promise((resolve) => setTimeout(resolve, 2))
      }
      assert.deepEqual(c.proxyIn.read(header.length), header)
      const chunks: Buffer[] = []
      c.server.on('data', (d: Buffer) => chunks.push(d))
      const r = relay(c.proxyIn, c.proxyOut, { direction: 'a->b', length: body.length, mechanism })
      c.client.write(body.subarray(buffered))
      c.client.write(after)
      const result = await within(r, 10000, 'length relay')
      assert.deepEqual(result, { aToB: body.length, bToA: 0, mechanism })
      // The socket is Node's again: it reads exactly what followed the body.
      const next = await within(
        new Promise<Buffer>((resolve) => {
          const got: Buffer[] = []
          c.proxyIn.on('data', (d: Buffer) => {
            got.push(d)
            if (Buffer.concat(got).length >= after.length) resolve(Buffer.concat(got))
          })
          c.proxyIn.resume()
        }),
        5000,
        'Node reading after the relay',
      )
      assert.equal(next.toString(), after.toString())
      // proxyOut is still open and Node can write after the relayed bytes.
      c.proxyOut.write('tail')
      const all = await within(
        (async () => {
          while (Buffer.concat(chunks).length < body.length + 4) await new Promise((resolve) => setTimeout(resolve, 2))
          return Buffer.concat(chunks)
        })(),
        5000,
        'the server receiving body + tail',
      )
      assert.equal(sha256(all), sha256(Buffer.concat([body, Buffer.from('tail')])))
      await c.close()
    }
  }
  assertNothingLeft(fds)
})

test('length mode: a source that ends early rejects with ERR_STREAM_PREMATURE_CLOSE and err.bytes', async () => {
  const fds = openFdTargets()
  const c = await chain()
  const r = relay(c.proxyIn, c.proxyOut, { direction: 'a->b', length: 1000 }).catch((e: NodeJS.ErrnoException & { bytes: number }) => e)
  c.client.end(Buffer.alloc(600, 1))
  const err = (await within(r, 5000, 'relay')) as NodeJS.ErrnoException & { bytes: number }
  assert.equal(err.code, 'ERR_STREAM_PREMATURE_CLOSE')
  assert.equal(err.bytes, 600)
  await c.close()
  assertNothingLeft(fds)
})

test('one way until EOF: the destination is ended through Node; b->a direction too', async () => {
  const fds = openFdTargets()
  const c = await chain()
  const data = randomBytes(2 << 20, 12)
  const atClient = received(c.client)
  const r = relay(c.proxyIn, c.proxyOut, { direction: 'b->a' })
  c.server.end(data)
  assert.deepEqual(await within(r, 5000, 'relay'), { aToB: 0, bToA: data.length, mechanism: 'copy' })
  assert.equal(sha256(await atClient), sha256(data))
  await c.close()
  assertNothingLeft(fds)
})

test('1000 relays at once on loopback all finish', async () => {
  const fds = openFdTargets()
  const N = 1000
  const listener = net.createServer()
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', 1024, resolve))
  const port = (listener.address() as net.AddressInfo).port
  const accepted: net.Socket[] = []
  const waiters: Array<(s: net.Socket) => void> = []
  listener.on('connection', (s: net.Socket) => (waiters.length ? waiters.shift()!(s) : accepted.push(s)))
  const accept = () => new Promise<net.Socket>((resolve) => (accepted.length ? resolve(accepted.shift()!) : waiters.push(resolve)))
  const connect = async () => {
    const s = net.connect(port, '127.0.0.1')
    await new Promise((resolve) => s.once('connect', resolve))
    return [s, await accept()] as const
  }
  const started = Date.now()
  const sockets: net.Socket[] = []
  const runs: Array<Promise<void>> = []
  for (let i = 0; i < N; i++) {
    const [client, proxyIn] = await connect()
    const [proxyOut, server] = await connect()
    sockets.push(client, proxyIn, proxyOut, server)
    const up = Buffer.alloc(1000 + i, i & 0xff)
    const down = Buffer.alloc(2000 + i, (i * 7) & 0xff)
    const atServer = received(server)
    const atClient = received(client)
    const r = relay(proxyIn, proxyOut)
    client.end(up)
    server.end(down)
    runs.push(
      (async () => {
        const result = await r
        assert.equal(result.aToB, up.length)
        assert.equal(result.bToA, down.length)
        assert.ok((await atServer).equals(up))
        assert.ok((await atClient).equals(down))
      })(),
    )
  }
  await within(Promise.all(runs), 30000, '1000 relays')
  const elapsed = Date.now() - started
  listener.close()
  await Promise.all(sockets.map(closed))
  assertNothingLeft(fds)
  assert.ok(elapsed < 30000, `took ${elapsed} ms`)
})

test('refused: TLS sockets (ERR_ZEROCOPY_PROTOCOL_LAYER), bad options, the same socket twice', async () => {
  const { client, server } = await tcpPair()
  const secure = new tls.TLSSocket(client)
  const err = await relay(secure, server).catch((e: NodeJS.ErrnoException) => e)
  assert.equal((err as NodeJS.ErrnoException).code, 'ERR_ZEROCOPY_PROTOCOL_LAYER')
  const codes = async (p: Promise<unknown>) => ((await p.catch((e: NodeJS.ErrnoException) => e)) as NodeJS.ErrnoException).code
  assert.equal(await codes(relay(client, server, { length: 5 })), 'ERR_INVALID_ARG_VALUE')
  assert.equal(await codes(relay(client, server, { direction: 'up' as 'a->b' })), 'ERR_INVALID_ARG_VALUE')
  assert.equal(await codes(relay(client, server, { mechanism: 'toString' as 'copy' })), 'ERR_INVALID_ARG_VALUE')
  assert.equal(await codes(relay(client, server, { bufferSize: 100 })), 'ERR_OUT_OF_RANGE')
  assert.equal(await codes(relay(client, server, { direction: 'a->b', length: -1 })), 'ERR_OUT_OF_RANGE')
  assert.equal(await codes(relay(client, client)), 'ERR_INVALID_ARG_VALUE')
  assert.equal(await codes(relay(client, {} as net.Socket)), 'ERR_INVALID_ARG_TYPE')
  assert.equal(await codes(relay(client, 1.5)), 'ERR_OUT_OF_RANGE')
  // An fd that is not a stream socket is refused natively.
  const p = pipe()
  assert.equal(await codes(relay(client, p.readFd)), 'ERR_INVALID_FD_TYPE')
  closeQuietly(p.readFd)
  closeQuietly(p.writeFd)
  secure.destroy()
  await Promise.all([closed(client), closed(server)])
})

test("refused before anything moves, in the caller's names: a listening socket, a non-socket fd", async (t) => {
  const { client, server } = await tcpPair()
  const listener = net.createServer()
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
  t.after(() => listener.close())
  const refusal = async (p: Promise<unknown>) => (await within(p.then(() => undefined, (e: NodeJS.ErrnoException) => e), 3000, 'the refusal')) as NodeJS.ErrnoException
  let err = await refusal(relay(socketFd(listener as unknown as net.Socket), server))
  assert.equal(err.code, 'ERR_INVALID_FD_TYPE')
  assert.match(err.message, /"a" fd is a listening socket/)
  const p = pipe()
  err = await refusal(relay(p.readFd, server))
  assert.equal(err.code, 'ERR_INVALID_FD_TYPE')
  assert.match(err.message, /^The "a" fd is not a stream socket$/)
  closeQuietly(p.readFd)
  closeQuietly(p.writeFd)
  // Nothing moved: the other end is Node's, not destroyed, and still reads.
  assert.equal(server.destroyed, false)
  const got = new Promise<Buffer>((resolve) => server.once('data', resolve))
  client.write('still mine')
  assert.equal((await within(got, 5000, 'data')).toString(), 'still mine')
  await Promise.all([closed(client), closed(server)])
})

test('a socket already in a running relay is refused with ERR_INVALID_STATE', async (t) => {
  const c = await chain()
  const other = await chain()
  const r = relay(c.proxyIn, c.proxyOut)
  const code = async (p: Promise<unknown>) => ((await p.catch((e: NodeJS.ErrnoException) => e)) as NodeJS.ErrnoException).code
  assert.equal(await code(relay(c.proxyIn, other.proxyOut)), 'ERR_INVALID_STATE')
  assert.equal(await code(relay(other.proxyIn, c.proxyOut, { direction: 'a->b' })), 'ERR_INVALID_STATE')
  assert.equal(await code(receiveToFile(c.proxyIn, path.join(tempDir(t), 'f'))), 'ERR_INVALID_STATE')
  c.client.end('x')
  c.server.end('y')
  assert.deepEqual(await within(r, 5000, 'the first relay'), { aToB: 1, bToA: 1, mechanism: 'copy' })
  await Promise.all([c.close(), other.close()])
})

test('bytes Node still buffers for writing to the destination reach it before relayed ones', async () => {
  const fds = openFdTargets()
  const c = await chain()
  // The server does not read yet: Node's write buffer for proxyOut stays full.
  c.server.pause()
  const queued = randomBytes(8 << 20, 31)
  c.proxyOut.write(queued)
  assert.ok(c.proxyOut.writableLength > 0, 'Node holds bytes for proxyOut')
  const relayed = randomBytes(1 << 20, 32)
  const r = relay(c.proxyIn, c.proxyOut, { direction: 'a->b', length: relayed.length })
  c.client.write(relayed)
  const atServer = received(c.server)
  c.server.resume()
  assert.equal((await within(r, 10000, 'relay')).aToB, relayed.length)
  c.proxyOut.end()
  assert.equal(sha256(await atServer), sha256(Buffer.concat([queued, relayed])))
  await c.close()
  assertNothingLeft(fds)
})

test("Node's writes and end() made during a one-way relay wait for it, then go in order", async () => {
  const fds = openFdTargets()
  const c = await chain()
  const relayed = randomBytes(4 << 20, 41)
  const atServer = received(c.server)
  const r = relay(c.proxyIn, c.proxyOut, { direction: 'a->b', length: relayed.length })
  // Made while the relay runs: they must not mix with the relayed bytes.
  const written = new Promise<Error | null | undefined>((resolve) => c.proxyOut.write('after-1 ', resolve))
  c.proxyOut.end('after-2')
  await new Promise((resolve) => setTimeout(resolve, 20))
  c.client.write(relayed)
  assert.equal((await within(r, 10000, 'relay')).aToB, relayed.length)
  assert.equal(await within(written, 5000, 'the held write'), null)
  assert.equal(sha256(await within(atServer, 5000, 'the server')), sha256(Buffer.concat([relayed, Buffer.from('after-1 after-2')])))
  await c.close()
  assertNothingLeft(fds)
})

test('a write held by a relay that fails gets the error in its callback; no error event', async () => {
  const c = await chain()
  const r = relay(c.proxyIn, c.proxyOut).catch((e: Error) => e)
  const written = new Promise<Error | null | undefined>((resolve) => c.proxyOut.write('held', resolve))
  c.client.resetAndDestroy()
  const err = (await within(r, 5000, 'relay')) as NodeJS.ErrnoException
  assert.equal(err.code, 'ECONNRESET')
  assert.equal(((await within(written, 5000, 'the held write')) as NodeJS.ErrnoException)?.code, 'ERR_SOCKET_CLOSED')
  await c.close()
})

for (const mode of ['paused', 'flowing'] as const) {
  test(`allowHalfOpen false, bytes and FIN already read by Node (${mode}): the relay takes both, the other way flows until it ends`, async (t) => {
    const fds = openFdTargets()
    for (const mechanism of MECHANISMS) {
      // proxyIn as net.createServer() makes it: it ends its own side when it sees a FIN.
      const c = await chain({ proxyInHalfOpen: false })
      t.after(() => c.close())
      const up = randomBytes(12000, 51) // under the socket's read-ahead, so Node reads the FIN too
      const down = randomBytes(4 << 20, 52)
      const events: string[] = []
      for (const e of ['end', 'finish', 'close']) c.proxyIn.on(e, () => events.push(e))
      const atServer = received(c.server)
      const atClient = received(c.client)
      c.client.end(up)
      await within(untilNodeReadEof(c.proxyIn), 5000, 'Node reading the FIN')
      let seen = 0
      if (mode === 'flowing') {
        c.proxyIn.on('data', (d: Buffer) => (seen += d.length))
        c.proxyIn.resume()
      }
      const r = relay(c.proxyIn, c.proxyOut, { mechanism })
      // The client's bytes, then its FIN, reach the server as they would had the FIN come later.
      assert.equal(sha256(await within(atServer, 5000, 'the server seeing the FIN')), sha256(up))
      // Node saw no 'end' (so it did not end proxyIn either): a write now waits for the relay.
      assert.deepEqual([...events], [], 'no end, finish or close on proxyIn during the relay')
      assert.equal(c.proxyIn.writableEnded, false)
      const held = new Promise<Error | null | undefined>((resolve) => c.proxyIn.write('held', resolve))
      c.server.end(down)
      assert.deepEqual(await within(r, 10000, 'relay'), { aToB: up.length, bToA: down.length, mechanism })
      assert.equal(sha256(await within(atClient, 5000, 'the client')), sha256(down))
      assert.equal(((await within(held, 5000, 'the held write')) as NodeJS.ErrnoException)?.code, 'ERR_SOCKET_CLOSED')
      assert.ok(!events.includes('end'), `no 'end' on proxyIn: its EOF went to the relay (${events})`)
      assert.equal(seen, 0, "the 'data' listener saw none of the relayed bytes")
      await c.close()
    }
    assertNothingLeft(fds)
  })
}

for (const mode of ['paused', 'flowing'] as const) {
  test(`a 'data' listener sees none of the bytes the relay took from Node's buffer (${mode}); an unshifted head still goes first`, async (t) => {
    const fds = openFdTargets()
    for (const mechanism of MECHANISMS) {
      const c = await chain()
      t.after(() => c.close())
      const head = Buffer.from('CONNECT upstream:443 HTTP/1.1\r\n\r\n')
      const early = randomBytes(12000, 61)
      const late = randomBytes(1 << 20, 62)
      c.proxyIn.pause()
      c.client.write(Buffer.concat([head, early]))
      while (c.proxyIn.readableLength < head.length + early.length) {
        c.proxyIn.read(0)
        await new Promise((resolve) => setTimeout(resolve, 2))
      }
      c.proxyIn.unshift(c.proxyIn.read(head.length) as Buffer)
      // The application listens and (flowing) resumes; the relay call comes before Node emits.
      let seen = 0
      c.proxyIn.on('data', (d: Buffer) => (seen += d.length))
      if (mode === 'flowing') c.proxyIn.resume()
      const atServer = received(c.server)
      const r = relay(c.proxyIn, c.proxyOut, { mechanism })
      c.client.end(late)
      c.server.end()
      const all = Buffer.concat([head, early, late])
      assert.deepEqual(await within(r, 10000, 'relay'), { aToB: all.length, bToA: 0, mechanism })
      assert.equal(sha256(await within(atServer, 5000, 'the server')), sha256(all), 'every byte once, in order, the head first')
      assert.equal(seen, 0, "the 'data' listener saw none of the relayed bytes")
      await c.close()
    }
    assertNothingLeft(fds)
  })
}

test("relay() from inside a 'data' handler (pause, unshift the rest, resume): the listener sees only its first chunk", async (t) => {
  const fds = openFdTargets()
  for (const mechanism of MECHANISMS) {
    const c = await chain()
    t.after(() => c.close())
    const head = Buffer.from('CONNECT upstream:443 HTTP/1.1\r\n\r\n')
    const body = randomBytes(3 << 20, 65)
    const atServer = received(c.server)
    let seen = 0
    const started = new Promise<{ r: Promise<RelayResult> }>((resolve) => {
      c.proxyIn.on('data', (chunk: Buffer) => {
        seen += chunk.length
        if (seen !== chunk.length) return // a later chunk: the relay's bytes reached the listener
        const at = chunk.indexOf('\r\n\r\n') + 4
        seen -= chunk.length - at
        // The usual proxy hand-over; resume() schedules Node's flow before relay() can await.
        c.proxyIn.pause()
        c.proxyIn.unshift(chunk.subarray(at))
        c.proxyIn.resume()
        resolve({ r: relay(c.proxyIn, c.proxyOut, { direction: 'a->b', mechanism }) })
      })
    })
    c.client.end(Buffer.concat([head, body]))
    const { r } = await within(started, 5000, 'the first chunk')
    assert.deepEqual(await within(r, 10000, 'relay'), { aToB: body.length, bToA: 0, mechanism })
    assert.equal(sha256(await within(atServer, 5000, 'the server')), sha256(body))
    assert.equal(seen, head.length, "the 'data' listener saw the head only")
    await c.close()
  }
  assertNothingLeft(fds)
})

test("bytes arriving while the relay waits for Node's writes to the destination go through it, not to a 'data' listener", async (t) => {
  const fds = openFdTargets()
  const c = await chain()
  t.after(() => c.close())
  // The server does not read yet, so the relay waits for proxyOut's queued bytes.
  c.server.pause()
  const queued = randomBytes(8 << 20, 71)
  c.proxyOut.write(queued)
  assert.ok(c.proxyOut.writableLength > 0, 'Node holds bytes for proxyOut')
  let seen = 0
  c.proxyIn.on('data', (d: Buffer) => (seen += d.length))
  const r = relay(c.proxyIn, c.proxyOut, { direction: 'a->b' })
  const relayed = randomBytes(1 << 20, 72)
  c.client.end(relayed)
  await new Promise((resolve) => setTimeout(resolve, 50))
  const atServer = received(c.server)
  c.server.resume()
  assert.deepEqual(await within(r, 10000, 'relay'), { aToB: relayed.length, bToA: 0, mechanism: 'copy' })
  assert.equal(sha256(await within(atServer, 5000, 'the server')), sha256(Buffer.concat([queued, relayed])))
  assert.equal(seen, 0, "the 'data' listener saw none of the relayed bytes")
  await c.close()
  assertNothingLeft(fds)
})

test('a relay that fails before it starts puts the bytes (and a FIN) it took back: Node reads them, then ends', async (t) => {
  const fds = openFdTargets()
  const c = await chain({ proxyInHalfOpen: false })
  t.after(() => c.close())
  // The relay waits for proxyOut's queued bytes (the server does not read) and is aborted meanwhile.
  c.server.pause()
  c.proxyOut.write(randomBytes(8 << 20, 75))
  const head = randomBytes(200000, 74) // more than the read-ahead: a read(n) that large raises it
  const up = randomBytes(12000, 76)
  c.client.end(up)
  await within(untilNodeReadEof(c.proxyIn), 5000, 'Node reading the FIN')
  c.proxyIn.unshift(head)
  const highWaterMark = c.proxyIn.readableHighWaterMark
  let seen = 0
  c.proxyIn.on('data', (d: Buffer) => (seen += d.length))
  const ac = new AbortController()
  const r = relay(c.proxyIn, c.proxyOut, { signal: ac.signal }).catch((e: Error) => e)
  await new Promise((resolve) => setTimeout(resolve, 20))
  assert.equal(seen, 0, 'nothing emitted while the relay held the socket')
  const ended = new Promise<void>((resolve) => c.proxyIn.once('end', resolve))
  ac.abort()
  assert.equal(((await within(r, 5000, 'relay')) as Error).name, 'AbortError')
  assert.equal(c.proxyIn.readableHighWaterMark, highWaterMark, "Node's read-ahead as it was")
  // The socket is Node's again, as it was: the head, the bytes, then the end.
  const rest: Buffer[] = []
  c.proxyIn.on('data', (d: Buffer) => rest.push(d))
  c.proxyIn.resume()
  await within(ended, 5000, "'end' after the bytes")
  assert.equal(sha256(Buffer.concat(rest)), sha256(Buffer.concat([head, up])))
  assert.equal(seen, head.length + up.length)
  await c.close()
  assertNothingLeft(fds)
})

test('one way, FIN already read: Node ends the source afterwards as it would have; bytes after `length` stay Node\'s, then its end', async (t) => {
  const fds = openFdTargets()
  // Until EOF, allowHalfOpen false: after the relay Node emits 'end' and ends its own side.
  const c = await chain({ proxyInHalfOpen: false })
  t.after(() => c.close())
  const up = randomBytes(12000, 81)
  const atServer = received(c.server)
  const clientSawEnd = new Promise<void>((resolve) => c.client.once('end', resolve))
  c.client.end(up)
  await within(untilNodeReadEof(c.proxyIn), 5000, 'Node reading the FIN')
  const sourceEnded = new Promise<void>((resolve) => c.proxyIn.once('end', resolve))
  assert.deepEqual(await within(relay(c.proxyIn, c.proxyOut, { direction: 'a->b' }), 5000, 'relay'), { aToB: up.length, bToA: 0, mechanism: 'copy' })
  assert.equal(sha256(await within(atServer, 5000, 'the server')), sha256(up))
  c.proxyIn.resume()
  await within(sourceEnded, 5000, "'end' on the source after the relay")
  await within(clientSawEnd, 5000, 'Node ending proxyIn (allowHalfOpen false)')
  await c.close()
  // Length mode: what follows the relayed bytes, and then the EOF, are Node's again.
  const d = await chain()
  t.after(() => d.close())
  const body = randomBytes(9000, 82)
  const after = Buffer.from('the bytes after the body')
  d.client.end(Buffer.concat([body, after]))
  await within(untilNodeReadEof(d.proxyIn), 5000, 'Node reading the FIN')
  const atServer2 = received(d.server)
  assert.deepEqual(await within(relay(d.proxyIn, d.proxyOut, { direction: 'a->b', length: body.length }), 5000, 'relay'), { aToB: body.length, bToA: 0, mechanism: 'copy' })
  d.proxyOut.end()
  assert.equal(sha256(await within(atServer2, 5000, 'the server')), sha256(body))
  const rest = received(d.proxyIn)
  d.proxyIn.resume()
  assert.equal((await within(rest, 5000, 'Node reading the rest')).toString(), after.toString())
  assert.ok(d.proxyIn.readableEnded, "'end' after the rest")
  await d.close()
  assertNothingLeft(fds)
})

test("length mode from a 'readable' handler, FIN already read: the handler gets 'readable' for the bytes after `length`, then 'end'", async (t) => {
  const fds = openFdTargets()
  const c = await chain()
  t.after(() => c.close())
  const head = Buffer.from('HEAD\n')
  const body = randomBytes(9000, 85)
  const after = Buffer.from('the next message')
  const atServer = received(c.server)
  let relaying: Promise<RelayResult> | undefined
  let busy = false
  const rest: Buffer[] = []
  const ended = new Promise<void>((resolve) => c.proxyIn.once('end', resolve))
  c.client.end(Buffer.concat([head, body, after]))
  await within(untilNodeReadEof(c.proxyIn), 5000, 'Node reading the FIN')
  // A generic reader: on 'readable' it drains, unless its parser handed the body to a relay.
  c.proxyIn.on('readable', () => {
    if (busy) return
    if (relaying === undefined) {
      assert.deepEqual(c.proxyIn.read(head.length), head)
      busy = true
      relaying = relay(c.proxyIn, c.proxyOut, { direction: 'a->b', length: body.length })
      relaying.finally(() => (busy = false)).catch(() => {})
      return
    }
    for (let chunk; (chunk = c.proxyIn.read() as Buffer | null) !== null; ) rest.push(chunk)
  })
  await within(ended, 5000, "'end' on proxyIn")
  assert.deepEqual(await relaying, { aToB: body.length, bToA: 0, mechanism: 'copy' })
  assert.equal(Buffer.concat(rest).toString(), after.toString())
  c.proxyOut.end()
  assert.equal(sha256(await within(atServer, 5000, 'the server')), sha256(body))
  await c.close()
  assertNothingLeft(fds)
})
