// Issue 21, item 11: a send whose ArrayBuffer is detached (transferred) while it waits.
// It rejects alone with a coded TypeError (ERR_INVALID_STATE, saying how much of it had
// gone), never with V8's uncoded "Cannot perform Construct on a detached ArrayBuffer".
// If none of it went, or on a datagram socket, the sends after it go on untouched. If
// part of it is in a stream, the peer holds a cut message: the connection is reset, as
// for an abort, and the sends after it reject with the reset's reason
// (ERR_ZEROCOPY_ABORTED), not with the detached send's error.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ZeroCopySocket } from '../lib/index'
import { engine, openUdpPair, closeSocketsQuietly, randomBytes } from './helpers'
import { errText, exitWatchdog, MiB, pairFor, receive, settleAll, sleep, tcpState, track, waitAtMost, waitFor, wireVerdict } from './regress-util'

exitWatchdog()

type Detach = (buffer: ArrayBuffer) => void
const detachers: Array<[string, Detach]> = [['structuredClone transfer', (b) => void structuredClone(b, { transfer: [b] })]]
const transfer = (ArrayBuffer.prototype as { transfer?: () => ArrayBuffer }).transfer
if (typeof transfer === 'function') detachers.push(['ArrayBuffer#transfer', (b) => void transfer.call(b)])

function assertDetached(err: unknown, sentPart: boolean): void {
  const e = err as NodeJS.ErrnoException
  assert.ok(e instanceof TypeError && e.code === 'ERR_INVALID_STATE', `the detached send: want TypeError(ERR_INVALID_STATE), got ${errText(err)}`)
  assert.match(e.message, sentPart ? /detached.*after \d+ of its \d+ bytes went/ : /detached.*before any of it went/)
}

