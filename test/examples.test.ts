// The examples keep working: each runs as a user would run it.
import * as assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'
import { test } from 'node:test'
import * as tls from 'node:tls'
import { cert, key } from './fixtures/tls-cert'
import { randomBytes, sha256, tempDir } from './helpers'
import { parseResponses, pipelined } from './http-util'
import { within } from './regress-util'

const examples = path.join(__dirname, '..', 'examples')

test('examples/splice-copy copies a file byte for byte', (t) => {
  const dir = tempDir(t)
  const data = randomBytes(3 * 1024 * 1024 + 7, 41)
  fs.writeFileSync(path.join(dir, 'in'), data)
  const out = execFileSync(process.execPath, [path.join(examples, 'splice-copy.js'), path.join(dir, 'in'), path.join(dir, 'out')])
  assert.match(out.toString(), new RegExp(`copied ${data.length} bytes`))
  assert.equal(sha256(fs.readFileSync(path.join(dir, 'out'))), sha256(data))
})

test('examples/demo runs its three transfers on loopback and prints the comparison', () => {
  const started = Date.now()
  const out = execFileSync(process.execPath, [path.join(examples, 'demo.js')], {
    env: { ...process.env, ZEROCOPY_DEMO_SECONDS: '1' },
    timeout: 30000,
  }).toString()
  assert.match(out, /^transfer\s+GB\/s\s+CPU s\/GB\s+completions\s+copied$/m)
  assert.match(out, /^socket\.write\s+\d+\.\d+\s+\d+\.\d+\s+0\s+yes/m)
  assert.match(out, /^ZeroCopySocket\.send\s+\d+\.\d+\s+\d+\.\d+\s+[1-9]\d*\s+yes, the kernel said COPIED/m)
  assert.match(out, /^sendFileZeroCopy\s+\d+\.\d+\s+\d+\.\d+\s+[1-9]\d*\s+yes/m)
  assert.match(out, /local socket, and the kernel copies/)
  assert.ok(Date.now() - started < 30000)
})

/** Starts examples/http-file-server as a user would; resolves with its port. */
async function fileServer(t: { after(fn: () => unknown): void }, dir: string, extra: string[] = []): Promise<number> {
  const child = spawn(process.execPath, [path.join(examples, 'http-file-server.js'), dir, '0', ...extra], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.after(() => child.kill())
  const line = await within(10000, new Promise<string>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(d.toString()))), 'the server to listen')
  return Number(/:(\d+)\//.exec(line)![1])
}

for (const secure of [false, true]) {
  test(`examples/http-file-server answers pipelined GETs and a HEAD in order, byte-exact${secure ? ', over HTTPS' : ''}`, async (t) => {
    const dir = tempDir(t)
    const files = { a: randomBytes(2 * 1024 * 1024 + 3, 61), b: randomBytes(1000, 62), c: randomBytes(70000, 63) }
    for (const [name, bytes] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), bytes)
    let extra: string[] = []
    if (secure) {
      fs.writeFileSync(path.join(dir, '..cert'), cert)
      fs.writeFileSync(path.join(dir, '..key'), key)
      extra = ['--cert', path.join(dir, '..cert'), '--key', path.join(dir, '..key')]
    }
    const port = await fileServer(t, dir, extra)
    const connect = () => (secure ? tls.connect({ port, host: '127.0.0.1', ca: cert, servername: 'localhost' }) : net.connect(port, '127.0.0.1'))
    const got = parseResponses(await pipelined(connect, ['GET /a', 'GET /b', 'HEAD /a', 'GET /c', 'GET /missing']), new Set([2]))
    assert.deepEqual(
      got.map((r) => r.status),
      [200, 200, 200, 200, 404],
    )
    assert.ok(got[0].body.equals(files.a) && got[1].body.equals(files.b) && got[3].body.equals(files.c), 'bodies byte-exact')
    assert.equal(got[2].headers['content-length'], String(files.a.length))
  })
}

test('examples/tcp-proxy relays three connections both ways byte for byte, with a throughput line', async () => {
  const { spawn } = await import('node:child_process')
  const net = await import('node:net')
  // The target answers each connection with its own bytes reversed, after the client ended.
  const target = net.createServer({ allowHalfOpen: true }, (s) => {
    const chunks: Buffer[] = []
    s.on('data', (d: Buffer) => chunks.push(d)).on('end', () => s.end(Buffer.concat(chunks).reverse()))
  })
  await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve))
  const targetPort = (target.address() as import('node:net').AddressInfo).port
  const proxy = spawn(process.execPath, [path.join(examples, 'tcp-proxy.js'), '0', '127.0.0.1', String(targetPort), 'auto', '--max', '3'])
  let stderr = ''
  let stdout = ''
  proxy.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  const port = await new Promise<number>((resolve) =>
    proxy.stderr.on('data', (d: Buffer) => {
      stderr += d.toString()
      const m = /proxy on port (\d+)/.exec(stderr)
      if (m) resolve(Number(m[1]))
    }),
  )
  const exited = new Promise<number | null>((resolve) => proxy.once('exit', resolve))
  const sizes = [0, 100000, 5 * 1024 * 1024 + 3]
  await Promise.all(
    sizes.map(async (size, i) => {
      const data = randomBytes(size, i + 90)
      const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true })
      const chunks: Buffer[] = []
      c.on('data', (d: Buffer) => chunks.push(d))
      const ended = new Promise((resolve) => c.once('end', resolve))
      c.end(data)
      await ended
      c.destroy()
      assert.equal(sha256(Buffer.concat(chunks)), sha256(Buffer.from(data).reverse()))
    }),
  )
  assert.equal(await exited, 0)
  target.close()
  const summary = JSON.parse(stdout.trim().split('\n').pop()!) as { connections: number; failed: number; bytes: number; mechanisms: string[] }
  const total = sizes.reduce((a, b) => a + b, 0)
  assert.deepEqual(summary, { connections: 3, failed: 0, bytes: 2 * total, mechanisms: ['copy'] })
  assert.match(stderr, /0 active, 3 done, 0 failed, \d+ MB moved, \d+ MB\/s/)
})
