// ZeroCopySocket on loopback TCP: release semantics, ordering with Node's own writes,
// and every Promise settling when the connection dies.
import * as assert from 'node:assert/strict'
import * as crypto from 'node:crypto'
import * as net from 'node:net'
import { test } from 'node:test'
import { outputQueueBytes, ZeroCopySocket, type SendResult } from '../lib'
import { collect, outcome, randomBytes, sha256, tcpPair, unixPair, zcMechanism } from './helpers'

const MiB = 1024 * 1024
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

test('a send to a reader that stops reading stays pending until the reader drains', async (t) => {
  const pair = await tcpPair()
  t.after(() => pair.close())
  pair.server.pause()
  const zc = ZeroCopySocket.from(pair.client, { copiedThreshold: Infinity })
  const data = randomBytes(32 * MiB, 3) // far more than both socket buffers hold

  let settled = false
  const sending = zc.send(data).then((r) => {
    settled = true
    return r
  })
  await sleep(250)
  assert.equal(settled, false, 'still pending after 250 ms')
  const unacked = outputQueueBytes(pair.clientFd)
  assert.ok(unacked > 0, `SIOCOUTQ shows ${unacked} bytes the peer has not acknowledged`)
  assert.ok(zc.stats.outstandingIds > 0, 'the kernel holds zero-copy ids')

  const received = collect(pair.server)
  pair.server.resume()
  const result = await sending
  assert.equal(result.bytes, data.length)
  assert.equal(result.mechanism, zcMechanism)
  // Loopback delivers locally, and local delivery copies: the kernel says so.
  assert.equal(result.copied, true)
  assert.equal(result.zeroCopy, false)
  pair.client.end()
  assert.equal(sha256(await received), sha256(data))
})

test('overwriting the buffer right after the Promise resolves cannot change what the peer reads', async (t) => {
  const pair = await tcpPair()
  t.after(() => pair.close())
  pair.server.pause() // the reader reads nothing until after the overwrite
  const zc = ZeroCopySocket.from(pair.client, { copiedThreshold: Infinity })
  const buf = Buffer.alloc(64 * 1024, 'A') // fits the paused reader's receive window
  const r = await zc.send(buf)
  assert.equal(r.mechanism, zcMechanism)
  buf.fill('B')
  const received = collect(pair.server)
  pair.server.resume()
  pair.client.end()
  const got = await received
  assert.equal(got.length, buf.length)
  assert.ok(got.every((b) => b === 0x41), 'the peer read the original bytes')
})

test('thousands of random-size sends mixed with copies and socket.write keep order and all settle', async (t) => {
  const pair = await tcpPair()
  t.after(() => pair.close())
  const received = collect(pair.server)
  const zc = ZeroCopySocket.from(pair.client, { copiedThreshold: Infinity })
  const pool = randomBytes(8 * MiB, 99)
  const expected = crypto.createHash('sha256')
  const sends: Array<Promise<SendResult>> = []
  let seed = 7
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n
  let total = 0
  for (let i = 0; i < 3000; i++) {
    const len = 1 + rand(i % 10 === 0 ? 1024 * 1024 : 64 * 1024)
    const at = rand(pool.length - len)
    const view = pool.subarray(at, at + len)
    if (i % 97 === 0) {
      // Node's own write in between: it must land exactly here in the stream.
      const text = Buffer.from(`<node write ${i}>`)
      expected.update(text)
      total += text.length
      pair.client.write(text)
    } else {
      expected.update(view)
      total += len
      sends.push(zc.send(view, { copy: i % 5 === 0 }))
    }
  }
  const results = await Promise.all(sends)
  assert.equal(results.length, sends.length)
  assert.ok(results.some((r) => r.mechanism === 'copy') && results.some((r) => r.mechanism === zcMechanism))
  assert.ok(results.filter((r) => r.mechanism === 'copy').every((r) => r.copied && !r.zeroCopy))
  pair.client.end()
  const got = await received
  assert.equal(got.length, total)
  assert.equal(sha256(got), expected.digest('hex'))
  const s = zc.stats
  assert.equal(s.outstandingIds, 0)
  assert.equal(s.unsent, 0)
  assert.equal(s.completedIds, s.zeroCopyCalls, 'every zero-copy call took one id and completed it')
})

test('headers by socket.write, body by send, trailer and end(): the peer reads them in order', async (t) => {
  const pair = await tcpPair()
  t.after(() => pair.close())
  pair.server.pause() // fill the socket so Node has to buffer
  const received = collect(pair.server)
  const zc = ZeroCopySocket.from(pair.client, { copiedThreshold: Infinity })
  const bigHead = randomBytes(8 * MiB, 5) // Node buffers most of this
  const body = randomBytes(4 * MiB, 6)
  pair.client.write(bigHead)
  assert.ok(pair.client.writableLength > 0, 'Node is buffering')
  const sending = zc.send(body)
  pair.client.write('trailer')
  pair.client.end()
  await sleep(50)
  pair.server.resume()
  const r = await sending
  assert.equal(r.bytes, body.length)
  const got = await received
  assert.equal(sha256(got), sha256(Buffer.concat([bigHead, body, Buffer.from('trailer')])))
})

