// Sources the kernel cannot map: a sysfs attribute (size 4096, mmap refuses it), a /proc
// file (size 0), a FIFO, and a directory. Whatever fs.read reads goes as read+copy, and
// the result says so; as an HTTP response body it gets its real length, never the
// size stat claims; a directory is refused (EISDIR) before any header goes.
import * as assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as path from 'node:path'
import { test } from 'node:test'
import * as tls from 'node:tls'
import { sendFileZeroCopy } from '../lib'
import { cert, key } from './fixtures/tls-cert'
import { collect, tcpPair, tempDir } from './helpers'
import { parseResponses } from './http-util'
import { within } from './regress-util'

const SYSFS = '/sys/devices/system/cpu/online'
const PROC = '/proc/version'

test('a sysfs attribute on a socket goes as read+copy, its real bytes', { timeout: 10000 }, async (t) => {
  const want = fs.readFileSync(SYSFS)
  assert.equal(fs.statSync(SYSFS).size, 4096, 'stat claims a page')
  const pair = await tcpPair()
  t.after(() => pair.close())
  const got = collect(pair.server)
  const r = await within(5000, sendFileZeroCopy(pair.client, SYSFS), 'the send')
  pair.client.end()
  assert.ok((await got).equals(want))
  assert.equal(r.bytes, want.length)
  assert.equal(r.mechanism, 'read+copy')
  assert.equal(r.zeroCopy, false)
  assert.match(r.fallback ?? '', /cannot be mapped/)
})

test('a sysfs attribute through TLS goes whole, not cut at the size stat claims', { timeout: 10000 }, async (t) => {
  const want = fs.readFileSync(SYSFS)
  const server = tls.createServer({ key, cert })
  const received = new Promise<Buffer>((resolve) =>
    server.on('secureConnection', (s) => {
      const chunks: Buffer[] = []
      s.on('data', (d: Buffer) => chunks.push(d))
      s.on('end', () => resolve(Buffer.concat(chunks)))
    }),
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => server.close())
  const client = tls.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', rejectUnauthorized: false })
  t.after(() => client.destroy())
  await new Promise((resolve) => client.once('secureConnect', resolve))
  const r = await within(5000, sendFileZeroCopy(client, SYSFS), 'the send')
  client.end()
  assert.ok((await within(5000, received, 'the bytes')).equals(want))
  assert.equal(r.bytes, want.length)
})

test('a directory on a socket is refused with EISDIR and nothing goes', { timeout: 10000 }, async (t) => {
  const pair = await tcpPair()
  t.after(() => pair.close())
  const got = collect(pair.server)
  await assert.rejects(sendFileZeroCopy(pair.client, tempDir(t)), (err: NodeJS.ErrnoException) => err.code === 'EISDIR' && err.errno === -21)
  pair.client.end('after')
  assert.equal((await got).toString(), 'after')
})

/** A server whose handler sends `source(url)` as the body, answering 500 with the code if it rejects before the headers went. */
async function fileServer(t: { after(fn: () => unknown): void }, source: (url: string) => string): Promise<{ port: number; results: unknown[] }> {
  const results: unknown[] = []
  const server = http.createServer((req, res) => {
    sendFileZeroCopy(res, source(req.url!)).then(
      (r) => results.push(r),
      (err: NodeJS.ErrnoException) => {
        results.push(err)
        if (res.headersSent) return
        res.statusCode = 500
        res.end(`refused:${err.code}`)
      },
    )
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => {
    server.closeAllConnections()
    server.close()
  })
  return { port: (server.address() as net.AddressInfo).port, results }
}

async function get(port: number, urls: string[]): Promise<ReturnType<typeof parseResponses>> {
  const socket = net.connect(port, '127.0.0.1')
  const chunks: Buffer[] = []
  socket.on('data', (d: Buffer) => chunks.push(d))
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
  socket.on('error', () => {})
  socket.write(urls.map((u, i) => `GET ${u} HTTP/1.1\r\nHost: x\r\n${i === urls.length - 1 ? 'Connection: close\r\n' : ''}\r\n`).join(''))
  await within(5000, closed, 'the responses')
  return parseResponses(Buffer.concat(chunks))
}

test('HTTP: sysfs and /proc bodies get their real length; a directory is refused before the headers', { timeout: 15000 }, async (t) => {
  const dir = tempDir(t)
  const { port, results } = await fileServer(t, (url) => ({ '/sys': SYSFS, '/proc': PROC, '/dir': dir })[url]!)
  const got = await get(port, ['/sys', '/proc', '/dir', '/sys'])
  assert.deepEqual(
    got.map((r) => r.status),
    [200, 200, 500, 200],
  )
  assert.ok(got[0]!.body.equals(fs.readFileSync(SYSFS)), 'the sysfs bytes')
  assert.equal(got[0]!.headers['content-length'], String(fs.readFileSync(SYSFS).length))
  assert.ok(got[1]!.body.equals(fs.readFileSync(PROC)), 'the /proc bytes')
  assert.equal(got[2]!.body.toString(), 'refused:EISDIR')
  const sent = results.filter((r) => !(r instanceof Error)) as Array<{ mechanism: string; fallback?: string }>
  assert.equal(sent.length, 3)
  for (const r of sent) {
    assert.equal(r.mechanism, 'read+copy')
    assert.match(r.fallback ?? '', /cannot be mapped/)
  }
})

test('HTTP: a FIFO without options.length is read to its end and gets a Content-Length', { timeout: 15000 }, async (t) => {
  const dir = tempDir(t)
  const fifo = path.join(dir, 'fifo')
  execFileSync('mkfifo', [fifo])
  const { port } = await fileServer(t, () => fifo)
  const body = Buffer.from('fifo bytes '.repeat(1000))
  const writer = new Promise<void>((resolve, reject) => fs.writeFile(fifo, body, (err) => (err ? reject(err) : resolve())))
  const got = await get(port, ['/fifo'])
  await writer
  assert.equal(got[0]!.status, 200)
  assert.ok(got[0]!.body.equals(body))
  assert.equal(got[0]!.headers['content-length'], String(body.length))
})
