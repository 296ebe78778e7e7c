// tee(2): the copy gets the bytes, the source keeps them.
import * as assert from 'node:assert/strict'
import * as fs from 'node:fs'
import { test } from 'node:test'
import { constants, inputQueueBytes, tee } from '../lib'
import { randomBytes, readExactly, testPipe, throwsSystemError } from './helpers'

test('tee duplicates pipe data and leaves the source readable', (t) => {
  const a = testPipe(t)
  const b = testPipe(t)
  const data = randomBytes(40000, 5)
  fs.writeSync(a.writeFd, data)
  assert.equal(inputQueueBytes(a.readFd), data.length)

  assert.equal(tee(a.readFd, b.writeFd, data.length), data.length)
  assert.equal(inputQueueBytes(a.readFd), data.length, 'the source still holds every byte')
  assert.equal(inputQueueBytes(b.readFd), data.length)
  assert.deepEqual(readExactly(b.readFd, data.length), data)
  assert.deepEqual(readExactly(a.readFd, data.length), data)
})

test('tee of part of the data copies only that part', (t) => {
  const a = testPipe(t)
  const b = testPipe(t)
  fs.writeSync(a.writeFd, 'hello world')
  assert.equal(tee(a.readFd, b.writeFd, 5), 5)
  assert.equal(readExactly(b.readFd, 5).toString(), 'hello')
  assert.equal(readExactly(a.readFd, 11).toString(), 'hello world')
})

test('tee from an empty pipe with SPLICE_F_NONBLOCK is EAGAIN; from a non-pipe EINVAL', (t) => {
  const a = testPipe(t)
  const b = testPipe(t)
  throwsSystemError(() => tee(a.readFd, b.writeFd, 10, constants.SPLICE_F_NONBLOCK), 'EAGAIN', 'tee')
  const fd = fs.openSync(__filename, 'r')
  t.after(() => fs.closeSync(fd))
  throwsSystemError(() => tee(fd, b.writeFd, 10), 'EINVAL', 'tee')
})

test('tee with no writers left and an empty source returns 0', (t) => {
  const a = testPipe(t)
  const b = testPipe(t)
  fs.closeSync(a.writeFd)
  assert.equal(tee(a.readFd, b.writeFd, 10), 0)
})