test('after enough COPIED completions the socket switches to copies, and says so', async (t) => {
  const pair = await tcpPair()
  t.after(() => pair.close())
  const received = collect(pair.server)
  const zc = ZeroCopySocket.from(pair.client, { copiedThreshold: 8 })
  const buf = Buffer.alloc(64 * 1024, 1)
  const results: SendResult[] = []
  for (let i = 0; i < 20; i++) results.push(await zc.send(buf))
  assert.equal(results[0]!.mechanism, zcMechanism)
  assert.equal(zc.stats.mode, 'copy')
  assert.match(zc.stats.fallbackReason ?? '', /copied/)
  const last = results[results.length - 1]!
  assert.equal(last.mechanism, 'copy')
  assert.equal(last.zeroCopy, false)
  assert.equal(last.copied, true)
  assert.match(last.fallback ?? '', /copied the last/)
  pair.client.end()
  assert.equal((await received).length, 20 * buf.length)
})

test('a peer reset in mid-flight settles every Promise and the process lives', async (t) => {
  const pair = await tcpPair()
  t.after(() => pair.close())
  pair.server.pause()
  pair.client.on('error', () => {}) // ECONNRESET is expected
  const zc = ZeroCopySocket.from(pair.client, { copiedThreshold: Infinity })
  const buf = randomBytes(8 * MiB, 8)
  const sends = [zc.send(buf), zc.send(buf), zc.send(buf), zc.send(buf)].map(outcome)
  await sleep(100)
  pair.server.resetAndDestroy()
  const results = await Promise.race([Promise.all(sends), sleep(5000).then(() => 'timeout' as const)])
  assert.notEqual(results, 'timeout', 'every send settled')
  const outcomes = results as Awaited<(typeof sends)[number]>[]
  assert.ok(outcomes.some((o) => !o.ok), 'the reset made some sends fail')
  for (const o of outcomes) {
    if (!o.ok) assert.ok(['ECONNRESET', 'EPIPE', 'ERR_SOCKET_CLOSED'].includes(o.error.code ?? ''), String(o.error.code))
  }
  await waitFor('the socket to close', () => pair.client.destroyed)
  await zc.close()
  assert.equal(zc.stats.outstandingIds, 0)
})

test('destroy() in mid-flight: queued bytes still drain to a live reader, then every Promise settles', async (t) => {
  const pair = await tcpPair()
  t.after(() => pair.close())
  pair.server.pause()
  const zc = ZeroCopySocket.from(pair.client, { copiedThreshold: Infinity })
  const first = randomBytes(16 * MiB, 9)
  const sending = outcome(zc.send(first))
  const later = outcome(zc.send(Buffer.alloc(1024)))
  await sleep(100)
  const inKernel = zc.stats.outstandingIds
  assert.ok(inKernel > 0)
  pair.client.destroy()
  await sleep(100)
  let firstSettled = false
  void sending.then(() => (firstSettled = true))
  const laterResult = await later
  assert.equal(laterResult.ok, false, 'a send that never went out rejects')
  assert.equal(laterResult.ok ? '' : laterResult.error.code, 'ERR_SOCKET_CLOSED')
  assert.equal(firstSettled, false, 'a send whose pages the kernel holds waits for them')
  const received = collect(pair.server)
  pair.server.resume()
  const firstResult = await sending
  // Part of it never went out (the socket closed), so it rejects, but only now.
  assert.equal(firstResult.ok, false)
  const got = await received // the FIN follows the queued bytes, as close(2) would
  assert.ok(got.length > 0 && got.length <= first.length)
  assert.deepEqual(got, first.subarray(0, got.length))
  await zc.close()
})

test('destroy() with a reader that never reads: after lingerMs the connection resets and Promises reject', async (t) => {
  const pair = await tcpPair()
  t.after(() => pair.close())
  pair.server.pause()
  pair.server.on('error', () => {})
  const zc = ZeroCopySocket.from(pair.client, { copiedThreshold: Infinity, lingerMs: 300 })
  const sending = outcome(zc.send(randomBytes(16 * MiB, 10)))
  await sleep(100)
  const started = Date.now()
  pair.client.destroy()
  const r = await sending
  assert.equal(r.ok, false)
  assert.ok(Date.now() - started >= 250, 'waited for the linger time')
  assert.equal(r.ok ? '' : r.error.code, 'ERR_ZEROCOPY_ABORTED')
  await zc.close()
})

test('100 attached idle sockets cost no CPU', async (t) => {
  const pairs = await Promise.all(Array.from({ length: 50 }, () => tcpPair()))
  t.after(() => Promise.all(pairs.map((p) => p.close())))
  const sockets = pairs.flatMap((p) => [ZeroCopySocket.from(p.client), ZeroCopySocket.from(p.server)])
  assert.equal(sockets.length, 100)
  // One real exchange on each, so their error queues have been used.
  await Promise.all(sockets.map((s) => s.send(Buffer.alloc(1000))))
  await sleep(50)
  const before = process.cpuUsage()
  await sleep(500)
  const used = process.cpuUsage(before)
  const ms = (used.user + used.system) / 1000
  assert.ok(ms < 25, `idle for 500 ms used ${ms.toFixed(1)} ms of CPU`)
  await Promise.all(sockets.map((s) => s.close()))
})

