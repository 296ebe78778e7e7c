// receiveToFile(req, file) in a real http server, driven by a raw client socket: the
// file holds exactly the body whether it came in the headers' segment, after them, or
// pipelined with the next request; the next keep-alive request on the connection is
// answered; Expect: 100-continue gets its 100 when the application installed
// 'checkContinue'; a chunked body, or one under TLS, goes through req as copies and
// says so; an upload that fails before it started leaves the body to Node, one aborted
// half way closes the connection after the response; and
// receiveToFile(req.socket) on a socket Node's HTTP parser reads is refused.
import * as assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as https from 'node:https'
import * as net from 'node:net'
import * as path from 'node:path'
import { test } from 'node:test'
import * as tls from 'node:tls'
import { receiveToFile, relay } from '../lib'
import { cert, key } from './fixtures/tls-cert'
import { openFdTargets, randomBytes, tempDir } from './helpers'
import { parseResponses } from './http-util'
import { sleep, waitFor, within } from './regress-util'
import { assertNothingLeft } from './relay-util'

interface Upload {
  file: string
  result?: unknown
  error?: NodeJS.ErrnoException
}

/** A server answering /upload with receiveToFile(req) and anything else with its URL. */
async function uploadServer(
  t: { after(fn: () => unknown): void },
  dir: string,
  upload: (req: http.IncomingMessage, file: string) => Promise<unknown> = (req, file) => receiveToFile(req, file),
  setup?: (server: http.Server, handler: http.RequestListener) => void,
): Promise<{ port: number; uploads: Upload[] }> {
  const uploads: Upload[] = []
  const handler: http.RequestListener = (req, res) => {
    if (req.url !== '/upload') return void res.end(`answer:${req.url}`)
    const u: Upload = { file: path.join(dir, `up-${uploads.length}`) }
    uploads.push(u)
    upload(req, u.file).then(
      (r) => {
        u.result = r
        res.end('stored')
      },
      (err: NodeJS.ErrnoException) => {
        u.error = err
        res.statusCode = 500
        res.end(`failed:${err.code}`)
      },
    )
  }
  const server = http.createServer()
  if (setup) setup(server, handler)
  else server.on('request', handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => {
    server.closeAllConnections()
    server.close()
  })
  return { port: (server.address() as net.AddressInfo).port, uploads }
}

/** A raw client: writes parts (with pauses between them) and reads until `responses` came. */
async function exchange(port: number, parts: Array<Buffer | string | number>, responses: number): Promise<ReturnType<typeof parseResponses>> {
  const socket = net.connect(port, '127.0.0.1')
  const chunks: Buffer[] = []
  socket.on('data', (d: Buffer) => chunks.push(d))
  socket.on('error', () => {})
  await new Promise((resolve) => socket.once('connect', resolve))
  try {
    for (const p of parts) {
      if (typeof p === 'number') await sleep(p)
      else socket.write(p)
    }
    const count = () => {
      try {
        return parseResponses(Buffer.concat(chunks)).length
      } catch {
        return 0 // a response still arriving
      }
    }
    await within(8000, waitFor(`${responses} responses`, () => count() >= responses, 8000), `${responses} responses on the connection`)
    return parseResponses(Buffer.concat(chunks))
  } finally {
    socket.destroy()
  }
}

const head = (length: number, extra = '') => `POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: ${length}\r\n${extra}\r\n`
const next = 'GET /next HTTP/1.1\r\nHost: x\r\n\r\n'

for (const [name, size] of [
  ['small', 3000],
  ['4 MiB', 4 << 20],
] as const) {
  test(`${name} body in the headers' segment: the file holds it, the next request is answered`, { timeout: 20000 }, async (t) => {
    const { port, uploads } = await uploadServer(t, tempDir(t))
    const body = randomBytes(size, 7)
    const got = await exchange(port, [Buffer.concat([Buffer.from(head(size)), body]), 50, next], 2)
    assert.equal(uploads[0]!.error, undefined)
    assert.deepEqual(got.map((r) => r.body.toString()), ['stored', 'answer:/next'])
    assert.ok(fs.readFileSync(uploads[0]!.file).equals(body), 'the file holds the body')
  })

  test(`${name} body after the headers: the file holds it, the next request is answered`, { timeout: 20000 }, async (t) => {
    const { port, uploads } = await uploadServer(t, tempDir(t))
    const body = randomBytes(size, 8)
    const got = await exchange(port, [head(size), 50, body.subarray(0, 1000), 30, body.subarray(1000), 50, next], 2)
    assert.equal(uploads[0]!.error, undefined)
    assert.deepEqual(got.map((r) => r.body.toString()), ['stored', 'answer:/next'])
    assert.ok(fs.readFileSync(uploads[0]!.file).equals(body), 'the file holds the body')
  })
}

