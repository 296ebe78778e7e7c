// HTTP/2: a response or stream is framed by its session, so sends go through the stream
// as copies; the session's socket itself has no honest path and is refused with a
// coded error (it used to take raw bytes into the HTTP/2 connection). Over TLS a spy on
// the wire sees no plaintext; the client gets full, byte-exact responses, many at once.
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as http2 from 'node:http2'
import type * as net from 'node:net'
import * as path from 'node:path'
import { test } from 'node:test'
import { ZeroCopySocket, sendFileZeroCopy, sendZeroCopy } from '../lib'
import { cert, key } from './fixtures/tls-cert'
import { randomBytes, tempDir } from './helpers'
import { within } from './regress-util'
import { leaks, wireSpy } from './wire-spy'

interface Served {
  results: Array<{ url: string; value: unknown }>
  file: Buffer
  data: Buffer
}

function handler(dir: string): { served: Served; onRequest: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void } {
  const file = Buffer.concat([Buffer.from('SECRET-FILE-'.repeat(8)), randomBytes(2 << 20, 21)])
  const data = Buffer.concat([Buffer.from('SECRET-DATA-'.repeat(8)), randomBytes(500_000, 22)])
  fs.writeFileSync(path.join(dir, 'file'), file)
  const served: Served = { results: [], file, data }
  const record = (url: string, p: Promise<unknown>) =>
    p.then(
      (value) => served.results.push({ url, value }),
      (value: unknown) => served.results.push({ url, value }),
    )
  const onRequest = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    const url = req.url
    if (url === '/file') record(url, sendFileZeroCopy(res, path.join(dir, 'file')))
    else if (url === '/data') record(url, sendZeroCopy(res, Buffer.from(data)))
    else if (url === '/stream') {
      // The core API: a stream after respond(), as any Writable.
      res.stream.respond({ ':status': 200 })
      const zc = ZeroCopySocket.from(res.stream)
      record(
        url,
        zc.sendEach([data.subarray(0, 1000), data.subarray(1000)]).then(async (r) => {
          await sendFileZeroCopy(res.stream, path.join(dir, 'file'))
          res.stream.end()
          await zc.close()
          return r
        }),
      )
    } else if (url === '/socket') {
      record(
        url,
        sendZeroCopy(res.socket as net.Socket, Buffer.from('raw bytes into the HTTP/2 connection')).finally(() => res.end('refused')),
      )
    } else res.writeHead(404).end()
  }
  return { served, onRequest }
}

async function fetchAll(session: http2.ClientHttp2Session, paths: string[]): Promise<Map<string, { status: number; body: Buffer }>> {
  const out = new Map<string, { status: number; body: Buffer }>()
  await Promise.all(
    paths.map(
      (p) =>
        new Promise<void>((resolve, reject) => {
          const req = session.request({ ':path': p })
          let status = 0
          const chunks: Buffer[] = []
          req.on('response', (h) => (status = Number(h[':status'])))
          req.on('data', (d: Buffer) => chunks.push(d))
          req.on('end', () => {
            out.set(p, { status, body: Buffer.concat(chunks) })
            resolve()
          })
          req.on('error', reject)
          req.end()
        }),
    ),
  )
  return out
}

function check(got: Map<string, { status: number; body: Buffer }>, served: Served): void {
  assert.equal(got.get('/file')?.status, 200)
  assert.ok(got.get('/file')!.body.equals(served.file), '/file byte-exact')
  assert.ok(got.get('/data')!.body.equals(served.data), '/data byte-exact')
  assert.ok(got.get('/stream')!.body.equals(Buffer.concat([served.data, served.file])), '/stream byte-exact')
  assert.equal(got.get('/socket')!.body.toString(), 'refused', 'the connection survived the refused call')
  const socketCall = served.results.find((r) => r.url === '/socket')!.value as NodeJS.ErrnoException
  assert.equal(socketCall.code, 'ERR_ZEROCOPY_PROTOCOL_LAYER')
  for (const r of served.results.filter((r) => r.url !== '/socket')) {
    const v = r.value as { zeroCopy: boolean; copied: boolean; fallback?: string }
    assert.equal(v.zeroCopy, false, r.url)
    assert.equal(v.copied, true, r.url)
    assert.match(v.fallback ?? '', /HTTP\/2/, r.url)
  }
}

const PATHS = ['/file', '/data', '/stream', '/socket', '/file', '/data']

test('HTTP/2 over TLS: full, byte-exact responses, many streams at once, no plaintext on the wire', async (t) => {
  const { served, onRequest } = handler(tempDir(t))
  const server = http2.createSecureServer({ key, cert }, onRequest)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const spy = await wireSpy((server.address() as net.AddressInfo).port)
  const session = http2.connect(`https://localhost:${spy.port}`, { ca: cert })
  t.after(async () => {
    session.destroy()
    await spy.close()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const got = await within(15000, fetchAll(session, PATHS), 'the HTTP/2 responses')
  check(got, served)
  const wire = spy.toClient()
  assert.ok(!leaks(wire, served.file) && !leaks(wire, served.data), 'no plaintext on the wire')
})

test('HTTP/2 cleartext (h2c): full, byte-exact responses; the session socket is refused', async (t) => {
  const { served, onRequest } = handler(tempDir(t))
  const server = http2.createServer(onRequest)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const session = http2.connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`)
  t.after(async () => {
    session.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const got = await within(15000, fetchAll(session, PATHS), 'the HTTP/2 responses')
  check(got, served)
})
