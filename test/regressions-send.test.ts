// Issue 10 regressions, sends: one test per defect, asserting /work/wt/CONTRACT.md. Each
// names its defect; every wait has a deadline, so a hang fails instead of stalling.
import * as assert from 'node:assert/strict'
import { performance } from 'node:perf_hooks'
import { test } from 'node:test'
import { sendZeroCopy, ZeroCopySocket } from '../lib'
import { randomBytes, zcMechanism, type TcpPair } from './helpers'
import { catchUncaught, errText, isCoded, exitWatchdog, MiB, pairFor, receive, settleAll, sleep, tcpState, track, waitFor, waitAtMost, wireVerdict, within, type Tracked } from './regress-util'

exitWatchdog()
const ZC = { copiedThreshold: Infinity } // keep MSG_ZEROCOPY (loopback would switch to copies)



function writeCb(pair: TcpPair, data: string): Tracked<void> {
  return track(() => new Promise<void>((resolve, reject) => pair.client.write(data, (err) => (err ? reject(err) : resolve()))))
}

/** ES2024 resizable memory (Node 20 has it; the TypeScript lib here is ES2022). */
type Resizable = ArrayBuffer & { resize(n: number): void }
function resizable(length: number, maxByteLength: number): Resizable {
  return new (ArrayBuffer as unknown as new (n: number, o: object) => Resizable)(length, { maxByteLength })
}

function assertCoded(err: unknown, Class: ErrorConstructor, code: string, what: string): void {
  assert.ok(isCoded(err, Class, code), `${what}: want ${Class.name}(${code}), got ${errText(err)}`)
}

test('1. await close() then from() again: the next send settles and its bytes arrive exactly', { timeout: 10000 }, async (t) => {
  const pair = await pairFor(t)
  const got = receive(pair.server)
  const first = randomBytes(256 * 1024, 101)
  const second = randomBytes(256 * 1024, 102)
  const zc1 = ZeroCopySocket.from(pair.client, ZC)
  const r1 = await within(5000, zc1.send(first), 'the first send')
  assert.equal(r1.mechanism, zcMechanism, 'the first send went zero-copy')
  await within(3000, zc1.close(), 'the first instance to close')
  const zc2 = ZeroCopySocket.from(pair.client, ZC)
  assert.notEqual(zc2, zc1, 'a closed instance is not handed out again')
  const r2 = await within(3000, zc2.send(second), 'the send on the instance made after close() (the kernel does not restart its ids)')
  assert.equal(r2.bytes, second.length)
  pair.client.end()
  await within(3000, got.done, 'the peer to read to the end')
  assert.equal(wireVerdict(got.buffer(), Buffer.concat([first, second])), 'exact')
})

test('2. close() not awaited, from() again, another send: bytes in call order, no interleaving, all settle', { timeout: 10000 }, async (t) => {
  const pair = await pairFor(t)
  pair.server.pause() // both sends stay partial until the reader resumes
  const got = receive(pair.server)
  const A = randomBytes(8 * MiB, 201)
  const B = randomBytes(8 * MiB, 202)
  const zc1 = ZeroCopySocket.from(pair.client, ZC)
  const a = track(() => zc1.send(A))
  const closing = track(() => zc1.close())
  const zc2 = ZeroCopySocket.from(pair.client, ZC)
  const b = track(() => zc2.send(B))
  await sleep(100)
  pair.server.resume()
  await settleAll([a, b, closing], 6000)
  pair.client.end()
  await waitAtMost(2000, got.done)
  const wire = wireVerdict(got.buffer(), Buffer.concat([A, B]))
  assert.deepEqual(
    { first: a.state, second: b.state, close: closing.state, wire },
    { first: 'resolved', second: 'resolved', close: 'resolved', wire: 'exact' },
  )
})

// Each case: a 4 MiB send the paused reader holds up, then the refused send, then two
// good sends with a Node socket.write between them; the reader resumes.
interface PoisonCase {
  name: string
  bad: () => unknown
  /** Runs right after the bad send was made (the transfer case detaches it here). */
  afterCall?: (bad: unknown) => void
  Class: ErrorConstructor
  code: string
}

