// splice(2) through real pipes, files and a loopback TCP socket.
import * as assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { test } from 'node:test'
import { constants, getPipeSize, inputQueueBytes, splice } from '../lib'
import {
  collect,
  randomBytes,
  readExactly,
  sha256,
  tcpPair,
  tempDir,
  testPipe,
  throwsSystemError,
  tick,
} from './helpers'

const MiB = 1024 * 1024

test('file -> pipe -> file round trip keeps every byte, honouring both offsets', (t) => {
  const dir = tempDir(t)
  const data = randomBytes(3 * MiB + 12345, 7)
  const srcPath = path.join(dir, 'src')
  fs.writeFileSync(srcPath, data)
  const src = fs.openSync(srcPath, 'r')
  const dst = fs.openSync(path.join(dir, 'dst'), 'w+')
  t.after(() => {
    fs.closeSync(src)
    fs.closeSync(dst)
  })
  const p = testPipe(t)

  // Copy data[skip..] to dst at offset `gap`: explicit offsets on both sides.
  const skip = 4097
  const gap = 513
  let inOff = skip
  let outOff = gap
  while (inOff < data.length) {
    const moved = splice(src, inOff, p.writeFd, null, data.length - inOff)
    assert.ok(moved > 0 && moved <= getPipeSize(p.writeFd), `moved ${moved} bytes, at most one pipe-full`)
    inOff += moved
    let left = moved
    while (left > 0) {
      const n = splice(p.readFd, null, dst, outOff, left)
      outOff += n
      left -= n
    }
  }
  assert.equal(inOff, data.length)
  assert.equal(splice(src, data.length, p.writeFd, null, 100), 0, 'at end of file splice returns 0')

  const out = fs.readFileSync(path.join(dir, 'dst'))
  assert.equal(out.length, gap + data.length - skip)
  assert.ok(out.subarray(0, gap).every((b) => b === 0), 'bytes before the output offset untouched')
  assert.equal(sha256(out.subarray(gap)), sha256(data.subarray(skip)))
})

test('offset null reads at and advances the file position; an explicit offset leaves it', (t) => {
  const dir = tempDir(t)
  const data = randomBytes(10000, 3)
  const file = path.join(dir, 'f')
  fs.writeFileSync(file, data)
  const fd = fs.openSync(file, 'r')
  t.after(() => fs.closeSync(fd))
  const p = testPipe(t)

  assert.equal(splice(fd, 5000, p.writeFd, null, 100), 100)
  assert.deepEqual(readExactly(p.readFd, 100), data.subarray(5000, 5100))
  // The position is still 0: a positional splice does not move it.
  assert.equal(splice(fd, null, p.writeFd, null, 100), 100)
  assert.deepEqual(readExactly(p.readFd, 100), data.subarray(0, 100))
  // ...and the null-offset splice advanced it to 100.
  const next = Buffer.alloc(10)
  fs.readSync(fd, next, 0, 10, null)
  assert.deepEqual(next, data.subarray(100, 110))
})

test('a partial transfer is reported: 1 MiB asked, one pipe-full moved', (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'f')
  fs.writeFileSync(file, randomBytes(MiB))
  const fd = fs.openSync(file, 'r')
  t.after(() => fs.closeSync(fd))
  const p = testPipe(t)
  const capacity = getPipeSize(p.writeFd)
  const moved = splice(fd, 0, p.writeFd, null, MiB, constants.SPLICE_F_NONBLOCK)
  assert.equal(moved, capacity)
  assert.equal(inputQueueBytes(p.readFd), capacity)
})

test('a full pipe with SPLICE_F_NONBLOCK fails with EAGAIN in the SystemError shape', (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'f')
  fs.writeFileSync(file, randomBytes(256 * 1024))
  const fd = fs.openSync(file, 'r')
  t.after(() => fs.closeSync(fd))
  const p = testPipe(t)
  const capacity = getPipeSize(p.writeFd)
  assert.equal(splice(fd, 0, p.writeFd, null, capacity, constants.SPLICE_F_NONBLOCK), capacity)
  let err: NodeJS.ErrnoException | undefined
  try {
    splice(fd, 0, p.writeFd, null, 4096, constants.SPLICE_F_NONBLOCK)
  } catch (e) {
    err = e as NodeJS.ErrnoException
  }
  assert.ok(err)
  assert.equal(err.code, 'EAGAIN')
  assert.equal(err.errno, -11)
  assert.equal(err.syscall, 'splice')
  assert.equal(err.message, 'EAGAIN: resource temporarily unavailable, splice')
  assert.equal(inputQueueBytes(p.readFd), capacity, 'nothing more went in')
})

test('an offset on the pipe side is ESPIPE; two non-pipes are EINVAL', (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'f')
  fs.writeFileSync(file, 'abc')
  const fd = fs.openSync(file, 'r')
  const out = fs.openSync(path.join(dir, 'g'), 'w')
  t.after(() => {
    fs.closeSync(fd)
    fs.closeSync(out)
  })
  const p = testPipe(t)
  fs.writeSync(p.writeFd, 'xyz')
  throwsSystemError(() => splice(p.readFd, 0, out, null, 3), 'ESPIPE', 'splice')
  throwsSystemError(() => splice(fd, 0, out, null, 3), 'EINVAL', 'splice')
})

test('file -> pipe -> socket delivers the file intact to a loopback TCP peer', async (t) => {
  const dir = tempDir(t)
  const data = randomBytes(4 * MiB + 321, 11)
  const file = path.join(dir, 'f')
  fs.writeFileSync(file, data)
  const fd = fs.openSync(file, 'r')
  const pair = await tcpPair()
  t.after(() => {
    fs.closeSync(fd)
    return pair.close()
  })
  const received = collect(pair.server)
  const p = testPipe(t)

  let offset = 0
  let calls = 0
  while (offset < data.length) {
    const inPipe = splice(fd, offset, p.writeFd, null, data.length - offset)
    offset += inPipe
    let left = inPipe
    while (left > 0) {
      try {
        // The socket is libuv's, hence non-blocking: a full send buffer is EAGAIN.
        left -= splice(p.readFd, null, pair.clientFd, null, left, constants.SPLICE_F_MORE)
        calls++
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err
        await tick()
      }
    }
  }
  pair.client.end()
  const got = await received
  assert.equal(got.length, data.length)
  assert.equal(sha256(got), sha256(data))
  assert.ok(calls >= data.length / getPipeSize(p.writeFd), 'moved in pipe-sized steps')
})
