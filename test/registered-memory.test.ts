// allocRegistered(): Buffers whose pages are registered with the environment's ring,
// sent as SEND_ZC from a fixed buffer (io_uring engine). Every other Buffer and every
// other engine keeps working with them as with any memory.
import * as assert from 'node:assert/strict'
import * as dgram from 'node:dgram'
import { test } from 'node:test'
import { allocRegistered, pageOffsetOf, ZeroCopySocket } from '../lib'
import { uringUnavailable } from '../lib/engine'
import { collect, randomBytes, sha256, tcpPair } from './helpers'

const uring = uringUnavailable() === ''

test('allocRegistered: page-aligned, zeroed, checked like allocPageAligned', () => {
  const b = allocRegistered(10000)
  assert.equal(b.length, 10000)
  assert.equal(pageOffsetOf(b), 0)
  assert.ok(b.every((x) => x === 0))
  b.fill(7)
  assert.equal(b[9999], 7)
  assert.equal(allocRegistered(0).length, 0)
  for (const bad of [-1, 1.5, 2 ** 30 + 1]) assert.throws(() => allocRegistered(bad), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' })
  assert.throws(() => allocRegistered('1' as never), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
})

test('TCP: sends from registered memory go from the fixed buffer, bytes arrive exactly, stats count them', async (t) => {
  if (!uring) return t.skip(`io_uring cannot run here: ${uringUnavailable()}`)
  const pair = await tcpPair()
  t.after(() => pair.close())
  const got = collect(pair.server)
  const zc = ZeroCopySocket.from(pair.client, { engine: 'io_uring', copiedThreshold: Infinity })
  const reg = allocRegistered(1 << 20)
  const expected: Buffer[] = []
  for (let i = 0; i < 20; i++) {
    randomBytes(reg.length, 300 + i).copy(reg)
    expected.push(Buffer.from(reg))
    // Whole, and a view into the middle (still inside the registered range).
    const r = await zc.send(i % 2 === 0 ? reg : reg.subarray(4096, 4096 + 65536))
    if (i % 2 !== 0) expected[expected.length - 1] = expected[expected.length - 1]!.subarray(4096, 4096 + 65536)
    assert.equal(r.mechanism, 'io_uring')
  }
  const plain = randomBytes(100000, 9)
  await zc.send(plain) // ordinary memory on the same socket
  await zc.sendEach([reg.subarray(0, 1000), plain.subarray(0, 1000)])
  expected.push(plain, Buffer.from(reg.subarray(0, 1000)), plain.subarray(0, 1000))
  assert.ok(zc.stats.registeredSends >= 21, `registered sends counted: ${zc.stats.registeredSends}`)
  assert.ok(zc.stats.registeredSends < zc.stats.zeroCopyCalls, 'the ordinary Buffer is not counted')
  await zc.close()
  pair.client.end()
  assert.equal(sha256(await got), sha256(Buffer.concat(expected)))
})

test('UDP: a sendEach batch from one registered buffer; the epoll engine sends the same Buffer as ordinary memory', async (t) => {
  const receiver = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => receiver.bind(0, '127.0.0.1', resolve))
  t.after(() => receiver.close())
  const got: Buffer[] = []
  receiver.on('message', (m) => got.push(m))
  const reg = allocRegistered(8192)
  reg.write('registered datagram')
  for (const engine of uring ? (['io_uring', 'epoll'] as const) : (['epoll'] as const)) {
    const sender = dgram.createSocket('udp4')
    await new Promise<void>((resolve) => sender.connect(receiver.address().port, '127.0.0.1', resolve))
    const zc = ZeroCopySocket.from(sender, { engine, copiedThreshold: Infinity })
    const before = got.length
    const r = await zc.sendEach(Array.from({ length: 16 }, () => reg.subarray(0, 1000)))
    assert.equal(r.calls, 16)
    assert.equal(zc.stats.registeredSends, engine === 'io_uring' ? 16 : 0, `${engine}: registered sends`)
    const deadline = Date.now() + 2000
    while (got.length < before + 16 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
    assert.equal(got.length, before + 16)
    assert.ok(got.slice(before).every((m) => m.length === 1000 && m.toString('latin1', 0, 19) === 'registered datagram'))
    await zc.close()
    sender.close()
  }
})

test('when every slot is taken, allocRegistered gives ordinary memory, which still sends', async (t) => {
  if (!uring) return t.skip(`io_uring cannot run here: ${uringUnavailable()}`)
  const held = Array.from({ length: 1100 }, () => allocRegistered(4096)) // 1024 slots per environment
  const pair = await tcpPair()
  t.after(() => pair.close())
  const got = collect(pair.server)
  const zc = ZeroCopySocket.from(pair.client, { engine: 'io_uring', copiedThreshold: Infinity })
  const last = held[held.length - 1]!.fill(5)
  const first = held[0]!.fill(6)
  await zc.send(last)
  assert.equal(zc.stats.registeredSends, 0, 'past the slots: not registered')
  await zc.send(first)
  assert.equal(zc.stats.registeredSends, 1, 'the first one is')
  await zc.close()
  pair.client.end()
  assert.equal(sha256(await got), sha256(Buffer.concat([last, first])))
})