const poisonCases: PoisonCase[] = [
  { name: '1025 views', bad: () => Array.from({ length: 1025 }, () => Buffer.from('P')), Class: RangeError, code: 'ERR_OUT_OF_RANGE' },
  // eslint-disable-next-line no-sparse-arrays
  { name: 'an array with a hole', bad: () => [Buffer.from('P1'), , Buffer.from('P2')], Class: TypeError, code: 'ERR_INVALID_ARG_TYPE' },
  { name: 'a SharedArrayBuffer view', bad: () => new Uint8Array(new SharedArrayBuffer(4096)).fill(0x50), Class: TypeError, code: 'ERR_INVALID_ARG_TYPE' },
  {
    name: 'a resizable-buffer view',
    bad: () => new Uint8Array(resizable(4096, 8192)).fill(0x50),
    Class: TypeError,
    code: 'ERR_INVALID_ARG_TYPE',
  },
  {
    name: 'a buffer transferred while queued',
    bad: () => new Uint8Array(new ArrayBuffer(64 * 1024)).fill(0x50),
    afterCall: (bad) => void structuredClone((bad as Uint8Array).buffer, { transfer: [(bad as Uint8Array).buffer as ArrayBuffer] }),
    Class: Error, // the contract names only the code here
    code: 'ERR_INVALID_STATE',
  },
]

test('4. a refused send does not poison the queue: it rejects alone, later sends and socket.write complete', { timeout: 10000 }, async (t) => {
  for (const c of poisonCases) {
    await t.test(c.name, async (t) => {
      const pair = await pairFor(t)
      const uncaught = catchUncaught()
      t.after(() => uncaught.stop())
      pair.server.pause()
      const got = receive(pair.server)
      const zc = ZeroCopySocket.from(pair.client, ZC)
      const head = randomBytes(4 * MiB, 401)
      const a = randomBytes(100 * 1024, 402)
      const b = randomBytes(100 * 1024, 403)
      const first = track(() => zc.send(head))
      const badData = c.bad()
      const bad = track(() => zc.send(badData as never))
      c.afterCall?.(badData)
      const later = track(() => zc.send(a))
      const write = writeCb(pair, 'node-write')
      const last = track(() => zc.send(b))
      await sleep(50)
      pair.server.resume()
      await settleAll([first, bad, later, write, last], 1500)
      const allSettled = [first, bad, later, write, last].every((p) => p.state !== 'pending')
      if (allSettled) {
        pair.client.end()
        await waitAtMost(1000, got.done)
      }
      await sleep(20) // a reactor event after the failure must not throw either
      const errors = uncaught.stop()
      assert.equal(bad.threw, undefined, `send() threw synchronously: ${errText(bad.threw)}`)
      assert.deepEqual(
        {
          bad: bad.state,
          first: first.state,
          later: later.state,
          socketWriteCallback: write.state,
          last: last.state,
          uncaught: errors.map(errText),
          wire: wireVerdict(got.buffer(), Buffer.concat([head, a, Buffer.from('node-write'), b])),
        },
        { bad: 'rejected', first: 'resolved', later: 'resolved', socketWriteCallback: 'resolved', last: 'resolved', uncaught: [], wire: 'exact' },
        `later errors: ${[later, last, write].map((p) => (p.error ? errText(p.error) : '-')).join(' | ')}`,
      )
      assertCoded(bad.error, c.Class, c.code, 'the refused send')
    })
  }
})

