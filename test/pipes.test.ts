// pipe(), pipe capacity, and the queue sizes the kernel reports.
import * as assert from 'node:assert/strict'
import * as fs from 'node:fs'
import { test } from 'node:test'
import { constants, getPipeSize, inputQueueBytes, outputQueueBytes, pipe, setPipeSize } from '../lib'
import { closeQuietly, collect, tcpPair, testPipe, throwsSystemError } from './helpers'

/** The fd's open-file flags as the kernel reports them (octal in /proc). */
function fdFlags(fd: number): number {
  const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8')
  const m = /^flags:\s+([0-7]+)$/m.exec(info)
  assert.ok(m, 'fdinfo has flags')
  return parseInt(m[1]!, 8)
}

test('pipe() is close-on-exec and blocking by default', (t) => {
  const p = testPipe(t)
  for (const fd of [p.readFd, p.writeFd]) {
    assert.ok(fdFlags(fd) & constants.O_CLOEXEC, 'O_CLOEXEC')
    assert.equal(fdFlags(fd) & constants.O_NONBLOCK, 0, 'blocking')
  }
})

test('pipe() options set O_NONBLOCK and clear O_CLOEXEC', (t) => {
  const p = testPipe(t, { nonBlocking: true, closeOnExec: false })
  for (const fd of [p.readFd, p.writeFd]) {
    assert.ok(fdFlags(fd) & constants.O_NONBLOCK)
    assert.equal(fdFlags(fd) & constants.O_CLOEXEC, 0)
  }
  throwsSystemError(() => fs.readSync(p.readFd, Buffer.alloc(1)), 'EAGAIN', 'read')
})

test('pipe capacity: read, grow, shrink; the kernel rounds up to pages', (t) => {
  const p = testPipe(t)
  assert.equal(getPipeSize(p.writeFd), 65536)
  assert.equal(setPipeSize(p.writeFd, 1024 * 1024), 1024 * 1024)
  assert.equal(getPipeSize(p.readFd), 1024 * 1024, 'both ends share one pipe')
  assert.equal(setPipeSize(p.writeFd, 5000), 8192)
  const notAPipe = fs.openSync('/dev/null', 'r')
  t.after(() => fs.closeSync(notAPipe))
  throwsSystemError(() => getPipeSize(notAPipe), 'EBADF', 'fcntl')
})

test('shrinking below the bytes queued is EBUSY', (t) => {
  const p = testPipe(t)
  fs.writeSync(p.writeFd, Buffer.alloc(20000))
  throwsSystemError(() => setPipeSize(p.writeFd, 4096), 'EBUSY', 'fcntl')
})

test('inputQueueBytes counts a pipe and a socket receive queue', async (t) => {
  const p = testPipe(t)
  assert.equal(inputQueueBytes(p.readFd), 0)
  fs.writeSync(p.writeFd, Buffer.alloc(1234))
  assert.equal(inputQueueBytes(p.readFd), 1234)

  const pair = await tcpPair()
  t.after(() => pair.close())
  pair.server.pause()
  const serverFd = (pair.server as unknown as { _handle: { fd: number } })._handle.fd
  pair.client.write(Buffer.alloc(5000))
  const deadline = Date.now() + 2000
  while (inputQueueBytes(serverFd) < 5000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
  assert.equal(inputQueueBytes(serverFd), 5000)
  assert.equal(outputQueueBytes(pair.clientFd), 0, 'loopback acknowledged everything')
  pair.server.resume()
  const done = collect(pair.server)
  pair.client.end()
  assert.equal((await done).length, 5000)
})

test('outputQueueBytes of a pipe is ENOTTY; queue sizes of a closed fd are EBADF', () => {
  const p = pipe()
  closeQuietly(p.writeFd)
  throwsSystemError(() => outputQueueBytes(p.readFd), 'ENOTTY', 'ioctl')
  closeQuietly(p.readFd)
  throwsSystemError(() => inputQueueBytes(p.readFd), 'EBADF', 'ioctl')
})