test('pipelined: headers, body and the next two requests in one write', { timeout: 20000 }, async (t) => {
  const { port, uploads } = await uploadServer(t, tempDir(t))
  const body = randomBytes(5000, 9)
  const got = await exchange(port, [Buffer.concat([Buffer.from(head(body.length)), body, Buffer.from(next + next.replace('/next', '/third'))])], 3)
  assert.deepEqual(got.map((r) => r.body.toString()), ['stored', 'answer:/next', 'answer:/third'])
  assert.ok(fs.readFileSync(uploads[0]!.file).equals(body))
})

test('pipelined with a body too big for one read: the next request follows the body', { timeout: 20000 }, async (t) => {
  const { port, uploads } = await uploadServer(t, tempDir(t))
  const body = randomBytes(2 << 20, 10)
  const got = await exchange(port, [Buffer.concat([Buffer.from(head(body.length)), body, Buffer.from(next)])], 2)
  assert.deepEqual(got.map((r) => r.body.toString()), ['stored', 'answer:/next'])
  assert.ok(fs.readFileSync(uploads[0]!.file).equals(body))
  assert.equal((uploads[0]!.result as { mechanism: string }).mechanism === 'stream', false, 'the body went zero-copy')
})

test('two uploads one after the other on one connection', { timeout: 20000 }, async (t) => {
  const { port, uploads } = await uploadServer(t, tempDir(t))
  const a = randomBytes(70000, 11)
  const b = randomBytes(9000, 12)
  const got = await exchange(port, [Buffer.concat([Buffer.from(head(a.length)), a]), 50, Buffer.concat([Buffer.from(head(b.length)), b]), 50, next], 3)
  assert.deepEqual(got.map((r) => r.body.toString()), ['stored', 'stored', 'answer:/next'])
  assert.ok(fs.readFileSync(uploads[0]!.file).equals(a))
  assert.ok(fs.readFileSync(uploads[1]!.file).equals(b))
})

test('Expect: 100-continue under a checkContinue listener gets its 100, then the body', { timeout: 20000 }, async (t) => {
  const { port, uploads } = await uploadServer(t, tempDir(t), undefined, (server, handler) => {
    server.on('checkContinue', handler) // the application neither answers nor sends 100 itself
    server.on('request', handler)
  })
  const body = randomBytes(20000, 13)
  const socket = net.connect(port, '127.0.0.1')
  const chunks: Buffer[] = []
  socket.on('data', (d: Buffer) => chunks.push(d))
  t.after(() => socket.destroy())
  socket.write(head(body.length, 'Expect: 100-continue\r\n'))
  await within(3000, waitFor('100 Continue', () => Buffer.concat(chunks).toString('latin1').startsWith('HTTP/1.1 100 Continue\r\n\r\n')), '100 Continue')
  chunks.splice(0)
  socket.write(body)
  socket.write(next)
  await within(5000, waitFor('2 responses', () => Buffer.concat(chunks).toString('latin1').includes('answer:/next')), 'the answers')
  assert.deepEqual(parseResponses(Buffer.concat(chunks)).map((r) => r.body.toString()), ['stored', 'answer:/next'])
  assert.ok(fs.readFileSync(uploads[0]!.file).equals(body))
})

