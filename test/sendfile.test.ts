// sendfile(2): offsets, file positions, files past 4 GiB, sockets.
import * as assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { test } from 'node:test'
import { getPipeSize, sendfile, splice } from '../lib'
import { collect, randomBytes, readExactly, sha256, tcpPair, tempDir, testPipe, throwsSystemError, tick } from './helpers'

const GiB = 1024 ** 3

function fileWith(t: Parameters<typeof tempDir>[0], data: Uint8Array): number {
  const file = path.join(tempDir(t), 'f')
  fs.writeFileSync(file, data)
  const fd = fs.openSync(file, 'r')
  t.after(() => fs.closeSync(fd))
  return fd
}

test('an explicit offset leaves the file position untouched', (t) => {
  const data = randomBytes(20000, 13)
  const fd = fileWith(t, data)
  const p = testPipe(t)
  assert.equal(sendfile(p.writeFd, fd, 1000, 500), 500)
  assert.deepEqual(readExactly(p.readFd, 500), data.subarray(1000, 1500))
  const head = Buffer.alloc(8)
  fs.readSync(fd, head, 0, 8, null)
  assert.deepEqual(head, data.subarray(0, 8), 'position still 0')
})

test('offset null reads at and advances the file position', (t) => {
  const data = randomBytes(20000, 17)
  const fd = fileWith(t, data)
  const p = testPipe(t)
  assert.equal(sendfile(p.writeFd, fd, null, 300), 300)
  assert.equal(sendfile(p.writeFd, fd, null, 200), 200)
  assert.deepEqual(readExactly(p.readFd, 500), data.subarray(0, 500))
  const next = Buffer.alloc(8)
  fs.readSync(fd, next, 0, 8, null)
  assert.deepEqual(next, data.subarray(500, 508), 'position advanced to 500')
})

test('at and past end of file sendfile returns 0', (t) => {
  const fd = fileWith(t, Buffer.from('0123456789'))
  const p = testPipe(t)
  assert.equal(sendfile(p.writeFd, fd, 10, 5), 0)
  assert.equal(sendfile(p.writeFd, fd, 1e12, 5), 0)
  assert.equal(sendfile(p.writeFd, fd, 8, 5), 2, 'short read at the tail')
})

test('a sparse file read past 4 GiB, with number and bigint offsets and lengths', (t) => {
  const file = path.join(tempDir(t), 'sparse')
  const fd = fs.openSync(file, 'w+')
  t.after(() => fs.closeSync(fd))
  const marker = randomBytes(5000, 23)
  const at = 4 * GiB + 12345 // beyond any 32-bit offset
  fs.ftruncateSync(fd, 5 * GiB)
  fs.writeSync(fd, marker, 0, marker.length, at)
  const p = testPipe(t)

  assert.equal(sendfile(p.writeFd, fd, at, marker.length), marker.length)
  assert.deepEqual(readExactly(p.readFd, marker.length), marker)
  // Asking for 8 GiB (a bigint length) from a bigint offset: the kernel moves one
  // pipe-full (16 page slots, the first one partial since the offset is not page
  // aligned): the rest of the marker followed by the zeros of the hole.
  const capacity = getPipeSize(p.writeFd)
  const moved = sendfile(p.writeFd, fd, BigInt(at) + 1000n, 8n * BigInt(GiB))
  assert.equal(moved, capacity - ((at + 1000) % 4096))
  const chunk = readExactly(p.readFd, moved)
  assert.deepEqual(chunk.subarray(0, marker.length - 1000), marker.subarray(1000))
  assert.ok(chunk.subarray(marker.length - 1000).every((b) => b === 0))

  // splice from the same offset past 4 GiB, as a bigint.
  assert.equal(splice(fd, BigInt(at) + 4000n, p.writeFd, null, 1000), 1000)
  assert.deepEqual(readExactly(p.readFd, 1000), marker.subarray(4000))

  // The hole reads as zeros.
  assert.equal(sendfile(p.writeFd, fd, 4 * GiB, 4096), 4096)
  assert.ok(readExactly(p.readFd, 4096).every((b) => b === 0))
})

test('sendfile to a loopback TCP socket delivers the file intact', async (t) => {
  const data = randomBytes(3 * 1024 * 1024 + 99, 29)
  const fd = fileWith(t, data)
  const pair = await tcpPair()
  t.after(() => pair.close())
  const received = collect(pair.server)
  let offset = 0
  while (offset < data.length) {
    try {
      offset += sendfile(pair.clientFd, fd, offset, data.length - offset)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err
      await tick() // libuv's socket is non-blocking: wait for the reader
    }
  }
  pair.client.end()
  const got = await received
  assert.equal(sha256(got), sha256(data))
})

test('sendfile from a pipe is EINVAL; to a read-only fd EBADF', (t) => {
  const p = testPipe(t)
  const fd = fileWith(t, Buffer.from('abc'))
  fs.writeSync(p.writeFd, 'abc')
  throwsSystemError(() => sendfile(p.writeFd, p.readFd, null, 3), 'EINVAL', 'sendfile')
  throwsSystemError(() => sendfile(fd, fd, 0, 3), 'EBADF', 'sendfile')
})