test('6. a peer reset while the kernel holds the pages rejects those sends', { timeout: 10000 }, async (t) => {
  const pair = await pairFor(t)
  pair.server.pause()
  const zc = ZeroCopySocket.from(pair.client, ZC)
  // 2 MiB goes wholly into the kernel but is not released while the reader is paused;
  // 16 MiB stays partly unsent.
  const whole = track(() => zc.send(randomBytes(2 * MiB, 601)))
  const partial = track(() => zc.send(randomBytes(16 * MiB, 602)))
  await sleep(300)
  assert.deepEqual([whole.state, partial.state], ['pending', 'pending'], 'precondition: the kernel still holds both')
  assert.ok(zc.stats.outstandingIds > 0, 'precondition: ids outstanding')
  pair.server.resetAndDestroy()
  await settleAll([whole, partial], 5000)
  const codes = ['ECONNRESET', 'EPIPE', 'ERR_SOCKET_CLOSED']
  assert.deepEqual(
    { whole: whole.state, partial: partial.state },
    { whole: 'rejected', partial: 'rejected' },
    `the reset came while the kernel held their pages; whole: ${whole.error ? errText(whole.error) : JSON.stringify(whole.value)}`,
  )
  for (const s of [whole, partial]) assert.ok(codes.includes(s.error?.code ?? ''), errText(s.error))
})

test('8. resizable buffers are refused: no "code 0" rejections, no extra bytes on the wire', { timeout: 10000 }, async (t) => {
  for (const change of ['shrunk', 'grown'] as const) {
    await t.test(`${change} while queued`, async (t) => {
      const pair = await pairFor(t)
      pair.server.pause()
      const got = receive(pair.server)
      const zc = ZeroCopySocket.from(pair.client, ZC)
      const head = randomBytes(4 * MiB, 801)
      const tail = randomBytes(64 * 1024, 802)
      const rab = resizable(64 * 1024, 256 * 1024)
      const view = new Uint8Array(rab).fill(0xab) // length-tracking
      const first = track(() => zc.send(head))
      const bad = track(() => zc.send(view))
      rab.resize(change === 'shrunk' ? 1024 : 256 * 1024)
      if (change === 'grown') view.fill(0xcd, 64 * 1024) // the view tracks the new length
      const later = track(() => zc.send(tail))
      await sleep(50)
      pair.server.resume()
      await settleAll([first, bad, later], 2000)
      if ([first, bad, later].every((p) => p.state !== 'pending')) {
        pair.client.end()
        await waitAtMost(1000, got.done)
      }
      const codes = [first, bad, later].filter((p) => p.error).map((p) => String(p.error!.code))
      assert.ok(!codes.includes('0'), `no rejection with code '0' (got ${codes.join(', ')})`)
      assert.deepEqual(
        { bad: bad.state, first: first.state, later: later.state, wire: wireVerdict(got.buffer(), Buffer.concat([head, tail])) },
        { bad: 'rejected', first: 'resolved', later: 'resolved', wire: 'exact' },
        `bad: ${bad.error ? errText(bad.error) : JSON.stringify(bad.value)}`,
      )
      assertCoded(bad.error, TypeError, 'ERR_INVALID_ARG_TYPE', 'a resizable-buffer view')
    })
  }
})

