// Regressions found reviewing the honest copy path and HTTP responses as targets
// (lib/stream-copy.ts, lib/http-response.ts). Each test failed on the code before its fix:
// - a Writable made with `new Writable({ write })` lost its own `_write` once the gate was
//   undone, and threw ERR_METHOD_NOT_IMPLEMENTED at its next write;
// - a wrapper someone put on res.write/res.end (middleware) was deleted when the lane let go;
// - `res.end()` issued at once after queueing the body made the response 'finish' before
//   the body was in the kernel: the keep-alive timer then started under the body, and a
//   client that stalled longer than keepAliveTimeout got a cut body;
// - an abort while the response waited for its turn (pipelining) did nothing until the
//   turn came, and then the headers (with Content-Length) went out with no body;
//   The same while it waited behind an earlier call on the same response;
// - a TLS send cut after part of it went (an abort) destroyed the TLS socket with a FIN: the
//   client saw a clean end after a cut body; now the TCP connection under it is reset;
// - an HTTP/2 send cut after part of it went destroyed the stream, which Node ends with
//   END_STREAM (RST code 0) when data is still queued: the client saw a clean end after a
//   cut body; now the stream is reset (RST_STREAM CANCEL);
// - on Node 24 and later a reset HTTP/2 stream never calls back a write in flight: an
//   aborted file send kept its file open for ever (its read loop waited on that write);
// - a 204 response got a Content-Length header, which RFC 9110 forbids (Node sends none);
// - a Writable-looking object (never constructed) or a write() that throws left the send
//   in the copier's queue for ever: close() never settled, and the error had no code.
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as http2 from 'node:http2'
import * as net from 'node:net'
import * as path from 'node:path'
import * as tls from 'node:tls'
import { Writable } from 'node:stream'
import { test } from 'node:test'
import { ZeroCopySocket, sendFileZeroCopy, sendZeroCopy } from '../lib'
import { native } from '../lib/native'
import { cert, key } from './fixtures/tls-cert'
import { randomBytes, tempDir } from './helpers'
import { parseResponses } from './http-util'
import { exitWatchdog, sleep, waitFor, within } from './regress-util'

exitWatchdog()

test("a Writable made with options keeps its own _write, _writev and _final after the copier lets go", async () => {
  const got: Buffer[] = []
  let finals = 0
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      got.push(Buffer.from(chunk))
      cb()
    },
    writev(chunks, cb) {
      for (const c of chunks) got.push(Buffer.from(c.chunk as Buffer))
      cb()
    },
    final(cb) {
      finals++
      cb()
    },
  })
  const zc = ZeroCopySocket.from(w)
  await zc.send(Buffer.from('copied '))
  await zc.close()
  // The gate is gone: the stream's own methods must be back, not the prototype's.
  assert.equal(Object.getOwnPropertyDescriptor(w, '_write')?.value, (w as unknown as { _write: unknown })._write)
  w.cork()
  w.write('after ')
  w.write('the send')
  w.uncork()
  await new Promise<void>((resolve, reject) => w.end(() => resolve()).on('error', reject))
  assert.equal(Buffer.concat(got).toString(), 'copied after the send')
  assert.equal(finals, 1)
})

async function listen(server: http.Server, t: { after(fn: () => unknown): void }): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => {
    server.closeAllConnections()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return (server.address() as net.AddressInfo).port
}

/** Reads a raw connection until it closes. */
function readAll(socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = []
  socket.on('data', (d: Buffer) => chunks.push(d))
  return new Promise<Buffer>((resolve) => socket.on('close', () => resolve(Buffer.concat(chunks))))
}

