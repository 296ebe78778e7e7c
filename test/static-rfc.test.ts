// The RFC 9110 rules serveStatic answers by, as pure functions: HTTP dates, entity tags,
// the order of conditional headers, and byte ranges. Ranges are checked against a model
// (the set of bytes the valid specs name) for random headers and sizes.
import * as assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { MAX_PARTS, parseByteRanges } from '../lib/static/byte-ranges'
import { fileEntityTag, parseEntityTags } from '../lib/static/entity-tag'
import { formatHttpDate, parseHttpDate } from '../lib/static/http-date'
import { evaluatePreconditions, ifRangeAllows, type Validators } from '../lib/static/preconditions'

const SEED = 20261207

test('HTTP dates: the three forms of RFC 9110 5.6.7 read alike, IMF-fixdate round-trips, anything else is no date', () => {
  const t = 784111777
  assert.equal(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT'), t)
  assert.equal(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT'), t)
  assert.equal(parseHttpDate('Sun Nov  6 08:49:37 1994'), t)
  assert.equal(formatHttpDate(t), 'Sun, 06 Nov 1994 08:49:37 GMT')
  for (const bad of ['', 'garbage', 'Sun, 06 Nov 1994 08:49:37 PST', '1994-11-06T08:49:37Z', 'Sun, 31 Feb 1994 08:49:37 GMT', 'Sun, 06 Nov 1994 24:49:37 GMT', '784111777']) {
    assert.equal(parseHttpDate(bad), undefined, bad)
  }
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 253402300799 }), (s) => parseHttpDate(formatHttpDate(s)) === s),
    { seed: SEED, numRuns: 500 },
  )
})

test('entity tags: lists, weak tags, * and malformed values', () => {
  assert.equal(parseEntityTags(' * '), '*')
  assert.deepEqual(parseEntityTags('"a", W/"b" ,, "c"'), [
    { weak: false, opaque: '"a"' },
    { weak: true, opaque: '"b"' },
    { weak: false, opaque: '"c"' },
  ])
  assert.deepEqual(parseEntityTags(''), [])
  for (const bad of ['a', '"a', '"a" "b"', 'w/"a"', '"a"b']) assert.equal(parseEntityTags(bad), undefined, bad)
  const tag = fileEntityTag(2049n, 1234n, 4096n, 1700000000123456789n)
  assert.match(tag, /^"[0-9a-z-]+"$/)
  assert.notEqual(tag, fileEntityTag(2049n, 1234n, 4096n, 1700000000123456790n), 'a nanosecond apart: another tag')
})

test('preconditions in RFC 9110 13.2.2 order: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since', () => {
  const v: Validators = { etag: '"x1"', lastModified: 1_000_000 }
  const earlier = formatHttpDate(999_999)
  const same = formatHttpDate(1_000_000)
  const later = formatHttpDate(1_000_001)
  const cases: Array<[string, Record<string, string>, string, 'send' | 304 | 412]> = [
    ['nothing', {}, 'GET', 'send'],
    ['If-Match matching', { 'if-match': '"x1"' }, 'GET', 'send'],
    ['If-Match weak tag never matches', { 'if-match': 'W/"x1"' }, 'GET', 412],
    ['If-Match other', { 'if-match': '"y", "z"' }, 'GET', 412],
    ['If-Match *', { 'if-match': '*' }, 'GET', 'send'],
    ['If-Match malformed', { 'if-match': 'x1' }, 'GET', 412],
    ['If-Unmodified-Since earlier', { 'if-unmodified-since': earlier }, 'GET', 412],
    ['If-Unmodified-Since same', { 'if-unmodified-since': same }, 'GET', 'send'],
    ['If-Unmodified-Since ignored beside If-Match', { 'if-match': '"x1"', 'if-unmodified-since': earlier }, 'GET', 'send'],
    ['If-Unmodified-Since not a date', { 'if-unmodified-since': 'yesterday' }, 'GET', 'send'],
    ['If-None-Match matching (weak comparison)', { 'if-none-match': 'W/"x1"' }, 'GET', 304],
    ['If-None-Match * on HEAD', { 'if-none-match': '*' }, 'HEAD', 304],
    ['If-None-Match other', { 'if-none-match': '"y"' }, 'GET', 'send'],
    ['If-None-Match matching on POST', { 'if-none-match': '"x1"' }, 'POST', 412],
    ['If-Modified-Since same', { 'if-modified-since': same }, 'GET', 304],
    ['If-Modified-Since later', { 'if-modified-since': later }, 'GET', 304],
    ['If-Modified-Since earlier', { 'if-modified-since': earlier }, 'GET', 'send'],
    ['If-Modified-Since ignored beside If-None-Match', { 'if-none-match': '"y"', 'if-modified-since': later }, 'GET', 'send'],
    ['If-Modified-Since ignored on POST', { 'if-modified-since': later }, 'POST', 'send'],
    ['412 comes before 304', { 'if-match': '"y"', 'if-none-match': '"x1"' }, 'GET', 412],
    ['If-Match passes, If-None-Match decides', { 'if-match': '"x1"', 'if-none-match': '"x1"' }, 'GET', 304],
  ]
  for (const [name, headers, method, want] of cases) assert.equal(evaluatePreconditions(method, headers, v), want, name)
})

