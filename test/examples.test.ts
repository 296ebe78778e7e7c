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
