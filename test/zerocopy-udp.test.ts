// ZeroCopySocket on UDP: one datagram per send, on loopback (the kernel copies: local
// delivery) and into the namespace sink (true zero-copy, as to a real NIC).
import * as assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import * as dgram from 'node:dgram'
import * as path from 'node:path'
import { test } from 'node:test'
import { ZeroCopySocket, type SendResult } from '../lib'
import { libuvReadsUdpErrorQueue } from '../lib/zerocopy-socket'
import { createSink, leftoverNamespaces, netnsUnavailable, SINK_ADDRESS } from '../examples/netns-topology'
import { dgramCopies, engine, randomBytes, zcMechanism } from './helpers'

async function udpPair(): Promise<{ sender: dgram.Socket; receiver: dgram.Socket; close(): void }> {
  const receiver = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => receiver.bind(0, '127.0.0.1', resolve))
  const sender = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => sender.connect(receiver.address().port, '127.0.0.1', resolve))
  return {
    sender,
    receiver,
    close() {
      sender.close()
      receiver.close()
    },
  }
}

test('UDP on loopback: every datagram arrives whole and in order; the kernel reports copies', async (t) => {
  const { sender, receiver, close } = await udpPair()
  t.after(close)
  const got: Buffer[] = []
  receiver.on('message', (m) => got.push(m))
  const zc = ZeroCopySocket.from(sender, { copiedThreshold: Infinity })
  const pool = randomBytes(1024 * 1024, 17)
  let seed = 3
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n
  const expected: Buffer[] = []
  const results: SendResult[] = []
  for (let i = 0; i < 2000; ) {
    // Bounded windows: loopback UDP drops what the receive buffer cannot hold.
    const batch: Array<Promise<SendResult>> = []
    for (let j = 0; j < 8 && i < 2000; j++, i++) {
      const len = 4 + rand(16 * 1024)
      const at = rand(pool.length - len)
      const d = Buffer.from(pool.subarray(at, at + len))
      d.writeUInt32BE(i, 0) // sequence number
      expected.push(d)
      batch.push(zc.send(d, { copy: i % 7 === 0 }))
    }
    results.push(...(await Promise.all(batch)))
    const deadline = Date.now() + 2000
    while (got.length < i && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1))
  }
  assert.equal(got.length, expected.length, 'every datagram arrived')
  for (let i = 0; i < expected.length; i++) assert.ok(got[i]!.equals(expected[i]!), `datagram ${i} intact and in order`)
  if (dgramCopies()) {
    assert.match(zc.stats.fallbackReason ?? '', /reads this dgram socket's error queue/)
    assert.ok(results.every((r) => r.mechanism === 'copy'))
  } else {
    assert.equal(results.filter((r) => r.mechanism === zcMechanism).length, 2000 - Math.ceil(2000 / 7))
  }
  assert.ok(results.every((r) => r.copied && !r.zeroCopy), 'loopback: every send copied, by policy or by the kernel')
  assert.equal(zc.stats.completedIds, zc.stats.zeroCopyCalls)
  await zc.close()
})

test('libuv versions that drain UDP error queues are recognised', () => {
  assert.equal(libuvReadsUdpErrorQueue('1.46.0'), false)
  assert.equal(libuvReadsUdpErrorQueue('1.51.0'), false)
  assert.equal(libuvReadsUdpErrorQueue('1.52.1'), true)
  assert.equal(libuvReadsUdpErrorQueue('2.0.0'), true)
})

test('a dgram socket never sees zero-copy notifications as messages', async (t) => {
  const { sender, receiver, close } = await udpPair()
  t.after(close)
  const spurious: Buffer[] = []
  sender.on('message', (m) => spurious.push(m))
  const zc = ZeroCopySocket.from(sender)
  const got = new Promise<Buffer>((resolve) => receiver.once('message', resolve))
  await zc.send(Buffer.from('payload'))
  assert.equal((await got).toString(), 'payload')
  await new Promise((r) => setTimeout(r, 100))
  assert.deepEqual(spurious, [], 'the sender received nothing')
  await zc.close()
})