test('a wrapper already on res.write/res.end (middleware) survives the call', async (t) => {
  const calls: string[] = []
  let restored = false
  const port = await listen(
    http.createServer((_req, res) => {
      // What compression-style middleware does: own properties that call the prototype's.
      const write = res.write
      const end = res.end
      res.write = function (this: http.ServerResponse, ...args: unknown[]) {
        calls.push('write')
        return (write as (...a: unknown[]) => boolean).apply(this, args)
      } as typeof res.write
      res.end = function (this: http.ServerResponse, ...args: unknown[]) {
        calls.push('end')
        return (end as (...a: unknown[]) => http.ServerResponse).apply(this, args)
      } as typeof res.end
      const mine = { write: res.write, end: res.end }
      res.writeHead(200, { 'content-length': 9 })
      void sendZeroCopy(res, Buffer.from('body '), { end: false }).then(() => res.end('tail'))
      // Once nothing is held any more (the lane is empty), the wrappers are back.
      res.on('finish', () => (restored = res.write === mine.write && res.end === mine.end))
      res.write('') // made while the call waits: held, replayed through the wrapper
    }),
    t,
  )
  const c = net.connect(port, '127.0.0.1')
  c.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  const [r] = parseResponses(await within(5000, readAll(c), 'the response'))
  assert.equal(r?.body.toString(), 'body tail')
  assert.ok(restored, 'res.write and res.end are the wrappers again once the call is done')
  // The body too (issue 21 item 9: a replaced write path gets the body, as copies).
  assert.deepEqual(calls, ['write', 'write', 'end'], 'the body, the held write and the later end went through the wrapper')
})

test("a response 'finish'es only once its body is in the kernel (keep-alive timer, server.close)", async (t) => {
  const dir = tempDir(t)
  const bytes = randomBytes(16 << 20, 41)
  const file = path.join(dir, 'big')
  fs.writeFileSync(file, bytes)
  let finishedAt = -1
  let sent: Promise<unknown> | undefined
  const server = http.createServer((_req, res) => {
    res.on('finish', () => (finishedAt = performance.now()))
    sent = sendFileZeroCopy(res, file)
  })
  // Node arms keepAliveTimeout (+1 s) at 'finish'; a body still queued then would be cut
  // by the socket's destroy once the client stalls that long.
  server.keepAliveTimeout = 1
  const port = await listen(server, t)
  const c = net.connect(port, '127.0.0.1')
  const all = readAll(c)
  c.pause()
  c.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
  await waitFor('the call', () => sent !== undefined)
  await sleep(300)
  const resumedAt = performance.now()
  assert.equal(finishedAt, -1, "the response 'finish'ed while most of its body waited for the stalled client")
  c.resume()
  await within(10000, sent!, 'the body')
  assert.ok(finishedAt >= resumedAt)
  c.end()
  const [r] = parseResponses(await within(10000, all, 'the connection to close'))
  assert.ok(r?.body.equals(bytes), 'the whole body arrived')
})

test('an abort while the response waits for its turn rejects at once and leaves the response untouched', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'f')
  fs.writeFileSync(file, randomBytes(1000, 3))
  let first: http.ServerResponse | undefined
  let outcome: { error?: NodeJS.ErrnoException; ms: number } | undefined
  const server = http.createServer((req, res) => {
    if (req.url === '/hold') {
      first = res // answered later: the next response waits behind it
      return
    }
    const ac = new AbortController()
    const p = sendFileZeroCopy(res, file, { signal: ac.signal })
    const t0 = performance.now()
    p.then(
      () => (outcome = { ms: performance.now() - t0 }),
      (error: NodeJS.ErrnoException) => {
        outcome = { error, ms: performance.now() - t0 }
        res.end('instead') // the response is still ours to answer
      },
    )
    ac.abort()
  })
  const port = await listen(server, t)
  const c = net.connect(port, '127.0.0.1')
  const all = readAll(c)
  c.write('GET /hold HTTP/1.1\r\nHost: x\r\n\r\nGET /f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  await waitFor('the abort to settle the call', () => outcome !== undefined, 2000).catch(() => {})
  first!.end('one')
  assert.equal(outcome?.error?.name, 'AbortError', 'rejected before the turn came')
  assert.ok(outcome!.ms < 500, `rejected in ${outcome!.ms} ms`)
  const responses = parseResponses(await within(5000, all, 'the responses'))
  assert.deepEqual(
    responses.map((r) => r.body.toString()),
    ['one', 'instead'],
  )
})

