// ZeroCopySocket.sendEach: many sends in one native call (sendmmsg for datagrams), one
// Promise for all of them. Each message must still be its own send: its own datagram,
// its own MSG_ZEROCOPY id, in order with everything else on the socket.
import * as assert from 'node:assert/strict'
import { test } from 'node:test'
import { allocPageAligned, constants, dup, readErrorQueue, send, setZeroCopy, ZeroCopySocket } from '../lib'
import { native } from '../lib/native'
import { dgramSocketFd } from '../lib/node-internals'
import { collect, dgramCopies, randomBytes, sha256, tcpPair, udpPair } from './helpers'

async function until(done: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2))
}

test('kernel fact: an empty UDP datagram sent with MSG_ZEROCOPY takes an id', async (t) => {
  const { sender, got } = await udpPair(t)
  // A duplicate of the connected socket that libuv does not watch (Node's handle is
  // closed): libuv 1.52+ would read the error queue of the one it watches.
  const fd = dup(dgramSocketFd(sender)!)
  t.after(() => native.closeFd(fd))
  await new Promise<void>((resolve) => sender.close(resolve))
  setZeroCopy(fd, true)
  assert.equal(send(fd, Buffer.alloc(0), constants.MSG_ZEROCOPY), 0)
  assert.equal(send(fd, Buffer.from('x'), constants.MSG_ZEROCOPY), 1)
  await until(() => got.length === 2)
  const ids: number[] = []
  await until(() => {
    for (const e of readErrorQueue(fd)) for (let id = e.info; id <= e.data; id++) ids.push(id)
    return ids.length >= 2
  })
  // The UDP header counts as length, so the kernel takes an id even for 0 bytes
  // (a TCP send of 0 bytes takes none). sendEach counts it the same way.
  assert.deepEqual(ids, [0, 1])
  assert.deepEqual(got.map((m) => m.length), [0, 1])
})

test('UDP: every message of a batch is its own datagram, in order, empty ones too', async (t) => {
  const { sender, got } = await udpPair(t)
  const zc = ZeroCopySocket.from(sender, { copiedThreshold: Infinity })
  const pool = randomBytes(256 * 1024, 5)
  const expected: Buffer[] = []
  let calls = 0
  for (let b = 0; b < 10; b++) {
    const batch: Buffer[] = []
    for (let i = 0; i < 50; i++) {
      const n = expected.length + batch.length
      const len = n % 17 === 0 ? 0 : 4 + ((n * 7919) % 16000)
      batch.push(pool.subarray(n * 97, n * 97 + len))
    }
    const r = await zc.sendEach(batch)
    assert.equal(r.calls, 50, 'one send call per message')
    assert.equal(r.bytes, batch.reduce((s, m) => s + m.length, 0))
    calls += r.calls
    expected.push(...batch)
    await until(() => got.length === expected.length)
  }
  assert.equal(got.length, expected.length, 'every datagram arrived')
  for (let i = 0; i < expected.length; i++) assert.ok(got[i]!.equals(expected[i]!), `datagram ${i}`)
  const s = zc.stats
  if (!dgramCopies()) {
    assert.equal(s.zeroCopyCalls, calls, 'every message took an id')
    assert.equal(s.completedIds, calls, 'and every id completed')
  }
  assert.equal(s.outstandingIds, 0)
  await zc.close()
})

test('UDP: a refused datagram stops its batch, which rejects after the earlier ones are released', async (t) => {
  const { sender, got } = await udpPair(t)
  const zc = ZeroCopySocket.from(sender, { copiedThreshold: Infinity })
  const a = Buffer.from('first')
  const b = Buffer.from('second')
  const err = await zc.sendEach([a, b, Buffer.alloc(70000), Buffer.from('never')]).then(
    () => assert.fail('resolved'),
    (e: NodeJS.ErrnoException & { sent: number }) => e,
  )
  assert.equal(err.code, 'EMSGSIZE')
  assert.equal(err.syscall, 'sendmmsg')
  assert.equal(err.sent, 2, 'two datagrams went before it')
  assert.equal(zc.stats.outstandingIds, 0, 'settled only once the kernel released them')
  await until(() => got.length === 2)
  const r = await zc.sendEach([Buffer.from('after')])
  assert.equal(r.calls, 1)
  await until(() => got.length === 3)
  assert.deepEqual(got.map(String), ['first', 'second', 'after'])
  await zc.close()
})

test('TCP: a batch against a paused reader waits for room, splits short sends and keeps order with socket.write', async (t) => {
  const pair = await tcpPair()
  t.after(() => pair.close())
  pair.server.pause()
  const zc = ZeroCopySocket.from(pair.client, { copiedThreshold: Infinity })
  const big = allocPageAligned(1 << 20)
  randomBytes(big.length, 9).copy(big)
  // 96 sends of 200-300 KiB from one buffer (~24 MiB): more than the socket buffers hold.
  const messages = Array.from({ length: 96 }, (_, i) => big.subarray((i * 4099) % 4096, (i * 4099) % 4096 + 200_000 + i * 1000))
  pair.client.write('<head>')
  const sending = zc.sendEach(messages)
  pair.client.write('<tail>')
  await new Promise((r) => setTimeout(r, 100))
  assert.ok(zc.stats.eagain > 0, 'the kernel said EAGAIN and the batch waited for room')
  const received = collect(pair.server)
  pair.server.resume()
  const r = await sending
  assert.equal(r.bytes, messages.reduce((s, m) => s + m.length, 0))
  assert.ok(r.calls >= messages.length, `${r.calls} send calls for ${messages.length} messages`)
  pair.client.end()
  const expected = Buffer.concat([Buffer.from('<head>'), ...messages, Buffer.from('<tail>')])
  const got = await received
  assert.equal(got.length, expected.length)
  assert.equal(sha256(got), sha256(expected), 'every byte, in order')
  assert.equal(zc.stats.completedIds, zc.stats.zeroCopyCalls)
})

