// TLS sockets take the honest copy path: every public call writes through the TLS socket
// (encrypted), never to its fd. A spy on the wire between client and server must never
// see the plaintext; the client must read exactly the bytes sent, in call order, with
// Node's own writes in between; buffers and files overwritten after each Promise
// resolved must not change what the client reads.
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'
import { test } from 'node:test'
import * as tls from 'node:tls'
import { ZeroCopySocket, sendFileZeroCopy, sendZeroCopy } from '../lib'
import { cert, key } from './fixtures/tls-cert'
import { randomBytes, tempDir } from './helpers'
import { waitFor, within } from './regress-util'
import { leaks, wireSpy } from './wire-spy'

/** A TLS server whose connection handler is `serve`, reached through a wire spy. */
async function tlsThroughSpy(t: { after(fn: () => unknown): void }, serve: (s: tls.TLSSocket) => Promise<void>) {
  let served: Promise<void> | undefined
  const server = tls.createServer({ key, cert }, (s) => {
    s.on('error', () => {})
    served = serve(s)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const spy = await wireSpy((server.address() as net.AddressInfo).port)
  t.after(async () => {
    await spy.close()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const client = tls.connect({ port: spy.port, host: '127.0.0.1', ca: cert, servername: 'localhost' })
  client.on('error', () => {})
  const chunks: Buffer[] = []
  client.on('data', (d: Buffer) => chunks.push(d))
  const ended = new Promise<void>((resolve) => client.on('close', () => resolve()))
  await new Promise<void>((resolve) => client.once('secureConnect', () => resolve()))
  return {
    spy,
    client,
    received: async () => {
      await within(10000, ended, 'the client to see the end')
      return Buffer.concat(chunks)
    },
    served: () => served!,
  }
}

test('every public call on a TLS socket sends encrypted copies, in call order with Node writes', async (t) => {
  const dir = tempDir(t)
  const secret = (n: number) => Buffer.concat([Buffer.from(`SECRET-${n}-`.repeat(8)), randomBytes(200_000 + n * 1000, n)])
  const a = secret(1)
  const b1 = secret(2)
  const b2 = secret(3)
  const c = secret(4)
  const fileBytes = secret(5)
  const file = path.join(dir, 'body')
  fs.writeFileSync(file, fileBytes)
  const want = Buffer.concat([Buffer.from('hello '), a, b1, b2, c, fileBytes, Buffer.from(' after the file'), Buffer.from(' bye')])
  const results: unknown[] = []
  const { spy, received, served } = await tlsThroughSpy(t, async (s) => {
    s.write('hello ')
    const zc = ZeroCopySocket.from(s)
    const r1 = zc.send(a)
    const r2 = zc.sendEach([b1, b2])
    const r3 = sendZeroCopy(s, c)
    const r4 = sendFileZeroCopy(s, file)
    s.write(' after the file') // a write made at once after a file send goes after the file
    for (const r of [r1, r2, r3, r4]) results.push(await r)
    // Released: overwriting the memory and the file must change nothing on the wire.
    for (const v of [a, b1, b2, c]) v.fill(0xee)
    fs.writeFileSync(file, Buffer.alloc(fileBytes.length, 0xee))
    assert.equal(zc.stats.mode, 'copy')
    assert.match(zc.stats.fallbackReason ?? '', /TLS/)
    await zc.close()
    s.end(' bye')
  })
  const got = await received()
  await served()
  assert.equal(got.length, want.length)
  assert.ok(got.equals(want), 'the client reads exactly the bytes sent, in call order')
  for (const r of results) {
    const res = r as { zeroCopy: boolean; copied: boolean; fallback?: string }
    assert.equal(res.zeroCopy, false)
    assert.equal(res.copied, true)
    assert.match(res.fallback ?? '', /TLS/)
  }
  assert.equal((results[3] as { mechanism: string }).mechanism, 'read+copy')
  const wire = spy.toClient()
  assert.ok(wire.length > want.length, 'the spy saw the TLS records')
  for (const s of [want.subarray(6, 6 + 96), fileBytes.subarray(0, 96)]) assert.ok(!wire.includes(s.subarray(0, 16)), 'no plaintext on the wire')
  for (const v of [secret(1), secret(2), secret(3), secret(4), secret(5)]) assert.ok(!leaks(wire, v), 'no window of any secret on the wire')
})

test('a TLS file send aborted before its turn leaves the socket usable; aborted midway it destroys it', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'big')
  fs.writeFileSync(file, randomBytes(8 << 20, 9))
  const { client, received, served } = await tlsThroughSpy(t, async (s) => {
    s.cork() // keeps the marker of the first send behind Node's buffer until uncork
    s.write('head ')
    const ac = new AbortController()
    const early = sendFileZeroCopy(s, file, { signal: ac.signal })
    ac.abort()
    await assert.rejects(early, { name: 'AbortError' })
    s.uncork()
    await sendZeroCopy(s, Buffer.from('still usable '))
    // The client reads nothing now, so the file backs up; abort once part of it went.
    client.pause()
    const before = s.bytesWritten
    const ac2 = new AbortController()
    const mid = sendFileZeroCopy(s, file, { signal: ac2.signal })
    await waitFor('part of the file to go', () => s.bytesWritten > before + 256 * 1024)
    ac2.abort()
    await assert.rejects(mid, { name: 'AbortError' })
    client.resume()
    assert.ok(s.destroyed, 'a cut body closes the connection')
  })
  const got = await received()
  await served()
  assert.ok(got.subarray(0, 18).equals(Buffer.from('head still usable ')))
  assert.ok(got.length < 18 + (8 << 20), 'the peer got a cut body, not the whole file')
})

test('a TLS socket closed under a send rejects it; later sends reject at once; nothing hangs', async (t) => {
  const { served } = await tlsThroughSpy(t, async (s) => {
    const big = randomBytes(32 << 20, 3)
    const p = sendZeroCopy(s, big)
    s.destroy()
    await within(5000, assert.rejects(p), 'the send to reject')
    await within(1000, assert.rejects(sendZeroCopy(s, Buffer.from('x')), { code: 'ERR_SOCKET_CLOSED' }), 'a later send to reject')
  })
  await within(10000, served(), 'the server side')
})