test('a chunked body (with trailers) goes through req as copies and says so', { timeout: 20000 }, async (t) => {
  const { port, uploads } = await uploadServer(t, tempDir(t))
  const body = randomBytes(40000, 14)
  const chunked = `POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n`
  const parts = [body.subarray(0, 30000), body.subarray(30000)].map((p) => Buffer.concat([Buffer.from(`${p.length.toString(16)}\r\n`), p, Buffer.from('\r\n')]))
  const got = await exchange(port, [chunked, parts[0]!, 30, parts[1]!, '0\r\nX-Sum: 1\r\n\r\n', 30, next], 2)
  assert.deepEqual(got.map((r) => r.body.toString()), ['stored', 'answer:/next'])
  assert.ok(fs.readFileSync(uploads[0]!.file).equals(body))
  const r = uploads[0]!.result as { bytes: number; mechanism: string; fallback?: string }
  assert.equal(r.bytes, body.length)
  assert.equal(r.mechanism, 'stream')
  assert.match(r.fallback ?? '', /chunked/)
})

test('receiveToFile(req.socket) is refused with a code that says to pass req; the connection goes on', { timeout: 20000 }, async (t) => {
  const { port, uploads } = await uploadServer(t, tempDir(t), async (req, file) => {
    try {
      await receiveToFile(req.socket, file, { length: Number(req.headers['content-length']) })
    } finally {
      req.resume() // Node's parser reads the body as usual
    }
  })
  const body = randomBytes(3000, 15)
  const got = await exchange(port, [Buffer.concat([Buffer.from(head(body.length)), body]), 50, next], 2)
  const err = uploads[0]!.error
  assert.equal(err?.code, 'ERR_ZEROCOPY_HTTP_PARSER')
  assert.match(err!.message, /receiveToFile\(req/)
  assert.deepEqual(got.map((r) => r.body.toString()), ['failed:ERR_ZEROCOPY_HTTP_PARSER', 'answer:/next'])
})

test('relay() of a socket Node\'s HTTP parser reads is refused before anything moves; the connection goes on', { timeout: 20000 }, async (t) => {
  const other = await new Promise<net.Socket>((resolve) => {
    const l = net.createServer((s) => {
      l.close()
      resolve(s)
    })
    l.listen(0, '127.0.0.1', () => net.connect((l.address() as net.AddressInfo).port, '127.0.0.1'))
  })
  t.after(() => other.destroy())
  const { port, uploads } = await uploadServer(t, tempDir(t), async (req) => {
    try {
      await relay(req.socket, other, { direction: 'a->b', length: Number(req.headers['content-length']) })
    } finally {
      req.resume() // Node's parser reads the body as usual
    }
  })
  const body = randomBytes(3000, 16)
  const got = await exchange(port, [Buffer.concat([Buffer.from(head(body.length)), body]), 50, next], 2)
  const err = uploads[0]!.error
  assert.equal(err?.code, 'ERR_ZEROCOPY_HTTP_PARSER')
  assert.match(err!.message, /HTTP parser/)
  assert.deepEqual(got.map((r) => r.body.toString()), ['failed:ERR_ZEROCOPY_HTTP_PARSER', 'answer:/next'])
})

test('a request whose body was read already is refused; an empty body makes an empty file', { timeout: 20000 }, async (t) => {
  const dir = tempDir(t)
  const { port, uploads } = await uploadServer(t, dir, async (req, file) => {
    if (req.headers['x-read'] !== undefined) {
      await new Promise((resolve) => req.once('data', resolve))
      req.pause()
    }
    return receiveToFile(req, file)
  })
  const body = randomBytes(3000, 16)
  const got = await exchange(port, [Buffer.concat([Buffer.from(head(body.length, 'X-Read: 1\r\nConnection: close\r\n')), body])], 1)
  assert.equal(uploads[0]!.error?.code, 'ERR_INVALID_STATE')
  assert.equal(got[0]!.body.toString(), 'failed:ERR_INVALID_STATE')
  const empty = await exchange(port, [head(0), next], 2)
  assert.deepEqual(empty.map((r) => r.body.toString()), ['stored', 'answer:/next'])
  assert.equal(fs.readFileSync(uploads[1]!.file).length, 0)
})

test('an upload that cannot open its file leaves the body to Node: the next request is answered', { timeout: 20000 }, async (t) => {
  const { port, uploads } = await uploadServer(t, tempDir(t), (req) => receiveToFile(req, '/nonexistent-dir/upload'))
  const body = randomBytes(1 << 20, 17)
  const got = await exchange(port, [head(body.length), 50, body, 50, next], 2)
  assert.equal(uploads[0]!.error?.code, 'ENOENT')
  assert.deepEqual(got.map((r) => r.body.toString()), ['failed:ENOENT', 'answer:/next'])
})

test('an upload that fails before it starts, with the start of the body in the headers\' segment: the body is Node\'s, whole, and the next request is answered', { timeout: 20000 }, async (t) => {
  // The parser had counted the early bytes already: they go back into the request, not
  // in front of the socket (where the parser would count them twice and take the
  // body's end for the next request's start).
  const server = http.createServer((req, res) => {
    if (req.url !== '/upload') return void res.end(`answer:${req.url}`)
    receiveToFile(req, '/nonexistent-dir/upload').then(
      () => res.end('stored'),
      (err: NodeJS.ErrnoException) => {
        if (req.headers['x-read'] === undefined) return void res.end(`failed:${err.code}`)
        const chunks: Buffer[] = []
        req.on('data', (c: Buffer) => chunks.push(c))
        req.on('end', () => res.end(`failed:${err.code}:${createHash('sha256').update(Buffer.concat(chunks)).digest('hex')}`))
      },
    )
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => {
    server.closeAllConnections()
    server.close()
  })
  const port = (server.address() as net.AddressInfo).port
  const body = randomBytes(200000, 21)
  const sum = createHash('sha256').update(body).digest('hex')
  for (const read of [false, true]) {
    const h = head(body.length, read ? 'X-Read: 1\r\n' : '')
    const got = await exchange(port, [Buffer.concat([Buffer.from(h), body.subarray(0, 1000)]), 50, body.subarray(1000), 50, next], 2)
    assert.deepEqual(
      got.map((r) => `${r.status} ${r.body.toString()}`),
      [read ? `200 failed:ENOENT:${sum}` : '200 failed:ENOENT', '200 answer:/next'],
      read ? 'the handler read the whole body after the failure' : 'the body left unread',
    )
  }
})

test('a target fd or FileHandle that cannot take writes at the offset is refused before any byte is taken, on the copy path as on the zero-copy one', { timeout: 20000 }, async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'target')
  const targets: Record<string, () => Promise<{ target: number | fs.promises.FileHandle; close(): Promise<void> }>> = {
    'an O_APPEND fd': async () => {
      const fd = fs.openSync(file, 'a')
      return { target: fd, close: async () => fs.closeSync(fd) }
    },
    'an O_APPEND FileHandle': async () => {
      const fh = await fs.promises.open(file, 'a')
      return { target: fh, close: () => fh.close() }
    },
    'a read-only fd': async () => {
      const fd = fs.openSync(file, 'r')
      return { target: fd, close: async () => fs.closeSync(fd) }
    },
  }
  const expected: Record<string, string> = { 'an O_APPEND fd': 'ERR_INVALID_ARG_VALUE', 'an O_APPEND FileHandle': 'ERR_INVALID_ARG_VALUE', 'a read-only fd': 'ERR_INVALID_ARG_VALUE' }
  for (const [name, open] of Object.entries(targets)) {
    for (const whole of [true, false]) {
      fs.writeFileSync(file, 'EXISTING')
      const opened = await open()
      const errors: NodeJS.ErrnoException[] = []
      const { port } = await uploadServer(t, dir, async (req) => {
        try {
          return await receiveToFile(req, opened.target, { offset: 0 })
        } catch (err) {
          errors.push(err as NodeJS.ErrnoException)
          throw err
        }
      })
      const body = randomBytes(5000, 22)
      const parts = whole ? [Buffer.concat([Buffer.from(head(body.length)), body]), 50, next] : [head(body.length), 50, body, 50, next]
      const got = await exchange(port, parts, 2)
      await opened.close()
      const how = `${name}, the body ${whole ? 'with the headers' : 'after them'}`
      const err = errors[0]
      assert.equal(err?.code, expected[name], `${how}: ${String(err)}`)
      assert.ok(err instanceof TypeError, `${how}: a TypeError`)
      assert.match(err!.message, name === 'a read-only fd' ? /^The "file" fd is open read-only/ : /^The "file" fd is open with O_APPEND/)
      assert.equal((err as { bytes?: number }).bytes, undefined, `${how}: nothing taken`)
      assert.equal(fs.readFileSync(file, 'latin1'), 'EXISTING', `${how}: the file untouched`)
      assert.deepEqual(got.map((r) => r.body.toString()), [`failed:${expected[name]}`, 'answer:/next'], how)
    }
  }
})

