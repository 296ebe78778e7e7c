// vmsplice(2): exactly the caller's bytes, from any kind of view.
import * as assert from 'node:assert/strict'
import * as fs from 'node:fs'
import { test } from 'node:test'
import { allocPageAligned, constants, getPipeSize, inputQueueBytes, pageOffsetOf, setPipeSize, vmsplice } from '../lib'
import { randomBytes, readExactly, testPipe, throwsSystemError } from './helpers'

test('a Buffer subarray delivers exactly its bytes, not its neighbours', (t) => {
  const p = testPipe(t)
  const whole = randomBytes(1000, 9)
  const part = whole.subarray(123, 456)
  assert.equal(vmsplice(p.writeFd, part), part.length)
  assert.equal(inputQueueBytes(p.readFd), part.length)
  assert.deepEqual(readExactly(p.readFd, part.length), whole.subarray(123, 456))
})

test('a list of views (Buffer, TypedArray subarray, DataView, ArrayBuffer) is sent in order', (t) => {
  const p = testPipe(t)
  const buf = Buffer.from('head-')
  const words = new Uint16Array([0x4241, 0x4443, 0x4645, 0x4847]) // "ABCDEFGH" little-endian
  const wordsPart = words.subarray(1, 3) // "CDEF"
  const backing = new Uint8Array([0x30, 0x31, 0x32, 0x33, 0x34, 0x35])
  const view = new DataView(backing.buffer, 2, 3) // "234"
  const raw = new Uint8Array([0x2d, 0x21]).buffer // "-!"
  const empty = new Uint8Array(0)
  const total = vmsplice(p.writeFd, [buf, wordsPart, empty, view, raw])
  assert.equal(total, 5 + 4 + 0 + 3 + 2)
  assert.equal(readExactly(p.readFd, total).toString('latin1'), 'head-CDEF234-!')
})

test('an empty list maps nothing', (t) => {
  const p = testPipe(t)
  assert.equal(vmsplice(p.writeFd, []), 0)
  assert.equal(inputQueueBytes(p.readFd), 0)
})

test('the pipe references the caller pages until read: a later write shows through', (t) => {
  // Documents the contract in vmsplice's TSDoc: the pages are shared, not copied.
  const p = testPipe(t)
  const page = Buffer.alloc(4096, 'A')
  assert.equal(vmsplice(p.writeFd, page), 4096)
  page.fill('B')
  const got = readExactly(p.readFd, 4096)
  assert.equal(got.toString('latin1'), 'B'.repeat(4096))
})

test('a full non-blocking pipe is a partial map, then EAGAIN', (t) => {
  const p = testPipe(t, { nonBlocking: true })
  const capacity = getPipeSize(p.writeFd)
  const data = allocPageAligned(capacity * 2).fill(1)
  assert.equal(vmsplice(p.writeFd, data), capacity, 'one page per pipe slot')
  // The kernel's vmsplice alone would block here (it ignores O_NONBLOCK).
  throwsSystemError(() => vmsplice(p.writeFd, data), 'EAGAIN', 'vmsplice')
})

test('1 MiB in one call into a pipe sized to 1 MiB, page-aligned or not', (t) => {
  // Non-blocking: a blocking vmsplice would wait for room for the remainder.
  const p = testPipe(t, { nonBlocking: true })
  assert.equal(setPipeSize(p.writeFd, 1024 * 1024), 1024 * 1024)
  const aligned = allocPageAligned(1024 * 1024)
  randomBytes(1024 * 1024, 21).copy(aligned)
  assert.equal(vmsplice(p.writeFd, aligned), aligned.length)
  assert.deepEqual(readExactly(p.readFd, aligned.length), aligned)

  // Off by 16 bytes, the same 1 MiB spans 257 pages: one pipe slot short.
  const unaligned = allocPageAligned(1024 * 1024 + 16).subarray(16)
  aligned.copy(unaligned)
  const moved = vmsplice(p.writeFd, unaligned)
  assert.equal(moved, 1024 * 1024 - 16)
  assert.deepEqual(readExactly(p.readFd, moved), aligned.subarray(0, moved))
})

test('allocPageAligned returns page-aligned, zero-filled Buffers of the size asked', () => {
  for (const size of [0, 1, 4095, 4096, 65537]) {
    const b = allocPageAligned(size)
    assert.equal(b.length, size)
    assert.ok(b.every((x) => x === 0))
    if (size > 0) assert.equal(pageOffsetOf(b), 0)
  }
  assert.throws(() => allocPageAligned(-1), RangeError)
})

test('a blocking pipe with SPLICE_F_NONBLOCK is EAGAIN when full', (t) => {
  const p = testPipe(t)
  const data = allocPageAligned(getPipeSize(p.writeFd))
  assert.equal(vmsplice(p.writeFd, data, constants.SPLICE_F_NONBLOCK), data.length)
  throwsSystemError(() => vmsplice(p.writeFd, data, constants.SPLICE_F_NONBLOCK), 'EAGAIN', 'vmsplice')
})

test('vmsplice into a file (not a pipe) is EBADF', (t) => {
  const fd = fs.openSync('/dev/null', 'w')
  t.after(() => fs.closeSync(fd))
  throwsSystemError(() => vmsplice(fd, Buffer.from('x')), 'EBADF', 'vmsplice')
})