test('an abort while the call waits behind an earlier one on the same response rejects at once and sends nothing', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'f')
  fs.writeFileSync(file, randomBytes(1000, 4))
  const big = randomBytes(16 << 20, 13)
  let outcome: { error?: NodeJS.ErrnoException; ms: number } | undefined
  let first: Promise<unknown> | undefined
  const server = http.createServer((_req, res) => {
    res.writeHead(200) // chunked
    // The client does not read yet: this call waits to be in the kernel.
    first = sendZeroCopy(res, big, { end: false }).finally(() => res.end())
    const ac = new AbortController()
    const t0 = performance.now()
    sendFileZeroCopy(res, file, { signal: ac.signal }).then(
      () => (outcome = { ms: performance.now() - t0 }),
      (error: NodeJS.ErrnoException) => (outcome = { error, ms: performance.now() - t0 }),
    )
    setTimeout(() => ac.abort(), 50)
  })
  const port = await listen(server, t)
  const c = net.connect(port, '127.0.0.1')
  c.pause()
  const all = readAll(c)
  c.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  await waitFor('the abort to settle the call', () => outcome !== undefined, 2000).catch(() => {})
  c.resume()
  assert.equal(outcome?.error?.name, 'AbortError', 'rejected while the earlier call still went')
  assert.ok(outcome!.ms < 1000, `rejected in ${outcome!.ms} ms`)
  await within(10000, first!, 'the earlier call')
  const [r] = parseResponses(await within(10000, all, 'the response'))
  assert.ok(r?.body.equals(big), 'the body is the earlier call\'s alone')
})

test('a TLS file send aborted after part of it went resets the TCP connection under it (no clean end after a cut body)', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'big')
  fs.writeFileSync(file, randomBytes(8 << 20, 8))
  let served: Promise<void> | undefined
  const server = tls.createServer({ key, cert }, (s) => {
    s.on('error', () => {})
    served = (async () => {
      const before = s.bytesWritten
      const ac = new AbortController()
      const p = sendFileZeroCopy(s, file, { signal: ac.signal })
      await waitFor('part of the file to go', () => s.bytesWritten > before + 512 * 1024)
      ac.abort()
      await assert.rejects(p, { name: 'AbortError' })
    })()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())))
  // The client over a TCP socket of our own, whose kernel state tells a reset (CLOSE) from
  // a FIN (CLOSE_WAIT): libuv reports either to a reader as its end of the stream.
  const raw = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  raw.on('error', () => {})
  const client = tls.connect({ socket: raw, ca: cert, servername: 'localhost' })
  let got = 0
  let how = 'open'
  let fd = -1 // the TCP fd (newer Node lines take the raw socket's handle when wrapping it)
  client.once('secureConnect', () => (fd = (client as unknown as { _handle: { fd: number } })._handle.fd))
  client.on('data', (d: Buffer) => (got += d.length))
  const ended = new Promise<void>((resolve) => {
    client.on('end', () => {
      const out = new Float64Array(2) // [bytes acknowledged, tcpi_state]
      if (how === 'open') how = fd >= 0 && native.tcpAckState(fd, out) === 0 && out[1] === 7 ? 'reset' : 'clean end'
      resolve()
    })
    client.on('error', (err: NodeJS.ErrnoException) => {
      if (how === 'open') how = err.code === 'ECONNRESET' ? 'reset' : `error ${err.code}`
      resolve()
    })
    client.on('close', () => resolve())
  })
  client.pause() // the file backs up until the abort
  await waitFor('the call', () => served !== undefined)
  await within(5000, served!, 'the abort')
  client.resume()
  await within(5000, ended, 'the client to see the end')
  client.destroy()
  assert.ok(got < 8 << 20, 'a cut body')
  assert.equal(how, 'reset', 'the client sees a reset (ECONNRESET, or an end with the TCP state CLOSE), not a FIN')
})

/**
 * An h2c server whose one stream runs `serve` (after respond()), and a client request
 * that does not read until `served` settles: the flow-control window stalls the stream.
 */
