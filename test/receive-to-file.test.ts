// receiveToFile on real loopback TCP and real files: the file equals the source (both
// mechanisms, a path, an fd at an offset, bytes Node had buffered, never shown to a
// 'data' listener), `length` stops exactly there and Node reads on, an early end, an
// abort, a full disk (a small tmpfs mounted for the test) rejecting with ENOSPC, and
// nothing left open or pending.
//
// ZEROCOPY_UPLOAD_MIB sets the size of the big upload (default 64; `npm run
// test:upload-1g` runs 1024).
import * as assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { before, test } from 'node:test'
import { receiveToFile } from '../lib'
import { openFdTargets, randomBytes, sha256, tempDir } from './helpers'
import { assertNothingLeft, closed, halfOpenPair, within } from './relay-util'

const MiB = 1 << 20
const BIG_MIB = Number(process.env.ZEROCOPY_UPLOAD_MIB ?? 64)
const isRoot = process.getuid?.() === 0

before(async () => {
  // The relay thread's epoll and eventfd are made on first use and live with the process.
  const { client, server } = await halfOpenPair()
  const dir = fs.mkdtempSync('/tmp/zrl-warm-')
  client.end('x')
  await receiveToFile(server, path.join(dir, 'f'))
  fs.rmSync(dir, { recursive: true })
  await Promise.all([closed(client), closed(server)])
})

/** Streams `mib` MiB of seeded random bytes and ends; resolves with their sha256. */
async function sendStream(s: import('node:net').Socket, mib: number): Promise<string> {
  const hash = crypto.createHash('sha256')
  for (let i = 0; i < mib; i++) {
    const block = randomBytes(MiB, i + 1)
    hash.update(block)
    if (!s.write(block)) await new Promise((resolve) => s.once('drain', resolve))
  }
  s.end()
  return hash.digest('hex')
}

function fileSha(file: string): string {
  const hash = crypto.createHash('sha256')
  const fd = fs.openSync(file, 'r')
  const buf = Buffer.allocUnsafe(8 * MiB)
  for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) hash.update(buf.subarray(0, n))
  fs.closeSync(fd)
  return hash.digest('hex')
}

for (const mechanism of ['copy', 'splice'] as const) {
  test(`${mechanism}: ${BIG_MIB} MiB upload to a path equals the source`, { timeout: 600000 }, async (t) => {
    const fds = openFdTargets()
    const file = path.join(tempDir(t), 'upload')
    fs.writeFileSync(file, Buffer.alloc(3 * MiB, 0xee)) // truncated by the path's 'w'
    const { client, server } = await halfOpenPair()
    const started = Date.now()
    const r = receiveToFile(server, file, { mechanism, bufferSize: MiB })
    const sent = await sendStream(client, BIG_MIB)
    const result = await r
    t.diagnostic(`${BIG_MIB} MiB in ${Date.now() - started} ms (${mechanism})`)
    assert.deepEqual(result, { bytes: BIG_MIB * MiB, mechanism })
    assert.equal(fs.statSync(file).size, BIG_MIB * MiB)
    assert.equal(fileSha(file), sent)
    await Promise.all([closed(client), closed(server)])
    assertNothingLeft(fds)
  })
}