test('a send rejects after the socket ended, and bad data is a TypeError', async (t) => {
  const pair = await tcpPair()
  t.after(() => pair.close())
  const zc = ZeroCopySocket.from(pair.client)
  await assert.rejects(zc.send('text' as never), { code: 'ERR_INVALID_ARG_TYPE' })
  pair.client.end()
  await assert.rejects(zc.send(Buffer.from('late')), { code: 'ERR_STREAM_WRITE_AFTER_END' })
  assert.throws(() => ZeroCopySocket.from(new net.Socket()), { code: 'ERR_SOCKET_NOT_CONNECTED' })
})

test('a Unix-domain socket (no SO_ZEROCOPY) falls back to copies, visibly', async (t) => {
  const { client, peer } = await unixPair(t)
  const received = collect(peer)
  const zc = ZeroCopySocket.from(client)
  assert.equal(zc.stats.mode, 'copy')
  assert.match(zc.stats.fallbackReason ?? '', /SO_ZEROCOPY is not supported on this socket \(ENOTSUP\)/)
  const r = await zc.send(Buffer.from('over a unix socket'))
  assert.deepEqual(
    { mechanism: r.mechanism, copied: r.copied, zeroCopy: r.zeroCopy },
    { mechanism: 'copy', copied: true, zeroCopy: false },
  )
  assert.match(r.fallback ?? '', /SO_ZEROCOPY/)
  client.end()
  assert.equal((await received).toString(), 'over a unix socket')
  await zc.close()
})

test('a corked socket: sends queue behind the corked bytes and keep their order', async (t) => {
  const pair = await tcpPair()
  t.after(() => pair.close())
  const received = collect(pair.server)
  const zc = ZeroCopySocket.from(pair.client, { copiedThreshold: Infinity })
  pair.client.cork()
  pair.client.write('one|') // buffered by the cork: writableLength > 0
  const a = zc.send(Buffer.from('two|')) // waits behind a marker, also corked
  pair.client.write(Buffer.alloc(0)) // nothing: writableLength may read 0 now
  const b = zc.send(Buffer.from('three|'))
  await sleep(20)
  assert.equal(zc.stats.unsent, 2, 'neither send overtook the corked bytes')
  pair.client.uncork()
  await Promise.all([a, b])
  pair.client.write('four')
  pair.client.end()
  assert.equal((await received).toString(), 'one|two|three|four')
})

test('onNotification is told every release range, in order, covering every completed id', async (t) => {
  const pair = await tcpPair()
  t.after(() => pair.close())
  const received = collect(pair.server)
  const ranges: Array<[number, number, boolean]> = []
  const zc = ZeroCopySocket.from(pair.client, { copiedThreshold: Infinity, onNotification: (lo, hi, copied) => ranges.push([lo, hi, copied]) })
  const views = Array.from({ length: 16 }, (_, i) => Buffer.alloc(64 * 1024, i))
  for (let round = 0; round < 4; round++) await zc.sendEach(views)
  const stats = zc.stats
  assert.equal(stats.completedIds, 64)
  assert.equal(ranges.length, stats.notifications, 'one call per notification')
  let next = ranges[0]![0]
  for (const [lo, hi, copied] of ranges) {
    assert.equal(lo, next, `${lo}..${hi} follows the last range`)
    assert.ok(hi >= lo)
    assert.equal(copied, true, 'loopback: the kernel copied')
    next = hi + 1
  }
  assert.equal(next - ranges[0]![0], 64, 'the ranges hold every id once')
  assert.ok(ranges.length < 64, `the kernel widened ranges over contiguous sends (${ranges.length} notifications)`)
  // Checked when attaching; and what an observer throws is a warning, not a lost release.
  const other = await tcpPair()
  t.after(() => other.close())
  assert.throws(() => ZeroCopySocket.from(other.client, { onNotification: 5 as never }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
  const warnings: string[] = []
  const onWarning = (w: Error) => warnings.push(w.message)
  process.on('warning', onWarning)
  t.after(() => process.off('warning', onWarning))
  const throwing = ZeroCopySocket.from(other.client, { onNotification: () => { throw new Error('observer bug') } })
  const otherReceived = collect(other.server)
  const r = await throwing.sendEach(views)
  assert.equal(r.calls, 16, 'every send settled')
  await new Promise((resolve) => setImmediate(resolve))
  assert.ok(warnings.some((m) => /onNotification observer threw: Error: observer bug/.test(m)), warnings.join('\n'))
  other.client.end()
  pair.client.end()
  assert.equal((await otherReceived).length, 16 * 64 * 1024)
  assert.equal((await received).length, 64 * 64 * 1024)
})
