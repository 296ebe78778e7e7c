// The Promise forms run off the event loop and never touch an fd number they do not own.
import * as assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { test } from 'node:test'
import { inputQueueBytes, pipe, sendfileAsync, spliceAsync, teeAsync } from '../lib'
import { closeQuietly, randomBytes, readExactly, sha256, tempDir, testPipe } from './helpers'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

test('spliceAsync waiting on an empty blocking pipe leaves the event loop running', async (t) => {
  const p = testPipe(t)
  const out = path.join(tempDir(t), 'out')
  const outFd = fs.openSync(out, 'w')
  t.after(() => fs.closeSync(outFd))

  let settled = false
  const pending = spliceAsync(p.readFd, null, outFd, null, 1000).then((n) => {
    settled = true
    return n
  })
  // While the splice blocks on a pool thread, timers keep firing.
  const before = Date.now()
  let ticks = 0
  while (Date.now() - before < 100) {
    await sleep(5)
    ticks++
  }
  assert.ok(ticks >= 5, `event loop ran ${ticks} timers while the splice waited`)
  assert.equal(settled, false, 'still waiting for data')
  fs.writeSync(p.writeFd, 'hello')
  assert.equal(await pending, 5)
  assert.equal(fs.readFileSync(out, 'utf8'), 'hello')
})

test('closing an fd while its async call runs neither crashes nor redirects the call', async (t) => {
  const p = pipe()
  const out = path.join(tempDir(t), 'out')
  const outFd = fs.openSync(out, 'w')
  t.after(() => {
    fs.closeSync(outFd)
    closeQuietly(p.writeFd)
  })
  const pending = spliceAsync(p.readFd, null, outFd, null, 100)
  await sleep(20)
  // The caller closes its read end; a new pipe may take the same number at once.
  fs.closeSync(p.readFd)
  const reuse = testPipe(t)
  fs.writeSync(reuse.writeFd, 'not for the splice')
  // The running call holds its own duplicate of the original read end.
  fs.writeSync(p.writeFd, 'original')
  assert.equal(await pending, 8)
  assert.equal(fs.readFileSync(out, 'utf8'), 'original')
  assert.equal(inputQueueBytes(reuse.readFd), 'not for the splice'.length, 'the reused number was not touched')
})

test('sendfileAsync and teeAsync move the same bytes as their sync forms', async (t) => {
  const data = randomBytes(50000, 31)
  const file = path.join(tempDir(t), 'f')
  fs.writeFileSync(file, data)
  const fd = fs.openSync(file, 'r')
  t.after(() => fs.closeSync(fd))
  const a = testPipe(t)
  const b = testPipe(t)

  assert.equal(await sendfileAsync(a.writeFd, fd, 1000, 40000), 40000)
  assert.equal(await teeAsync(a.readFd, b.writeFd, 40000), 40000)
  assert.equal(sha256(readExactly(b.readFd, 40000)), sha256(data.subarray(1000, 41000)))
  assert.equal(sha256(readExactly(a.readFd, 40000)), sha256(data.subarray(1000, 41000)))
  // An explicit offset off-thread leaves the shared file position alone too.
  const head = Buffer.alloc(4)
  fs.readSync(fd, head, 0, 4, null)
  assert.deepEqual(head, data.subarray(0, 4))
})

test('many concurrent async splices all settle with the right bytes', async (t) => {
  const dir = tempDir(t)
  const jobs = Array.from({ length: 32 }, async (_, i) => {
    const data = randomBytes(10000 + i * 997, 100 + i)
    const src = path.join(dir, `src${i}`)
    fs.writeFileSync(src, data)
    const inFd = fs.openSync(src, 'r')
    const p = pipe()
    try {
      let moved = 0
      const chunks: Buffer[] = []
      while (moved < data.length) {
        const n = await spliceAsync(inFd, moved, p.writeFd, null, data.length - moved)
        chunks.push(readExactly(p.readFd, n))
        moved += n
      }
      assert.equal(sha256(Buffer.concat(chunks)), sha256(data))
    } finally {
      fs.closeSync(inFd)
      fs.closeSync(p.readFd)
      fs.closeSync(p.writeFd)
    }
  })
  await Promise.all(jobs)
})