test('offset and length into an fd: bytes Node buffered first, exactly length, then Node reads on', async (t) => {
  const fds = openFdTargets()
  const file = path.join(tempDir(t), 'f')
  const original = Buffer.alloc(1000, 0x2e)
  fs.writeFileSync(file, original)
  const fd = fs.openSync(file, 'r+')
  const { client, server } = await halfOpenPair()
  const head = Buffer.from('PUT /f\r\n')
  const body = randomBytes(2 * MiB + 123, 77)
  const after = Buffer.from('after the body')
  server.pause()
  client.write(Buffer.concat([head, body.subarray(0, 5000)]))
  while (server.readableLength < head.length + 5000) {
    server.read(0)
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
  assert.deepEqual(server.read(head.length), head)
  const r = receiveToFile(server, fd, { offset: 100, length: body.length })
  client.write(body.subarray(5000))
  client.write(after)
  assert.deepEqual(await within(r, 10000, 'receiveToFile'), { bytes: body.length, mechanism: 'splice' }) // auto: splice into files
  const content = fs.readFileSync(file)
  assert.equal(content.length, 100 + body.length)
  assert.deepEqual(content.subarray(0, 100), original.subarray(0, 100))
  assert.equal(sha256(content.subarray(100)), sha256(body))
  const next = await within(new Promise<Buffer>((resolve) => server.once('data', resolve).resume()), 5000, 'Node reading on')
  assert.equal(next.toString(), after.toString())
  await Promise.all([closed(client), closed(server)])
  fs.closeSync(fd) // the caller's fd stays open until the caller closes it
  assertNothingLeft(fds)
})

test("a 'data' listener sees none of the upload: neither what Node had buffered nor what came while the file opened", async (t) => {
  const fds = openFdTargets()
  const file = path.join(tempDir(t), 'f')
  const { client, server } = await halfOpenPair()
  t.after(() => Promise.all([closed(client), closed(server)]))
  const early = randomBytes(12000, 91)
  const late = randomBytes(MiB, 92)
  server.pause()
  client.write(early)
  while (server.readableLength < early.length) {
    server.read(0)
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
  let seen = 0
  server.on('data', (d: Buffer) => (seen += d.length))
  server.resume() // Node's flow is scheduled: the call must come first and take the bytes
  const r = receiveToFile(server, file)
  client.end(late)
  assert.deepEqual(await within(r, 10000, 'receiveToFile'), { bytes: early.length + late.length, mechanism: 'splice' })
  assert.equal(fileSha(file), sha256(Buffer.concat([early, late])))
  assert.equal(seen, 0, "the 'data' listener saw none of the uploaded bytes")
  await Promise.all([closed(client), closed(server)])
  assertNothingLeft(fds)
})

test('a socket that ends before length rejects with ERR_STREAM_PREMATURE_CLOSE; the file holds what came', async (t) => {
  const fds = openFdTargets()
  const file = path.join(tempDir(t), 'f')
  const { client, server } = await halfOpenPair()
  const r = receiveToFile(server, file, { length: 10000 }).catch((e: NodeJS.ErrnoException & { bytes: number }) => e)
  client.end(Buffer.alloc(4000, 7))
  const err = (await within(r, 5000, 'receiveToFile')) as NodeJS.ErrnoException & { bytes: number }
  assert.equal(err.code, 'ERR_STREAM_PREMATURE_CLOSE')
  assert.equal(err.bytes, 4000)
  assert.deepEqual(fs.readFileSync(file), Buffer.alloc(4000, 7))
  await Promise.all([closed(client), closed(server)])
  assertNothingLeft(fds)
})

test('abort: AbortError, the socket is Node\'s again, nothing left', async (t) => {
  const fds = openFdTargets()
  const file = path.join(tempDir(t), 'f')
  const { client, server } = await halfOpenPair()
  const ac = new AbortController()
  const r = receiveToFile(server, file, { signal: ac.signal }).catch((e: Error) => e)
  client.write(Buffer.alloc(100000, 1))
  await new Promise((resolve) => setTimeout(resolve, 30))
  ac.abort()
  const err = (await within(r, 5000, 'receiveToFile after abort')) as Error
  assert.equal(err.name, 'AbortError')
  assert.equal(fs.statSync(file).size, 100000)
  const next = within(new Promise<Buffer>((resolve) => server.once('data', resolve)), 5000, 'Node reading on')
  client.write('more')
  assert.equal((await next).toString(), 'more')
  await Promise.all([closed(client), closed(server)])
  assertNothingLeft(fds)
})

test("refused before anything moves, in the caller's names: a read-only fd, an O_APPEND fd, a FIFO, a /proc file, a directory, a bad offset", async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'f')
  fs.writeFileSync(file, '')
  const { client, server } = await halfOpenPair()
  const refusal = async (p: Promise<unknown>) => (await within(p.then(() => undefined, (e: NodeJS.ErrnoException) => e), 3000, 'the refusal')) as NodeJS.ErrnoException
  const ro = fs.openSync(file, 'r')
  const app = fs.openSync(file, 'a')
  const fifo = path.join(dir, 'fifo')
  execFileSync('mkfifo', [fifo])
  const fifoFd = fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK)
  const expect = async (p: Promise<unknown>, code: string, message?: RegExp) => {
    const err = await refusal(p)
    assert.equal(err?.code, code)
    if (message) assert.match(err.message, message)
    assert.doesNotMatch(err.message, /fdA|fdB/)
  }
  await expect(receiveToFile(server, ro), 'ERR_INVALID_ARG_VALUE', /^The "file" fd is open read-only/)
  await expect(receiveToFile(server, app), 'ERR_INVALID_ARG_VALUE', /^The "file" fd is open with O_APPEND/)
  await expect(receiveToFile(server, fifoFd), 'ERR_INVALID_FD_TYPE', /^The "file" fd is not a regular file$/)
  await expect(receiveToFile(ro, file), 'ERR_INVALID_FD_TYPE', /^The "socket" fd is not a stream socket$/)
  // A regular file splice cannot write into (procfs): refused, not EINVAL after bytes were taken.
  await expect(receiveToFile(server, '/proc/self/comm', { length: 2 }), 'ERR_ZEROCOPY_NOT_A_FILE', /"file" argument is a pseudo-file/)
  await expect(receiveToFile(server, dir), 'EISDIR')
  await expect(receiveToFile(server, file, { offset: -1 }), 'ERR_OUT_OF_RANGE')
  await expect(receiveToFile(server, {} as string), 'ERR_INVALID_ARG_TYPE')
  for (const fd of [ro, app, fifoFd]) fs.closeSync(fd)
  // Refusals leave the socket as it was: it still reads.
  const got = new Promise<Buffer>((resolve) => server.once('data', resolve))
  client.write('ok')
  assert.equal((await within(got, 5000, 'data')).toString(), 'ok')
  await Promise.all([closed(client), closed(server)])
})