test('sendEach refuses what is not an Array of views', async (t) => {
  const { sender } = await udpPair(t)
  const zc = ZeroCopySocket.from(sender)
  for (const bad of ['x', Buffer.from('x'), [Buffer.from('x'), 'y'], [1]]) {
    await assert.rejects(zc.sendEach(bad as never), { code: 'ERR_INVALID_ARG_TYPE' })
  }
  assert.equal(zc.stats.sends, 0)
  await zc.close()
})

test('the native batch call checks every argument before a send', async (t) => {
  const { sender, got } = await udpPair(t)
  const fd = dup(dgramSocketFd(sender)!)
  t.after(() => native.closeFd(fd))
  const out = new Float64Array(2)
  const ok = [Buffer.from('a')]
  const cases: Array<[unknown[], string]> = [
    [[-1, ok, 0, 0, 0, true, out], 'ERR_OUT_OF_RANGE'],
    [[fd, 'x', 0, 0, 0, true, out], 'ERR_INVALID_ARG_TYPE'],
    [[fd, ok, 2, 0, 0, true, out], 'ERR_OUT_OF_RANGE'], // first past the end
    [[fd, ok, 0, 2, 0, true, out], 'ERR_OUT_OF_RANGE'], // offset past the first message
    [[fd, ok, 0, -1, 0, true, out], 'ERR_OUT_OF_RANGE'],
    [[fd, ok, 0, 0, 0, 'yes', out], 'ERR_INVALID_ARG_TYPE'],
    [[fd, ok, 0, 0, 0, true, new Float64Array(1)], 'ERR_INVALID_ARG_TYPE'],
    [[fd, ok, 0, 0, 0, true, new Uint32Array(2)], 'ERR_INVALID_ARG_TYPE'],
    [[fd, [Buffer.from('a'), 7], 0, 0, 0, true, out], 'ERR_INVALID_ARG_TYPE'],
  ]
  const trySendEach = native.trySendEach as unknown as (...args: unknown[]) => number
  for (const [args, code] of cases) assert.throws(() => trySendEach(...args), { code }, JSON.stringify(args.slice(1, 6)))
  // A getter that detaches an earlier message's buffer: refused, nothing sent.
  const ab = new ArrayBuffer(64)
  const list: unknown[] = [new Uint8Array(ab)]
  Object.defineProperty(list, 1, {
    enumerable: true,
    get() {
      structuredClone(ab, { transfer: [ab] })
      return Buffer.from('second')
    },
  })
  assert.throws(() => trySendEach(fd, list, 0, 0, 0, true, out), { code: 'ERR_INVALID_STATE', message: /messages\[0\]/ })
  await new Promise((r) => setTimeout(r, 50))
  assert.equal(got.length, 0, 'no datagram left')
})

test('TCP: a peer reset in the middle of a batch rejects it once the kernel let go, nothing left outstanding', async (t) => {
  const pair = await tcpPair()
  t.after(() => pair.close())
  pair.server.pause()
  const zc = ZeroCopySocket.from(pair.client, { copiedThreshold: Infinity })
  const big = allocPageAligned(256 * 1024).fill(3)
  const sending = zc.sendEach(Array.from({ length: 200 }, () => big)) // 50 MiB: far more than the buffers hold
  await new Promise((r) => setTimeout(r, 100))
  assert.ok(zc.stats.unsent > 0 && zc.stats.outstandingIds > 0, 'the batch is part sent, part waiting for room')
  pair.server.resetAndDestroy()
  await assert.rejects(sending, { code: 'ECONNRESET' })
  assert.equal(zc.stats.outstandingIds, 0, 'every id completed before the rejection')
})

test('TCP: empty messages anywhere in a batch are skipped without a send, also behind EAGAIN', async (t) => {
  const pair = await tcpPair()
  t.after(() => pair.close())
  const zc = ZeroCopySocket.from(pair.client, { copiedThreshold: Infinity })
  const none = Buffer.alloc(0)
  const small = await zc.sendEach([none, Buffer.from('ab'), none, none, Buffer.from('c'), none])
  assert.deepEqual([small.bytes, small.calls], [3, 2], 'two sends, for the two non-empty messages')
  // Against a paused reader the batch stops at EAGAIN with empty messages next in line.
  pair.server.pause()
  const big = allocPageAligned(1 << 20)
  randomBytes(big.length, 4).copy(big)
  const messages = Array.from({ length: 64 }, (_, i) => (i % 2 === 0 ? none : big.subarray(0, 500_000)))
  const sending = zc.sendEach([...messages, none])
  await new Promise((r) => setTimeout(r, 100))
  assert.ok(zc.stats.eagain > 0, 'it waited for room')
  const received = collect(pair.server)
  pair.server.resume()
  const r = await sending
  assert.equal(r.bytes, 32 * 500_000)
  pair.client.end()
  const got = await received
  assert.equal(got.length, 3 + 32 * 500_000)
  assert.equal(sha256(got), sha256(Buffer.concat([Buffer.from('abc'), ...messages])))
  assert.equal(zc.stats.completedIds, zc.stats.zeroCopyCalls)
})