for (const [how, detach] of detachers) {
  test(`${how} after part of a send went: that send rejects ERR_INVALID_STATE, the connection is reset, later sends say why (engine ${engine})`, { timeout: 10000 }, async (t) => {
    const pair = await pairFor(t)
    const ports = [pair.server.localPort!, pair.server.remotePort!] as const
    pair.server.pause()
    const got = receive(pair.server)
    const zc = ZeroCopySocket.from(pair.client)
    const big = randomBytes(16 * MiB, 1101)
    const data = new Uint8Array(new ArrayBuffer(big.length))
    data.set(big)
    const bad = track(() => zc.send(data))
    const queued = track(() => zc.send(randomBytes(1000, 1102)))
    await waitFor('part of the send in the kernel', () => zc.stats.zeroCopyBytes + zc.stats.copyBytes > 0, 3000)
    const inKernel = zc.stats.zeroCopyBytes + zc.stats.copyBytes
    detach(data.buffer as ArrayBuffer)
    pair.server.resume()
    await settleAll([bad, queued], 5000)
    const later = track(() => zc.send(Buffer.from('later')))
    await settleAll([later], 2000)
    await waitAtMost(2000, got.done)
    assert.equal(bad.state, 'rejected')
    assertDetached(bad.error, true)
    for (const [name, p] of [['queued behind it', queued], ['made after', later]] as const) {
      assert.equal(p.state, 'rejected', `the send ${name}`)
      assert.equal(p.error?.code, 'ERR_ZEROCOPY_ABORTED', `the send ${name}: ${errText(p.error)}`)
      assert.match(p.error!.message, /detached/)
    }
    // The peer got no more than the part that went, and the connection was reset: its
    // end left the kernel's table (Node's reader may still report 'end' after a reset).
    assert.ok(got.bytes <= inKernel && got.bytes < big.length, `the peer got ${got.bytes} bytes; ${inKernel} had gone`)
    assert.ok(got.buffer().equals(big.subarray(0, got.bytes)), 'what the peer got is the start of the send')
    await waitFor('the reset to remove the peer\'s connection', () => tcpState(...ports) === 'absent', 2000)
  })

  test(`${how} while queued on a stream (none of it went): only that send rejects, the bytes around it arrive (engine ${engine})`, { timeout: 10000 }, async (t) => {
    const pair = await pairFor(t)
    pair.server.pause()
    const got = receive(pair.server)
    const zc = ZeroCopySocket.from(pair.client)
    const head = randomBytes(4 * MiB, 1103)
    const a = randomBytes(70000, 1104)
    const b = randomBytes(5000, 1105)
    const first = track(() => zc.send(head))
    const data = new Uint8Array(new ArrayBuffer(65536)).fill(0x50)
    const bad = track(() => zc.send(data))
    // In the same tick, so a batch of single sends meets it too.
    const second = track(() => zc.send(a))
    detach(data.buffer as ArrayBuffer)
    await sleep(20)
    const third = track(() => zc.send(b))
    pair.server.resume()
    await settleAll([first, bad, second, third], 5000)
    pair.client.end()
    await waitAtMost(2000, got.done)
    assert.deepEqual(
      { first: first.state, bad: bad.state, second: second.state, third: third.state, wire: wireVerdict(got.buffer(), Buffer.concat([head, a, b])) },
      { first: 'resolved', bad: 'rejected', second: 'resolved', third: 'resolved', wire: 'exact' },
    )
    assertDetached(bad.error, false)
  })

  test(`${how} on a datagram socket: only that datagram is refused (engine ${engine})`, { timeout: 10000 }, async () => {
    const { sender, receiver, got } = await openUdpPair()
    try {
      const zc = ZeroCopySocket.from(sender)
      const data = new Uint8Array(new ArrayBuffer(1000)).fill(0x51)
      const before = track(() => zc.send(Buffer.from('one')))
      const bad = track(() => zc.send(data))
      const after = track(() => zc.send(Buffer.from('two')))
      detach(data.buffer as ArrayBuffer)
      await settleAll([before, bad, after], 3000)
      const later = track(() => zc.send(Buffer.from('three')))
      await settleAll([later], 3000)
      await waitFor('three datagrams', () => got.length >= 3, 2000).catch(() => {})
      assert.deepEqual(
        { before: before.state, bad: bad.state, after: after.state, later: later.state, got: got.map(String) },
        { before: 'resolved', bad: 'rejected', after: 'resolved', later: 'resolved', got: ['one', 'two', 'three'] },
      )
      assertDetached(bad.error, false)
      await zc.close()
    } finally {
      closeSocketsQuietly([sender, receiver])
    }
  })

  test(`${how} of a sendEach message after part of the batch went: the batch rejects ERR_INVALID_STATE with err.sent, the connection is reset (engine ${engine})`, { timeout: 10000 }, async (t) => {
    const pair = await pairFor(t)
    const ports = [pair.server.localPort!, pair.server.remotePort!] as const
    pair.server.pause()
    const got = receive(pair.server)
    const zc = ZeroCopySocket.from(pair.client)
    const messages = Array.from({ length: 64 }, (_, i) => new Uint8Array(new ArrayBuffer(256 * 1024)).fill(i))
    const batch = track(() => zc.sendEach(messages))
    await waitFor('part of the batch in the kernel', () => zc.stats.zeroCopyBytes + zc.stats.copyBytes > 0, 3000)
    const inKernel = zc.stats.zeroCopyBytes + zc.stats.copyBytes
    assert.ok(inKernel < 63 * 256 * 1024, 'precondition: the last message has not gone')
    detach(messages[63]!.buffer as ArrayBuffer)
    pair.server.resume()
    await settleAll([batch], 5000)
    await waitAtMost(2000, got.done)
    assert.equal(batch.state, 'rejected')
    assertDetached(batch.error, true)
    const sent = (batch.error as { sent?: number }).sent
    assert.ok(typeof sent === 'number' && sent >= 1 && sent < 64, `err.sent: ${sent}`)
    assert.ok(got.bytes <= 63 * 256 * 1024, `the peer got ${got.bytes} bytes: nothing of the detached message`)
    await waitFor('the reset to remove the peer\'s connection', () => tcpState(...ports) === 'absent', 2000)
  })
}
