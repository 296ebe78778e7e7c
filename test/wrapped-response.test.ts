// Responses whose write path a middleware replaced (Express's compression(), a
// hand-written wrapper): sendFileZeroCopy(res)/sendZeroCopy(res) send the body through
// that path as copies, so the client gets what the middleware makes of it (valid gzip
// of the file when it says Content-Encoding: gzip), and the result says so. A response
// nobody wrapped still goes zero-copy.
import * as assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as path from 'node:path'
import { test } from 'node:test'
import * as zlib from 'node:zlib'
import compression from 'compression'
import express from 'express'
import { sendFileZeroCopy, sendZeroCopy } from '../lib'
import { randomBytes, tempDir } from './helpers'
import { waitFor, within } from './regress-util'

/** A GET on a fresh connection: status, headers and the raw (undecoded) body. */
function get(port: number, url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return within(
    8000,
    new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: url, headers, agent: false }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (d: Buffer) => chunks.push(d))
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }))
        res.on('error', reject)
      })
      req.on('error', reject)
    }),
    `GET ${url}`,
  )
}

async function listen(t: { after(fn: () => unknown): void }, handler: http.RequestListener): Promise<number> {
  const server = http.createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => {
    server.closeAllConnections()
    server.close()
  })
  return (server.address() as net.AddressInfo).port
}

// Text compresses well; random bytes make a wrong gunzip show.
const text = Buffer.concat([Buffer.from('zero-copy '.repeat(20000)), randomBytes(50000, 3)])

test('Express + compression(): the file and the buffer arrive as valid gzip of themselves', { timeout: 20000 }, async (t) => {
  const file = path.join(tempDir(t), 'text.txt')
  fs.writeFileSync(file, text)
  const results: Array<{ mechanism: string; copied: boolean; fallback?: string; bytes: number }> = []
  const app = express()
  app.use(compression())
  app.get('/file', (_req, res) => {
    res.type('text/plain')
    sendFileZeroCopy(res, file).then((r) => results.push(r), (err) => results.push(err))
  })
  app.get('/buffer', (_req, res) => {
    res.type('text/plain')
    sendZeroCopy(res, text).then((r) => results.push(r), (err) => results.push(err))
  })
  const port = await listen(t, app)
  for (const url of ['/file', '/buffer']) {
    const got = await get(port, url, { 'accept-encoding': 'gzip' })
    assert.equal(got.status, 200)
    assert.equal(got.headers['content-encoding'], 'gzip', `${url}: compressed`)
    assert.ok(zlib.gunzipSync(got.body).equals(text), `${url}: the gzip holds the body`)
    assert.ok(got.body.length < text.length, `${url}: smaller than the body`)
  }
  assert.equal(results.length, 2)
  for (const r of results) {
    assert.equal(r.copied, true)
    assert.equal(r.bytes, text.length)
    assert.match(r.fallback ?? '', /write path/)
  }
  assert.equal(results[0]!.mechanism, 'read+copy')
  assert.equal(results[1]!.mechanism, 'copy')
  // Without Accept-Encoding compression() passes the body through: it still arrives whole.
  const plain = await get(port, '/file')
  assert.equal(plain.headers['content-encoding'], undefined)
  assert.ok(plain.body.equals(text))
})

test('a hand-written wrapper of write/end sees every byte, in order, and its end', { timeout: 20000 }, async (t) => {
  const file = path.join(tempDir(t), 'bytes')
  const data = randomBytes(700000, 4)
  fs.writeFileSync(file, data)
  const results: unknown[] = []
  const port = await listen(t, (req, res) => {
    // Frames each chunk with its length and ends with a count: a body transform that
    // a byte sent around it would break.
    const write = res.write.bind(res) as (chunk: Buffer) => boolean
    const end = res.end.bind(res) as (chunk?: string) => http.ServerResponse
    let chunks = 0
    res.write = ((chunk: Buffer) => {
      chunks++
      return write(Buffer.concat([Buffer.from(`<${chunk.length}>`), chunk]))
    }) as typeof res.write
    res.end = ((chunk?: unknown) => {
      if (chunk !== undefined && typeof chunk !== 'function') res.write(chunk as Buffer)
      return end(`<end ${chunks}>`)
    }) as typeof res.end
    const sent = req.url === '/file' ? sendFileZeroCopy(res, file) : sendZeroCopy(res, data)
    sent.then((r) => results.push(r), (err) => results.push(err))
  })
  for (const url of ['/file', '/buffer']) {
    const got = await get(port, url)
    const body = got.body.toString('latin1')
    const frames = [...body.matchAll(/<(\d+)>/g)]
    assert.ok(frames.length >= 1, `${url}: the wrapper framed the chunks`)
    let at = 0
    const parts: Buffer[] = []
    for (;;) {
      const m = /^<(\d+)>/.exec(body.slice(at))
      if (m === null) break
      at += m[0].length
      parts.push(got.body.subarray(at, at + Number(m[1])))
      at += Number(m[1])
    }
    assert.ok(Buffer.concat(parts).equals(data), `${url}: every byte went through the wrapper`)
    assert.equal(body.slice(at), `<end ${parts.length}>`, `${url}: then its end`)
  }
  assert.equal(results.length, 2)
  for (const r of results as Array<{ copied: boolean; fallback?: string }>) {
    assert.equal(r.copied, true)
    assert.match(r.fallback ?? '', /write path/)
  }
})

