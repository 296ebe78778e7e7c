// CompletionTracker near the 2^32 wrap, with gaps, reordering and coalesced ranges.
import * as assert from 'node:assert/strict'
import { test } from 'node:test'
import * as fc from 'fast-check'
import { CompletionTracker } from '../lib/completions'

interface Send {
  name: string
  pending: number
  copied: boolean
}

function harness(firstId: number) {
  const tracker = new CompletionTracker<Send>(firstId)
  const settled: string[] = []
  const send = (name: string, calls: number): Send => {
    const s: Send = { name, pending: 0, copied: false }
    for (let i = 0; i < calls; i++) {
      tracker.take(s)
      s.pending++
    }
    return s
  }
  const complete = (lo: number, hi: number, copied = false) =>
    tracker.complete(lo, hi, copied, (s, c) => {
      s.copied ||= c
      if (--s.pending === 0) settled.push(s.name)
    })
  return { tracker, send, complete, settled }
}

test('ids are taken in order and wrap from 2^32 - 1 to 0', () => {
  const h = harness(0xfffffffe)
  const a = h.send('a', 1)
  const b = h.send('b', 1)
  const c = h.send('c', 1)
  assert.equal(h.tracker.nextId, 1)
  assert.equal(h.tracker.outstanding, 3)
  // One coalesced range across the wrap: [2^32 - 2, 0].
  assert.equal(h.complete(0xfffffffe, 0), 3)
  assert.deepEqual(h.settled, ['a', 'b', 'c'])
  assert.ok(!a.copied && !b.copied && !c.copied)
  assert.equal(h.tracker.outstanding, 0)
})

test('a send that took several ids settles only when the last one completes, in any order', () => {
  const h = harness(0xfffffff0)
  h.send('big', 20) // ids 0xfffffff0 .. 3, across the wrap
  h.send('next', 1) // id 4
  assert.equal(h.complete(2, 4), 3) // tail first, out of order
  assert.deepEqual(h.settled, ['next'])
  assert.equal(h.complete(0xfffffff0, 0xfffffff5), 6)
  assert.equal(h.complete(0xfffffffa, 1), 8) // a gap remains at 0xfffffff6..9
  assert.deepEqual(h.settled, ['next'])
  assert.equal(h.complete(0xfffffff6, 0xfffffff9, true), 4)
  assert.deepEqual(h.settled, ['next', 'big'])
})

test('COPIED on any id marks its send copied; other sends in the range stay zero-copy', () => {
  const h = harness(10)
  const a = h.send('a', 2)
  const b = h.send('b', 1)
  h.complete(10, 10)
  h.complete(11, 11, true)
  h.complete(12, 12)
  assert.equal(a.copied, true)
  assert.equal(b.copied, false)
})

test('duplicate and unknown ids are ignored and counted, never settle twice', () => {
  const h = harness(100)
  h.send('a', 1)
  assert.equal(h.complete(100, 100), 1)
  assert.equal(h.complete(100, 100), 0)
  assert.equal(h.complete(5000, 5002), 0)
  assert.deepEqual(h.settled, ['a'])
  assert.equal(h.tracker.unknown, 4)
})

test('a huge (corrupt) range completes only outstanding ids, without walking 2^32 ids', () => {
  const h = harness(7)
  h.send('a', 1)
  h.send('b', 1)
  const started = Date.now()
  assert.equal(h.complete(8, 6), 1) // [8 .. 2^32 - 1, 0 .. 6]: every id but 7
  assert.ok(Date.now() - started < 100)
  assert.deepEqual(h.settled, ['b'])
  assert.equal(h.tracker.outstanding, 1)
})

test('many sends completed in random coalesced ranges all settle exactly once', () => {
  const h = harness(0xffffff00)
  const names: string[] = []
  for (let i = 0; i < 2000; i++) {
    names.push(`s${i}`)
    h.send(`s${i}`, 1 + (i % 3))
  }
  const total = 2000 + 1999 // ids taken: sum of (1 + i % 3)
  assert.equal(h.tracker.outstanding, total)
  // Cut the id space into ranges of random length and complete them shuffled.
  const ranges: Array<[number, number]> = []
  let at = 0xffffff00
  let left = total
  let seed = 12345
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) / 65536
  while (left > 0) {
    const len = Math.min(left, 1 + Math.floor(rand() * 50))
    ranges.push([at, (at + len - 1) >>> 0])
    at = (at + len) >>> 0
    left -= len
  }
  for (let i = ranges.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    ;[ranges[i], ranges[j]] = [ranges[j]!, ranges[i]!]
  }
  for (const [lo, hi] of ranges) h.complete(lo, hi)
  assert.equal(h.tracker.outstanding, 0)
  assert.equal(h.settled.length, 2000)
  assert.deepEqual([...h.settled].sort(), [...names].sort())
})

// The ring against the simplest correct model (a Map of id -> owner): random takes,
// skipped ids (io_uring's failed SQEs), and completion ranges that are in order, out of
// order, duplicated, partly outside the window or corrupt, near the 2^32 wrap.
test('the ring tracker agrees with a Map model on random sequences (fast-check, seeded)', () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant('take' as const), owners: fc.integer({ min: 1, max: 40 }) }),
    fc.record({ kind: fc.constant('skip' as const), n: fc.integer({ min: 1, max: 3 }) }),
    fc.record({ kind: fc.constant('complete' as const), from: fc.integer({ min: -50, max: 300 }), len: fc.integer({ min: 1, max: 120 }), copied: fc.boolean() }),
    fc.record({ kind: fc.constant('corrupt' as const), lo: fc.integer({ min: 0, max: 0xffffffff }), hi: fc.integer({ min: 0, max: 0xffffffff }) }),
  )
  fc.assert(
    fc.property(fc.constantFrom(0, 0xffffff00, 0xfffffff0, 12345), fc.array(op, { maxLength: 80 }), (firstId, ops) => {
      const ring = new CompletionTracker<number>(firstId)
      const model = new Map<number, number>()
      let next = firstId >>> 0
      let owner = 0
      let seen: number[] = []
      const expected: number[] = []
      for (const o of ops) {
        if (o.kind === 'take') {
          for (let i = 0; i < o.owners; i++) {
            ring.takeAt(next, ++owner)
            model.set(next, owner)
            next = (next + 1) >>> 0
          }
        } else if (o.kind === 'skip') {
          next = (next + o.n) >>> 0 // ids no send took
        } else {
          const [lo, hi] = o.kind === 'corrupt' ? [o.lo, o.hi] : [(firstId + o.from) >>> 0, (firstId + o.from + o.len - 1) >>> 0]
          const count = ((hi - lo) >>> 0) + 1
          for (const [id, who] of [...model].sort((a, b) => ((a[0] - firstId) >>> 0) - ((b[0] - firstId) >>> 0))) {
            if (((id - lo) >>> 0) < count) {
              model.delete(id)
              expected.push(who)
            }
          }
          ring.complete(lo, hi, o.kind === 'complete' && o.copied, (w) => seen.push(w))
        }
        assert.equal(ring.outstanding, model.size)
        assert.deepEqual([...seen].sort((a, b) => a - b), [...expected].sort((a, b) => a - b))
        assert.deepEqual([...ring.pendingOwners()].sort((a, b) => a - b), [...model.values()].sort((a, b) => a - b))
      }
      const rest: number[] = []
      ring.releaseAll((w) => rest.push(w))
      assert.deepEqual(rest.sort((a, b) => a - b), [...model.values()].sort((a, b) => a - b))
      assert.equal(ring.outstanding, 0)
      seen = []
    }),
    { seed: 1312, numRuns: 300 },
  )
})
