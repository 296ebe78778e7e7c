// Same-tick batching (lib/send-batch.ts): single send() calls made in one tick on one
// socket reach the kernel in one native call (one sendmmsg or sendmsg loop on the epoll
// engine, one io_uring_enter on the io_uring engine), each still its own send, in order,
// with its own result; Node's writes between them keep their place.
import * as assert from 'node:assert/strict'
import { test } from 'node:test'
import { ZeroCopySocket, type SendResult } from '../lib'
import { uringUnavailable } from '../lib/engine'
import { uringHub } from '../lib/uring'
import { collect, randomBytes, sha256, tcpPair, udpPair } from './helpers'

const ENGINES = uringUnavailable() === '' ? (['io_uring', 'epoll'] as const) : (['epoll'] as const)

for (const engine of ENGINES) {
  test(`${engine}: 32 datagrams sent in one tick go in one native call, whole and in order`, async (t) => {
    const { sender, got } = await udpPair(t)
    const zc = ZeroCopySocket.from(sender, { engine, copiedThreshold: Infinity })
    const sent = Array.from({ length: 32 }, (_, i) => randomBytes(1000 + i, 70 + i))
    const results = await Promise.all(sent.map((d) => zc.send(d)))
    assert.equal(zc.stats.sameTickBatches, 1, 'one native call for the tick')
    assert.ok(results.every((r: SendResult) => r.calls === 1), 'each its own send')
    assert.deepEqual(
      results.map((r) => r.bytes),
      sent.map((d) => d.length),
    )
    const deadline = Date.now() + 2000
    while (got.length < 32 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
    assert.equal(got.length, 32)
    for (let i = 0; i < 32; i++) assert.ok(got[i]!.equals(sent[i]!), `datagram ${i} in order`)
    // Node 24+ dgram sockets copy on the epoll engine (libuv reads their error queue).
    if (zc.stats.mode === 'zerocopy') assert.equal(zc.stats.completedIds, 32)
    await zc.close()
  })

  test(`${engine}: TCP sends of one tick batch; a socket.write among them keeps its place`, async (t) => {
    const pair = await tcpPair()
    t.after(() => pair.close())
    const got = collect(pair.server)
    const zc = ZeroCopySocket.from(pair.client, { engine, copiedThreshold: Infinity })
    const parts = [1, 2, 3, 4, 5].map((i) => randomBytes(50_000 * i, 90 + i))
    const p1 = zc.send(parts[0]!)
    const p2 = zc.send(parts[1]!)
    pair.client.write(parts[2]!) // held until the two sends are in the kernel
    const p4 = zc.send(parts[3]!) // behind Node's write (a marker)
    const p5 = zc.send(parts[4]!)
    const results = await Promise.all([p1, p2, p4, p5])
    assert.ok(zc.stats.sameTickBatches >= 1, `batched: ${zc.stats.sameTickBatches}`)
    assert.deepEqual(
      results.map((r) => r.bytes),
      [parts[0]!.length, parts[1]!.length, parts[3]!.length, parts[4]!.length],
    )
    await zc.close()
    pair.client.end()
    assert.equal(sha256(await got), sha256(Buffer.concat(parts)))
  })

  test(`${engine}: a buffer detached after send() but before its tick ended fails alone; the batch around it goes`, async (t) => {
    const pair = await tcpPair()
    t.after(() => pair.close())
    const got = collect(pair.server)
    const zc = ZeroCopySocket.from(pair.client, { engine, copiedThreshold: Infinity })
    const a = randomBytes(10_000, 1)
    const b = new Uint8Array(new ArrayBuffer(10_000)).fill(2)
    const c = randomBytes(10_000, 3)
    const pa = zc.send(a)
    const pb = zc.send(b)
    const pc = zc.send(c)
    structuredClone(b.buffer, { transfer: [b.buffer] }) // detaches b's memory now
    assert.equal(b.byteLength, 0)
    const [ra, rb, rc] = await Promise.allSettled([pa, pb, pc])
    assert.equal(ra.status, 'fulfilled')
    assert.equal(rb.status, 'rejected')
    assert.equal((rb as PromiseRejectedResult).reason.code, 'ERR_INVALID_STATE')
    assert.equal(rc.status, 'fulfilled')
    await zc.close()
    pair.client.end()
    assert.equal(sha256(await got), sha256(Buffer.concat([a, c])))
  })
}

// io_uring: the sends of every socket made in one tick share one io_uring_enter
// (lib/send-batch.ts); the ring counts the enters that offered SQEs, as the kernel saw them.
if (ENGINES.includes('io_uring' as never)) {
  test('io_uring: single sends on 6 sockets (UDP and TCP) in one tick go in one io_uring_enter, each whole and in order', async (t) => {
    const udps = await Promise.all([0, 1, 2].map(() => udpPair(t)))
    const tcps = await Promise.all([0, 1, 2].map(() => tcpPair()))
    t.after(() => tcps.forEach((p) => p.close()))
    const tcpGot = tcps.map((p) => collect(p.server))
    const zcs = [...udps.map((u) => ZeroCopySocket.from(u.sender, { engine: 'io_uring', copiedThreshold: Infinity })), ...tcps.map((p) => ZeroCopySocket.from(p.client, { engine: 'io_uring', copiedThreshold: Infinity }))]
    const data = zcs.map((_, s) => Array.from({ length: 4 }, (_, i) => randomBytes(2000 + 100 * s + i, 10 * s + i)))
    // Warm: the first send of a socket may probe it; count a later tick.
    await Promise.all(zcs.map((zc) => zc.send(randomBytes(10, 1))))
    const ring = uringHub().ring
    const before = ring.submits
    const results = await Promise.all(zcs.flatMap((zc, s) => data[s]!.map((d) => zc.send(d))))
    assert.equal(ring.submits - before, 1, 'one io_uring_enter took the tick\'s sends of all 6 sockets')
    assert.ok(results.every((r) => r.mechanism === 'io_uring' && r.calls === 1))
    const deadline = Date.now() + 2000
    for (const [s, u] of udps.entries()) {
      while (u.got.length < 5 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
      assert.equal(u.got.length, 5)
      for (let i = 0; i < 4; i++) assert.ok(u.got[i + 1]!.equals(data[s]![i]!), `socket ${s} datagram ${i} in order`)
    }
    await Promise.all(zcs.map((zc) => zc.close()))
    for (const p of tcps) p.client.end()
    for (const [k] of tcps.entries()) {
      const s = 3 + k
      assert.equal(sha256(await tcpGot[k]!), sha256(Buffer.concat([randomBytes(10, 1), ...data[s]!])), `tcp socket ${k}: the bytes in order`)
    }
  })

  test('io_uring: one tick of 3 x 120 single sends (more SQEs than the ring holds) goes out whole; every Promise settles', async (t) => {
    const udps = await Promise.all([0, 1, 2].map(() => udpPair(t)))
    const zcs = udps.map((u) => ZeroCopySocket.from(u.sender, { engine: 'io_uring', copiedThreshold: Infinity }))
    const data = zcs.map((_, s) => Array.from({ length: 120 }, (_, i) => randomBytes(200 + i, 1000 * s + i)))
    const before = uringHub().ring.submits
    const all = Promise.all(zcs.flatMap((zc, s) => data[s]!.map((d) => zc.send(d))))
    const results = await Promise.race([all, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('a send never settled')), 5000))])
    assert.equal(results.length, 360)
    assert.ok(uringHub().ring.submits - before >= 2, 'the full SQ went to the kernel before the tick ended')
    const deadline = Date.now() + 3000
    for (const [s, u] of udps.entries()) {
      while (u.got.length < 120 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
      assert.equal(u.got.length, 120, `socket ${s}: every datagram`)
      for (let i = 0; i < 120; i++) assert.ok(u.got[i]!.equals(data[s]![i]!), `socket ${s} datagram ${i} in order`)
    }
    await Promise.all(zcs.map((zc) => zc.close()))
  })

  // A channel's conclusion after the shared enter may run user code (onNotification)
  // that reaches a socket whose call the same enter made but whose channel has not
  // concluded yet: that socket concludes first, and nothing is lost, doubled or hung.
  test('io_uring: onNotification of one socket sends on and closes others of the same shared enter; every byte once, every Promise settles', async (t) => {
    const [a, b, c] = await Promise.all([0, 1, 2].map(() => udpPair(t)))
    const zcB = ZeroCopySocket.from(b!.sender, { engine: 'io_uring', copiedThreshold: Infinity })
    const zcC = ZeroCopySocket.from(c!.sender, { engine: 'io_uring', copiedThreshold: Infinity })
    const late: Array<Promise<unknown>> = []
    const extra = [randomBytes(300, 7), randomBytes(301, 8), randomBytes(302, 9)]
    let fired = 0
    const zcA = ZeroCopySocket.from(a!.sender, {
      engine: 'io_uring',
      copiedThreshold: Infinity,
      onNotification: () => {
        if (fired++ > 0) return
        late.push(zcB.sendEach([extra[0]!, extra[1]!]), zcB.send(extra[2]!), zcC.close())
      },
    })
    const data = [0, 1, 2].map((s) => Array.from({ length: 3 }, (_, i) => randomBytes(1000 + i, 50 * s + i)))
    const zcs = [zcA, zcB, zcC]
    const before = uringHub().ring.submits
    const sent = Promise.all(zcs.flatMap((zc, s) => data[s]!.map((d) => zc.send(d))))
    const all = Promise.all([sent, new Promise((resolve) => setTimeout(resolve, 50)).then(() => Promise.all(late))])
    await Promise.race([all, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('a Promise never settled')), 5000))])
    assert.ok(fired > 0, 'the observer ran')
    assert.ok(uringHub().ring.submits - before >= 1)
    const deadline = Date.now() + 2000
    const want = [data[0]!, [...data[1]!, ...extra], data[2]!]
    for (const [s, u] of [a!, b!, c!].entries()) {
      while (u.got.length < want[s]!.length && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
      await new Promise((resolve) => setTimeout(resolve, 20)) // nothing more comes
      assert.deepEqual(
        u.got.map((m) => sha256(m)),
        want[s]!.map((m) => sha256(m)),
        `socket ${s}: each datagram once, in order`,
      )
    }
    await zcA.close()
    await zcB.close()
  })
}
