// HTTP responses as targets: sendFileZeroCopy(res, file) and sendZeroCopy(res, data) on
// http and https servers. Pipelined requests (a queued response has no socket until the
// earlier ones finished), keep-alive reuse, HEAD, chunked bodies, and a write made at
// once after a file send; over HTTPS a spy on the wire sees no plaintext.
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as https from 'node:https'
import * as net from 'node:net'
import * as path from 'node:path'
import { test } from 'node:test'
import * as tls from 'node:tls'
import { sendFileZeroCopy, sendZeroCopy } from '../lib'
import { cert, key } from './fixtures/tls-cert'
import { randomBytes, tempDir } from './helpers'
import { within } from './regress-util'
import { parseResponses, pipelined } from './http-util'
import { leaks, wireSpy } from './wire-spy'

interface Site {
  files: Map<string, Buffer>
  data: Buffer
  handler: http.RequestListener
  results: unknown[]
}

/** Routes: /file/<name> (sendFileZeroCopy), /data (sendZeroCopy), /then-write, /chunked. */
function site(dir: string): Site {
  const files = new Map<string, Buffer>()
  for (const [name, size] of [
    ['a', 1_000_000],
    ['b', 3 << 20],
    ['c', 12345],
    ['empty', 0],
  ] as const) {
    const bytes = randomBytes(size, name.charCodeAt(0))
    fs.writeFileSync(path.join(dir, name), bytes)
    files.set(name, bytes)
  }
  const data = Buffer.concat([Buffer.from('SECRET-DATA-'.repeat(10)), randomBytes(300_000, 77)])
  const results: unknown[] = []
  const handler: http.RequestListener = (req, res) => {
    const url = req.url ?? '/'
    const done = (p: Promise<unknown>) =>
      p.then(
        (r) => results.push(r),
        (err: Error) => results.push(err),
      )
    res.setHeader('x-url', url)
    if (url.startsWith('/file/')) {
      // Delays that differ per file make later responses ready before earlier ones.
      const name = url.slice(6)
      setTimeout(() => done(sendFileZeroCopy(res, path.join(dir, name))), name === 'a' ? 30 : 0)
    } else if (url === '/data') {
      done(sendZeroCopy(res, Buffer.from(data)))
    } else if (url === '/then-write') {
      res.writeHead(200) // no Content-Length: chunked
      done(sendFileZeroCopy(res, path.join(dir, 'c'), { end: false }))
      res.write(' and then a write')
      res.end(' and the end')
    } else if (url === '/chunked') {
      res.writeHead(200)
      done(sendZeroCopy(res, data.subarray(0, 1000), { end: false }))
      done(sendZeroCopy(res, data.subarray(1000), { end: false }).then((r) => (res.end(), r)))
    } else {
      res.writeHead(404).end()
    }
  }
  return { files, data, handler, results }
}

async function listen(server: net.Server, t: { after(fn: () => unknown): void }): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => {
    ;(server as http.Server).closeAllConnections?.()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return (server.address() as net.AddressInfo).port
}

const PIPELINE = ['GET /file/a', 'GET /file/b', 'GET /data', 'HEAD /file/b', 'GET /file/empty', 'GET /file/c']

function checkPipeline(got: Buffer, s: Site): void {
  const responses = parseResponses(got, new Set([3]))
  assert.equal(responses.length, PIPELINE.length, 'every pipelined request answered')
  const want = [s.files.get('a')!, s.files.get('b')!, s.data, Buffer.alloc(0), Buffer.alloc(0), s.files.get('c')!]
  responses.forEach((r, i) => {
    assert.equal(r.status, 200)
    assert.equal(r.headers['x-url'], PIPELINE[i].split(' ')[1], `response ${i} in request order`)
    assert.ok(r.body.equals(want[i]), `response ${i} byte-exact`)
  })
  assert.equal(responses[3].headers['content-length'], String(s.files.get('b')!.length), 'HEAD says the length')
}

test('HTTP: pipelined GETs answered in order, each body byte-exact, zero-copy on plain TCP', async (t) => {
  const s = site(tempDir(t))
  const port = await listen(http.createServer(s.handler), t)
  const got = await pipelined(() => net.connect(port, '127.0.0.1'), PIPELINE)
  checkPipeline(got, s)
  const files = s.results.filter((r) => (r as { windows?: number }).windows !== undefined && (r as { bytes: number }).bytes > 0)
  for (const r of files) assert.match((r as { mechanism: string }).mechanism, /^mmap\+(msg_zerocopy|io_uring)$/)
  assert.ok(s.results.every((r) => !(r instanceof Error)), 'no call rejected')
})