test('If-Range: a strong tag by strong comparison, a date only when equal to a strong Last-Modified', () => {
  const v: Validators = { etag: '"x1"', lastModified: 1_000_000 }
  const now = 2_000_000
  assert.equal(ifRangeAllows({}, v, now), true)
  assert.equal(ifRangeAllows({ 'if-range': '"x1"' }, v, now), true)
  assert.equal(ifRangeAllows({ 'if-range': 'W/"x1"' }, v, now), false)
  assert.equal(ifRangeAllows({ 'if-range': '"x2"' }, v, now), false)
  assert.equal(ifRangeAllows({ 'if-range': formatHttpDate(1_000_000) }, v, now), true)
  assert.equal(ifRangeAllows({ 'if-range': formatHttpDate(1_000_001) }, v, now), false, 'a later date is no match')
  assert.equal(ifRangeAllows({ 'if-range': formatHttpDate(1_000_000) }, v, 1_000_000.5), false, 'modified this second: weak')
  assert.equal(ifRangeAllows({ 'if-range': 'garbage' }, v, now), false)
})

test('byte ranges: single, suffix, open-ended, clipped, several merged, 416 and ignored forms', () => {
  const r = (h: string, size = 1000) => parseByteRanges(h, size)
  assert.deepEqual(r('bytes=0-99'), { kind: 'ranges', ranges: [{ start: 0, end: 99 }] })
  assert.deepEqual(r('bytes=-100'), { kind: 'ranges', ranges: [{ start: 900, end: 999 }] })
  assert.deepEqual(r('bytes=-5000'), { kind: 'ranges', ranges: [{ start: 0, end: 999 }] })
  assert.deepEqual(r('bytes=990-'), { kind: 'ranges', ranges: [{ start: 990, end: 999 }] })
  assert.deepEqual(r('bytes=990-2000'), { kind: 'ranges', ranges: [{ start: 990, end: 999 }] })
  assert.deepEqual(r('BYTES = 0-0 , 500-599'), { kind: 'ranges', ranges: [{ start: 0, end: 0 }, { start: 500, end: 599 }] })
  assert.deepEqual(r('bytes=0-10,5-20'), { kind: 'ranges', ranges: [{ start: 0, end: 20 }] })
  assert.deepEqual(r('bytes=1000-'), { kind: 'unsatisfiable' })
  assert.deepEqual(r('bytes=-0'), { kind: 'unsatisfiable' })
  assert.deepEqual(r('bytes=0-0', 0), { kind: 'unsatisfiable' })
  assert.deepEqual(r('bytes=0-99999999999999999999999'), { kind: 'ranges', ranges: [{ start: 0, end: 999 }] })
  for (const h of ['items=0-1', 'bytes=', 'bytes=a-b', 'bytes=5-1', 'bytes=0-1;x', 'bytes 0-1', 'bytes=--1', 'bytes=1-2-3']) {
    assert.deepEqual(r(h), { kind: 'ignore' }, h)
  }
  const many = Array.from({ length: MAX_PARTS + 1 }, (_, i) => `${i * 200}-${i * 200}`).join(',')
  assert.deepEqual(r(`bytes=${many}`, 1 << 20), { kind: 'ignore' }, 'too many parts: the whole file')
})

test('byte ranges against a model: the parts cover exactly the bytes the valid specs name, in order, apart', () => {
  const spec = fc.oneof(
    fc.tuple(fc.nat(300), fc.option(fc.nat(300), { nil: undefined })).map(([a, b]) => (b === undefined ? `${a}-` : `${a}-${a + b}`)),
    fc.nat(300).map((n) => `-${n}`),
  )
  fc.assert(
    fc.property(fc.array(spec, { minLength: 1, maxLength: 8 }), fc.nat(400), (specs, size) => {
      const want = new Set<number>()
      for (const s of specs) {
        const [a, b] = s.split('-')
        if (a === '') {
          for (let i = Math.max(0, size - Number(b)); i < size; i++) want.add(i)
        } else {
          for (let i = Number(a); i <= (b === '' ? size - 1 : Math.min(Number(b), size - 1)); i++) want.add(i)
        }
      }
      const got = parseByteRanges(`bytes=${specs.join(', ')}`, size)
      if (want.size === 0) return got.kind === 'unsatisfiable'
      if (got.kind !== 'ranges') return false
      const covered = new Set<number>()
      let prevEnd = -Infinity
      for (const { start, end } of got.ranges) {
        if (start <= prevEnd + 1 || end < start || end >= size) return false
        prevEnd = end
        for (let i = start; i <= end; i++) covered.add(i)
      }
      // Merging may fill gaps shorter than a part's headers, never reach outside the file.
      return [...want].every((i) => covered.has(i)) && covered.size - want.size <= 80 * got.ranges.length * specs.length
    }),
    { seed: SEED, numRuns: 2000 },
  )
})