test('an unwrapped response (Express alone) still goes zero-copy', { timeout: 20000 }, async (t) => {
  const file = path.join(tempDir(t), 'f')
  fs.writeFileSync(file, text)
  let result: { mechanism: string } | undefined
  const app = express()
  app.get('/file', (_req, res) => {
    sendFileZeroCopy(res, file).then((r) => (result = r))
  })
  const port = await listen(t, app)
  const got = await get(port, '/file')
  assert.ok(got.body.equals(text))
  assert.equal(got.headers['content-length'], String(text.length))
  await waitFor('the send to settle', () => result !== undefined)
  assert.match(result!.mechanism, /^mmap\+/)
})

test('compression(): a body that waits for drain many times leaves no listener on the gzip stream', { timeout: 20000 }, async (t) => {
  // compression() routes res.on('drain') to its gzip stream, but res.removeListener()
  // only looks at res: a listener added and removed per wait would stay on the stream.
  const file = path.join(tempDir(t), 'random')
  fs.writeFileSync(file, randomBytes(4 << 20, 5))
  // The gzip stream compression() makes, seen when a listener is added to it (zlib's
  // exports are read-only; its classes' prototypes are not).
  const gzips = new Set<zlib.Gzip>()
  const proto = zlib.Gzip.prototype as unknown as { on: (...args: unknown[]) => unknown }
  const on = proto.on
  proto.on = function (this: zlib.Gzip, ...args: unknown[]) {
    gzips.add(this)
    return on.apply(this, args)
  }
  t.after(() => void delete (proto as { on?: unknown }).on)
  const warnings: Error[] = []
  const onWarning = (w: Error) => warnings.push(w)
  process.on('warning', onWarning)
  t.after(() => void process.removeListener('warning', onWarning))
  const results: Array<{ bytes: number; calls: number }> = []
  const app = express()
  app.use(compression({ threshold: 0, level: 1 }))
  app.get('/file', (_req, res) => {
    res.type('text/plain')
    sendFileZeroCopy(res, file, { end: false })
      .then(() => sendZeroCopy(res, randomBytes(1 << 20, 6)))
      .then((r) => results.push(r), (err) => results.push(err))
  })
  const port = await listen(t, app)
  const got = await get(port, '/file', { 'accept-encoding': 'gzip' })
  assert.equal(zlib.gunzipSync(got.body).length, 5 << 20)
  await waitFor('the sends to settle', () => results.length === 1)
  assert.equal(results[0]!.bytes, 1 << 20, String(results[0]))
  assert.equal(gzips.size, 1)
  const [gz] = gzips
  // compression()'s own listener (it re-emits the stream's 'drain' on res) and one of this package's at most.
  assert.ok(gz!.listenerCount('drain') <= 2, `drain listeners left on the gzip stream: ${gz!.listenerCount('drain')}`)
  assert.deepEqual(warnings.map(String).filter((w) => /MaxListeners/.test(w)), [])
})

test('HEAD, 204 and 304 through a replaced write path send no body: nothing goes through it, and the result says bytes 0', { timeout: 20000 }, async (t) => {
  const file = path.join(tempDir(t), 'f')
  fs.writeFileSync(file, text)
  const results = new Map<string, { bytes: number; fallback?: string }>()
  const seen = new Map<string, number>()
  const app = express()
  app.use(compression({ threshold: 0 }))
  app.use((req, res, next) => {
    // Counts what goes through the write path (compression()'s, under this one).
    const write = res.write.bind(res) as (...args: unknown[]) => boolean
    seen.set(`${req.method} ${req.url}`, 0)
    res.write = ((chunk: Buffer, ...rest: unknown[]) => {
      seen.set(`${req.method} ${req.url}`, seen.get(`${req.method} ${req.url}`)! + chunk.length)
      return write(chunk, ...rest)
    }) as typeof res.write
    next()
  })
  app.all('/:status', (req, res) => {
    res.status(Number(req.params.status))
    res.type('text/plain')
    const sent = req.query.buffer !== undefined ? sendZeroCopy(res, text) : sendFileZeroCopy(res, file)
    sent.then((r) => results.set(`${req.method} ${req.url}`, r), (err) => results.set(`${req.method} ${req.url}`, err))
  })
  const port = await listen(t, app)
  const ask = (method: string, url: string) =>
    within(
      8000,
      new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, method, path: url, headers: { 'accept-encoding': 'gzip' }, agent: false }, (res) => {
          const chunks: Buffer[] = []
          res.on('data', (d: Buffer) => chunks.push(d))
          res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks) }))
        })
        req.on('error', reject)
        req.end()
      }),
      `${method} ${url}`,
    )
  for (const [method, url] of [['HEAD', '/200'], ['GET', '/304'], ['GET', '/204'], ['HEAD', '/200?buffer'], ['GET', '/304?buffer']] as const) {
    const got = await ask(method, url)
    const key = `${method} ${url}`
    assert.equal(got.status, Number(url.slice(1, 4)), key)
    assert.equal(got.body.length, 0, key)
    await waitFor(`${key} to settle`, () => results.has(key))
    const r = results.get(key)!
    assert.equal(r.bytes, 0, `${key}: ${String((r as unknown as Error).message ?? '')}`)
    assert.match(r.fallback ?? '', /no body/, key)
    assert.equal(seen.get(key), 0, `${key}: bytes written through the write path`)
  }
  // A GET with a body still goes through it.
  const got = await ask('GET', '/200')
  assert.ok(zlib.gunzipSync(got.body).equals(text))
  await waitFor('GET /200 to settle', () => results.has('GET /200'))
  assert.equal(results.get('GET /200')!.bytes, text.length)
})