test('9. lingerMs: Infinity never resets; 2^31, NaN, -5, 1.5 and a string throw at from()', { timeout: 10000 }, async (t) => {
  await t.test('Infinity: a stalled peer is still connected 200 ms after Node closed the socket', async (t) => {
    const pair = await pairFor(t)
    pair.server.pause()
    const got = receive(pair.server)
    const data = randomBytes(8 * MiB, 901)
    const zc = ZeroCopySocket.from(pair.client, { ...ZC, lingerMs: Infinity })
    const sending = track(() => zc.send(data))
    await sleep(100)
    assert.ok(zc.stats.outstandingIds > 0, 'precondition: the kernel holds pages')
    const ports = [pair.server.localPort!, pair.server.remotePort!] as const
    pair.client.destroy()
    await sleep(200)
    const state = tcpState(...ports)
    pair.server.resume()
    await within(5000, got.done, 'the peer to read what was queued')
    await settleAll([sending], 3000)
    assert.ok(['ESTABLISHED', 'CLOSE_WAIT'].includes(state), `the peer's connection after 200 ms: ${state} (a reset removes it)`)
    assert.equal(got.ended, 'end', 'the peer read a FIN, not a reset')
    assert.ok(got.bytes > 0 && got.buffer().equals(data.subarray(0, got.bytes)), 'the peer read a prefix of the data')
    assert.notEqual(sending.state, 'pending', 'the send settled once the peer read')
  })
  await t.test('invalid values throw a coded RangeError/TypeError from from() and attach nothing', async (t) => {
    const pair = await pairFor(t)
    const problems: string[] = []
    for (const [name, v] of [['2^31', 2 ** 31], ['NaN', NaN], ['-5', -5], ['1.5', 1.5], ['-Infinity', -Infinity], ["'10'", '10']] as const) {
      let thrown: unknown
      try {
        ZeroCopySocket.from(pair.client, { lingerMs: v as number })
      } catch (err) {
        thrown = err
      }
      const e = thrown as NodeJS.ErrnoException | undefined
      const ok =
        typeof v === 'number'
          ? isCoded(e, RangeError, 'ERR_OUT_OF_RANGE') || isCoded(e, TypeError, 'ERR_INVALID_ARG_TYPE')
          : isCoded(e, TypeError, 'ERR_INVALID_ARG_TYPE')
      if (!ok) problems.push(`${name}: ${thrown === undefined ? 'accepted' : errText(thrown)}`)
    }
    assert.deepEqual(problems, [])
    const got = receive(pair.server)
    await within(3000, ZeroCopySocket.from(pair.client, { lingerMs: 0 }).send(Buffer.from('ok')), 'a good send after')
    pair.client.end()
    await within(3000, got.done, 'the end')
    assert.equal(got.buffer().toString(), 'ok')
  })
})

test('10. a 2^26-length sparse array rejects at once; an all-holes array rejects', { timeout: 10000 }, async (t) => {
  const pair = await pairFor(t)
  const got = receive(pair.server)
  const zc = ZeroCopySocket.from(pair.client, ZC)
  const sparse: Buffer[] = new Array(2 ** 26)
  sparse[0] = Buffer.from('x')
  const t0 = performance.now()
  const big = track(() => zc.send(sparse))
  await settleAll([big], 5000)
  const ms = performance.now() - t0
  const holes = track(() => zc.send(new Array(4) as Buffer[]))
  await settleAll([holes], 2000)
  const after = track(() => zc.send(Buffer.from('after')))
  await settleAll([after], 3000)
  assert.ok(big.state === 'rejected' && ms < 100, `2^26 holes: ${big.state} after ${ms.toFixed(0)} ms (want a rejection well under 100 ms)`)
  assertCoded(big.error, RangeError, 'ERR_OUT_OF_RANGE', 'more than 1024 views')
  assert.equal(holes.state, 'rejected', `all holes: ${holes.state} ${JSON.stringify(holes.value ?? null)}`)
  assertCoded(holes.error, TypeError, 'ERR_INVALID_ARG_TYPE', 'an all-holes array')
  assert.equal(after.state, 'resolved', `a good send after: ${after.error ? errText(after.error) : after.state}`)
  pair.client.end()
  await within(3000, got.done, 'the end')
  assert.equal(got.buffer().toString(), 'after')
})