test('UDP send to an unconnected dgram socket is refused', async (t) => {
  const s = dgram.createSocket('udp4')
  t.after(() => s.close())
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve))
  assert.throws(() => ZeroCopySocket.from(s), { code: 'ERR_SOCKET_DGRAM_NOT_CONNECTED' })
})

test('an oversized datagram rejects with EMSGSIZE and the socket goes on', async (t) => {
  const { sender, receiver, close } = await udpPair()
  t.after(close)
  const zc = ZeroCopySocket.from(sender)
  await assert.rejects(zc.send(Buffer.alloc(70000)), { code: 'EMSGSIZE', syscall: 'sendmsg' })
  const got = new Promise<Buffer>((resolve) => receiver.once('message', resolve))
  await zc.send(Buffer.from('still fine'))
  assert.equal((await got).toString(), 'still fine')
  await zc.close()
})

interface SinkSummary {
  sends: number
  bytes: number
  zeroCopy: number
  copied: number
  stats: { completedIds: number; copiedIds: number; zeroCopyCalls: number; enobufs: number; fallbackReason: string }
}

function runSender(ns: string, count: number, size: number, window: number, mode: 'send' | 'each' = 'send'): SinkSummary {
  const script = path.join(__dirname, 'fixtures', 'udp-sender.js')
  const args = ['netns', 'exec', ns, process.execPath, script, SINK_ADDRESS, '9', String(count), String(size), String(window), mode]
  return JSON.parse(execFileSync('ip', args, { timeout: 60000 }).toString()) as SinkSummary
}

test('UDP into the namespace sink is true zero-copy; ENOBUFS is absorbed', async (t) => {
  const why = netnsUnavailable()
  if (why !== undefined) return t.skip(why)
  const sink = createSink()
  try {
    const summary = runSender(sink.sender, 2000, 60000, 16)
    if (dgramCopies()) {
      // Node 24+ on the epoll engine: the dgram socket sends copies, and says why.
      assert.equal(summary.sends, 2000)
      assert.equal(summary.copied, 2000)
      assert.match(summary.stats.fallbackReason, /error queue/)
      return
    }
    assert.equal(summary.sends, 2000)
    assert.equal(summary.bytes, 2000 * 60000)
    assert.equal(summary.zeroCopy, 2000, 'every send zero-copy')
    assert.equal(summary.copied, 0)
    assert.equal(summary.stats.completedIds, 2000)
    assert.equal(summary.stats.copiedIds, 0)

    // The same through sendEach, 64 datagrams per call (sent with the socket out of
    // the reactor's epoll set): the same ids, the same completions.
    const batched = runSender(sink.sender, 2000, 60000, 64, 'each')
    assert.equal(batched.sends, 2000)
    assert.equal(batched.zeroCopy, 2000, 'every batched send zero-copy')
    assert.equal(batched.stats.zeroCopyCalls, 2000)
    assert.equal(batched.stats.completedIds, 2000)
    assert.equal(batched.stats.copiedIds, 0)

    // Option memory (per namespace) too small for more than one notification: every
    // burst send after the first meets ENOBUFS, drains completions and retries. (The
    // io_uring engine's notifications are CQEs, not charged to option memory.)
    if (engine === 'io_uring') return
    execFileSync('ip', ['netns', 'exec', sink.sender, 'sysctl', '-qw', 'net.core.optmem_max=1024'])
    const squeezed = runSender(sink.sender, 1000, 60000, 1000)
    assert.ok(squeezed.stats.enobufs > 0, `ENOBUFS seen ${squeezed.stats.enobufs} times`)
    assert.equal(squeezed.zeroCopy, 1000, 'and every send still went zero-copy')
    assert.equal(squeezed.stats.completedIds, 1000)
    const squeezedBatch = runSender(sink.sender, 1000, 60000, 1000, 'each')
    assert.ok(squeezedBatch.stats.enobufs > 0, `sendEach: ENOBUFS seen ${squeezedBatch.stats.enobufs} times`)
    assert.equal(squeezedBatch.zeroCopy, 1000, 'and every datagram of the batch went zero-copy')
    assert.equal(squeezedBatch.stats.completedIds, 1000)
  } finally {
    sink.remove()
  }
  assert.deepEqual(leftoverNamespaces(sink.names), [], 'no namespace left behind')
})