test('HTTPS: pipelined GETs complete and exact, and the spy sees no plaintext', async (t) => {
  const s = site(tempDir(t))
  const port = await listen(https.createServer({ key, cert }, s.handler), t)
  const spy = await wireSpy(port)
  t.after(() => spy.close())
  const got = await pipelined(() => tls.connect({ port: spy.port, host: '127.0.0.1', ca: cert, servername: 'localhost' }), PIPELINE)
  checkPipeline(got, s)
  const wire = spy.toClient()
  for (const secret of [s.files.get('a')!, s.files.get('b')!, s.data]) assert.ok(!leaks(wire, secret), 'no plaintext body on the wire')
  for (const r of s.results) assert.match((r as { fallback?: string }).fallback ?? 'none', /TLS|no body|empty body/)
})

for (const secure of [false, true]) {
  test(`${secure ? 'HTTPS' : 'HTTP'}: keep-alive reuse, a write at once after a file send, chunked bodies`, async (t) => {
    const s = site(tempDir(t))
    const server = secure ? https.createServer({ key, cert }, s.handler) : http.createServer(s.handler)
    const port = await listen(server, t)
    const agent = new (secure ? https : http).Agent({ keepAlive: true, maxSockets: 1 })
    t.after(() => agent.destroy())
    const get = (p: string) =>
      new Promise<{ body: Buffer; reused: boolean }>((resolve, reject) => {
        const req = (secure ? https : http).get({ host: '127.0.0.1', port, path: p, agent, ca: cert, servername: 'localhost' }, (res) => {
          const chunks: Buffer[] = []
          res.on('data', (d: Buffer) => chunks.push(d))
          res.on('end', () => resolve({ body: Buffer.concat(chunks), reused: req.reusedSocket }))
          res.on('error', reject)
        })
        req.on('error', reject)
      })
    const order = ['/file/b', '/then-write', '/data', '/chunked', '/file/c', '/file/a']
    const want = [
      s.files.get('b')!,
      Buffer.concat([s.files.get('c')!, Buffer.from(' and then a write and the end')]),
      s.data,
      s.data,
      s.files.get('c')!,
      s.files.get('a')!,
    ]
    for (let i = 0; i < order.length; i++) {
      const r = await within(10000, get(order[i]), order[i])
      assert.ok(r.body.equals(want[i]), `${order[i]} byte-exact`)
      if (i > 0) assert.equal(r.reused, true, `${order[i]} reused the keep-alive connection`)
    }
    assert.ok(s.results.every((r) => !(r instanceof Error)), 'no call rejected')
  })
}

test('a response whose connection closes while it waits for its turn rejects; nothing hangs', async (t) => {
  const dir = tempDir(t)
  fs.writeFileSync(path.join(dir, 'f'), randomBytes(1000, 5))
  const pending: Promise<unknown>[] = []
  let first: http.ServerResponse | undefined
  const server = http.createServer((req, res) => {
    if (req.url === '/hold') {
      first = res // never answered: the next response waits behind it
      return
    }
    pending.push(sendFileZeroCopy(res, path.join(dir, 'f')))
  })
  const port = await listen(server, t)
  const c = net.connect(port, '127.0.0.1')
  c.on('error', () => {})
  c.write('GET /hold HTTP/1.1\r\nHost: x\r\n\r\nGET /f HTTP/1.1\r\nHost: x\r\n\r\n')
  await within(5000, (async () => {
    while (pending.length === 0) await new Promise((r) => setTimeout(r, 5))
  })(), 'the second request')
  c.destroy()
  await within(5000, assert.rejects(pending[0], { code: 'ERR_SOCKET_CLOSED' }), 'the queued response to reject')
  assert.ok(first)
})

test('a Content-Length that disagrees with the body rejects before anything is sent', async (t) => {
  let outcome: unknown
  const server = http.createServer((_req, res) => {
    res.setHeader('content-length', 5)
    sendZeroCopy(res, Buffer.from('four')).then(
      () => (outcome = 'resolved'),
      (err: NodeJS.ErrnoException) => {
        outcome = err.code
        res.destroy()
      },
    )
  })
  const port = await listen(server, t)
  await new Promise<void>((resolve) => http.get({ port, host: '127.0.0.1' }).on('error', () => resolve()).on('response', () => resolve()))
  assert.equal(outcome, 'ERR_HTTP_CONTENT_LENGTH_MISMATCH')
})