test('an upload aborted half way: the response closes the connection (its place in the stream is lost)', { timeout: 20000 }, async (t) => {
  const ac = new AbortController()
  const { port, uploads } = await uploadServer(t, tempDir(t), (req, file) => receiveToFile(req, file, { signal: ac.signal }))
  const socket = net.connect(port, '127.0.0.1')
  const chunks: Buffer[] = []
  socket.on('data', (d: Buffer) => chunks.push(d))
  const closed = new Promise((resolve) => socket.on('close', resolve))
  t.after(() => socket.destroy())
  socket.write(head(1 << 20))
  socket.write(randomBytes(100000, 18))
  await sleep(200)
  ac.abort()
  await within(5000, closed, 'the server closing the connection')
  assert.equal(uploads[0]!.error?.code, 'ABORT_ERR')
  const [res] = parseResponses(Buffer.concat(chunks))
  assert.equal(res!.body.toString(), 'failed:ABORT_ERR')
  assert.equal(res!.headers.connection, 'close')
})

test('HTTPS: the body goes through req as copies (TLS), and the next request is answered', { timeout: 20000 }, async (t) => {
  const dir = tempDir(t)
  const results: unknown[] = []
  const server = https.createServer({ key, cert }, (req, res) => {
    if (req.url !== '/upload') return void res.end(`answer:${req.url}`)
    receiveToFile(req, path.join(dir, 'up')).then(
      (r) => {
        results.push(r)
        res.end('stored')
      },
      (err: Error) => {
        results.push(err)
        res.end('failed')
      },
    )
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => {
    server.closeAllConnections()
    server.close()
  })
  const socket = tls.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', rejectUnauthorized: false })
  t.after(() => socket.destroy())
  const chunks: Buffer[] = []
  socket.on('data', (d: Buffer) => chunks.push(d))
  const body = randomBytes(300000, 19)
  socket.write(Buffer.concat([Buffer.from(head(body.length)), body, Buffer.from(next)]))
  await within(8000, waitFor('2 responses', () => Buffer.concat(chunks).toString('latin1').includes('answer:/next')), 'the answers')
  assert.deepEqual(parseResponses(Buffer.concat(chunks)).map((r) => r.body.toString()), ['stored', 'answer:/next'])
  assert.ok(fs.readFileSync(path.join(dir, 'up')).equals(body))
  const r = results[0] as { mechanism: string; fallback?: string }
  assert.equal(r.mechanism, 'stream')
  assert.match(r.fallback ?? '', /TLS/)
})

test('nothing is left open: uploads that went zero-copy, as copies, and failed', { timeout: 20000 }, async (t) => {
  const dir = tempDir(t)
  const before = openFdTargets()
  const server = http.createServer((req, res) => {
    const file = req.url === '/bad' ? path.join(dir, 'missing', 'x') : path.join(dir, `up-${req.url!.slice(1)}`)
    receiveToFile(req, file).then(
      () => res.end('stored'),
      (err: NodeJS.ErrnoException) => res.end(`failed:${err.code}`),
    )
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  const big = randomBytes(1 << 20, 20)
  const got = await exchange(
    port,
    [
      Buffer.concat([Buffer.from(head(big.length).replace('/upload', '/a')), big]),
      50,
      Buffer.concat([Buffer.from(head(100).replace('/upload', '/b')), big.subarray(0, 100)]),
      50,
      head(big.length).replace('/upload', '/bad'),
      50,
      big,
    ],
    3,
  )
  assert.deepEqual(got.map((r) => r.body.toString()), ['stored', 'stored', 'failed:ENOENT'])
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
  await sleep(50)
  assertNothingLeft(before)
})