test('12. error shapes: coded TypeErrors, and Promise-returning calls never throw', { timeout: 10000 }, async (t) => {
  const pair = await pairFor(t)
  const problems: string[] = []
  for (const [name, target] of [["'x'", 'x'], ['{}', {}], ['null', null]] as const) {
    try {
      ZeroCopySocket.from(target as never)
      problems.push(`from(${name}) returned`)
    } catch (err) {
      if (!isCoded(err, TypeError, 'ERR_INVALID_ARG_TYPE')) problems.push(`from(${name}): ${errText(err)}`)
    }
  }
  for (const [name, target] of [['123.5', 123.5], ['{}', {}], ["'x'", 'x']] as const) {
    const r = track(() => sendZeroCopy(target as never, Buffer.from('x')))
    await settleAll([r], 2000)
    const e = r.error
    if (r.threw !== undefined) problems.push(`sendZeroCopy(${name}) threw synchronously: ${errText(r.threw)}`)
    else if (r.state !== 'rejected') problems.push(`sendZeroCopy(${name}): ${r.state}`)
    else if (!(isCoded(e, TypeError, 'ERR_INVALID_ARG_TYPE') || isCoded(e, RangeError, 'ERR_OUT_OF_RANGE')))
      problems.push(`sendZeroCopy(${name}) rejected with ${errText(e)}`)
  }
  const zc = ZeroCopySocket.from(pair.client, ZC)
  const sab = new SharedArrayBuffer(16)
  for (const [name, fn] of [
    ['send(SAB view)', () => zc.send(new Uint8Array(sab))],
    ['send(SAB)', () => zc.send(sab as never)],
    ['sendEach([SAB view])', () => zc.sendEach([new Uint8Array(sab)])],
  ] as const) {
    const r = track(fn)
    await settleAll([r], 2000)
    const e = r.error
    if (r.threw !== undefined) problems.push(`${name} threw synchronously: ${errText(r.threw)}`)
    else if (!(r.state === 'rejected' && isCoded(e, TypeError, 'ERR_INVALID_ARG_TYPE')))
      problems.push(`${name}: ${r.state} ${e ? errText(e) : ''}`)
  }
  assert.deepEqual(problems, [])
})

/** Finite numbers in [2^31, 2^33] anywhere in the instance's own fields (depth 3): a counter off by 2^32. */
function absurdNumbers(root: object): string[] {
  const found: string[] = []
  const seen = new Set<object>()
  const walk = (o: object, at: string, depth: number) => {
    if (seen.has(o) || depth > 3) return
    seen.add(o)
    for (const key of Object.getOwnPropertyNames(o)) {
      let v: unknown
      try {
        v = (o as Record<string, unknown>)[key]
      } catch {
        continue
      }
      if (typeof v === 'number' && Number.isFinite(v) && Math.abs(v) >= 2 ** 31 && Math.abs(v) <= 2 ** 33) found.push(`${at}.${key} = ${v}`)
      else if (typeof v === 'object' && v !== null && !skipWalk(v)) walk(v, `${at}.${key}`, depth + 1)
    }
  }
  walk(root, 'zc', 0)
  return found
}

function skipWalk(v: object): boolean {
  return (
    ArrayBuffer.isView(v) ||
    v instanceof ArrayBuffer ||
    v instanceof Promise ||
    v instanceof Map ||
    v instanceof Set ||
    typeof (v as { on?: unknown }).on === 'function' || // Node sockets and other emitters
    v.constructor?.name === 'Timeout'
  )
}

test('13. after a socket closes with sends in flight, the stats and counters hold no 2^32-sized value', { timeout: 10000 }, async (t) => {
  const pair = await pairFor(t)
  pair.server.pause()
  const zc = ZeroCopySocket.from(pair.client, { ...ZC, lingerMs: 200 })
  const sending = track(() => zc.send(randomBytes(8 * MiB, 1301)))
  await waitFor('ids in flight', () => zc.stats.outstandingIds > 0, 2000)
  pair.client.destroy() // the finish path: linger expires, the connection resets
  await settleAll([sending], 3000)
  assert.equal(sending.state, 'rejected', 'the send rejects once the linger expired')
  await within(3000, zc.close(), 'close() after the socket finished')
  const s = zc.stats
  const numbers = Object.entries(s).filter(([, v]) => typeof v === 'number') as Array<[string, number]>
  for (const [k, v] of numbers) assert.ok(Number.isFinite(v) && v >= 0 && v < 2 ** 31, `stats.${k} = ${v}`)
  assert.ok(s.completedIds <= s.zeroCopyCalls, `completedIds ${s.completedIds} <= zeroCopyCalls ${s.zeroCopyCalls}`)
  assert.ok(s.copiedIds <= s.completedIds)
  assert.equal(s.outstandingIds, 0)
  assert.equal(s.unsent, 0)
  // White box, name-agnostic: the 'unknown' count lives in the id tracker, not in stats.
  assert.deepEqual(absurdNumbers(zc), [], 'no counter of the instance is near 2^32')
})