test('a full disk (a 1 MiB tmpfs) rejects with ENOSPC, nothing hangs, the socket is Node\'s again', async (t) => {
  if (!isRoot) return t.skip('needs root to mount a tmpfs')
  const fds = openFdTargets()
  const mnt = tempDir(t)
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'zrl-tmpfs', mnt])
  try {
    for (const mechanism of ['copy', 'splice'] as const) {
      const { client, server } = await halfOpenPair()
      const r = receiveToFile(server, path.join(mnt, `full-${mechanism}`), { mechanism }).catch((e: NodeJS.ErrnoException) => e)
      client.write(Buffer.alloc(4 * MiB, 3))
      const err = (await within(r, 10000, 'receiveToFile on a full disk')) as NodeJS.ErrnoException & { bytes: number }
      assert.equal(err.code, 'ENOSPC')
      assert.equal(err.errno, -28)
      assert.match(err.syscall!, /^(pwrite|splice)$/)
      assert.ok(err.bytes > 0 && err.bytes <= MiB, `bytes ${err.bytes}`)
      assert.equal(fs.statSync(path.join(mnt, `full-${mechanism}`)).size, err.bytes)
      // The socket is Node's again: what the client sent next still arrives.
      assert.ok(!server.destroyed)
      await within(new Promise((resolve) => server.once('data', resolve)), 5000, 'Node reading on')
      await Promise.all([closed(client), closed(server)])
      fs.rmSync(path.join(mnt, `full-${mechanism}`))
    }
  } finally {
    execFileSync('umount', [mnt])
  }
  assertNothingLeft(fds)
})