async function stalledH2(t: { after(fn: () => unknown): void }, serve: (stream: http2.ServerHttp2Stream) => Promise<void>) {
  let served: Promise<void> | undefined
  const server = http2.createServer()
  server.on('stream', (stream) => {
    stream.respond({ ':status': 200 })
    stream.on('error', () => {})
    served = serve(stream)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const session = http2.connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`)
  t.after(() => {
    session.destroy()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const req = session.request({ ':path': '/' })
  req.on('error', () => {})
  req.pause()
  return { req, served: () => waitFor('the call', () => served !== undefined).then(() => within(5000, served!, 'the abort')) }
}

test('an HTTP/2 file send aborted after part of it went resets the stream (no clean end after a cut body)', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'big')
  fs.writeFileSync(file, randomBytes(1 << 20, 12))
  const { req, served } = await stalledH2(t, async (stream) => {
    const ac = new AbortController()
    const p = sendFileZeroCopy(stream, file, { signal: ac.signal })
    await sleep(50) // the client does not read: the flow-control window (64 KiB) holds the rest
    ac.abort()
    await assert.rejects(p, { name: 'AbortError' })
  })
  let ended = false
  let got = 0
  req.on('data', (d: Buffer) => (got += d.length))
  req.on('end', () => (ended = true))
  const closed = new Promise<void>((resolve) => req.on('close', () => resolve()))
  await served()
  req.resume()
  await within(5000, closed, 'the client stream to close')
  assert.ok(got < 1 << 20, 'a cut body')
  // Node's client emits 'end' after a reset too, once it read what came before it: the
  // stream's RST code is what tells a cut body from a whole one.
  assert.equal(req.rstCode, http2.constants.NGHTTP2_CANCEL, `the stream was reset (RST_STREAM CANCEL), not ended (got ${got} B, 'end' ${ended})`)
})

test('an HTTP/2 file send aborted while a write waits for the flow-control window closes its file', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'stalled')
  fs.writeFileSync(file, randomBytes(128 << 10, 14))
  const { served } = await stalledH2(t, async (stream) => {
    const ac = new AbortController()
    const p = sendFileZeroCopy(stream, file, { signal: ac.signal })
    stream.write(randomBytes(1 << 20, 15)) // held behind the file
    await sleep(50) // the client does not read: the file's write waits for the window
    ac.abort()
    await assert.rejects(p, { name: 'AbortError' })
  })
  await served()
  const open = () => fs.readdirSync('/proc/self/fd').some((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`) === file
    } catch {
      return false
    }
  })
  await waitFor('the file to be closed', () => !open(), 2000)
})

test('a 204 response carries no Content-Length; a HEAD response says the length', async (t) => {
  const port = await listen(
    http.createServer((req, res) => {
      if (req.url === '/204') res.statusCode = 204
      void sendZeroCopy(res, Buffer.from('hello'))
    }),
    t,
  )
  const c = net.connect(port, '127.0.0.1')
  c.write('GET /204 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  const [noContent, head] = parseResponses(await within(5000, readAll(c), 'the responses'), new Set([0, 1]))
  assert.equal(noContent?.status, 204)
  assert.equal(noContent?.headers['content-length'], undefined)
  assert.equal(head?.headers['content-length'], '5')
})

test('a Writable-looking object or a write() that throws: a coded rejection, and close() settles', async () => {
  const unconstructed = Object.create(Writable.prototype) as Writable
  await assert.rejects(sendZeroCopy(unconstructed, Buffer.from('x')), { code: 'ERR_INVALID_ARG_TYPE' })
  const throwing = new Writable({ write: (_c, _e, cb) => cb() })
  throwing.write = () => {
    throw new Error('refused')
  }
  const zc = ZeroCopySocket.from(throwing)
  await assert.rejects(zc.send(Buffer.from('x')), /refused/)
  await within(1000, zc.close(), 'close() after a send whose write threw')
  assert.equal(zc.stats.unsent, 0)
})
