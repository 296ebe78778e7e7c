// Generated arguments for the entry-point fuzz (test/fuzz-entry-points.test.ts). Each
// is an `Arg`: a label (what a counterexample prints), a builder run right before the
// call (fds, detached buffers and closed sockets must be fresh), and the error codes
// the value alone must provoke (empty: a valid value). The judging rules are at the end.
import * as fc from 'fast-check'
import * as os from 'node:os'

export const TYPE = 'ERR_INVALID_ARG_TYPE'
export const RANGE = 'ERR_OUT_OF_RANGE'
export const STATE = 'ERR_INVALID_STATE'
/** Any coded error is right, but it must be an error. */
export const ANY = '*'
/** The contract does not say: may succeed, or fail with any coded error. */
export const MAYBE = '?'

/** What a builder may use: the run's kernel objects, and cleanup after the call. */
export interface Env {
  fd(kind: string): number
  obj(kind: string): unknown
  later(fn: () => void): void
  /** What a file argument holds (sendFileZeroCopy's expected bytes), and whether it has no size to map. */
  content?: Buffer
  streamy?: boolean
}

export class Arg {
  constructor(
    readonly label: string,
    readonly make: (env: Env) => unknown,
    readonly bad: readonly string[] = [],
    /** Must be refused quickly (decided without walking a huge array). */
    readonly quick = false,
  ) {}
  [fc.toStringMethod](): string {
    return this.label
  }
  toString(): string {
    return this.label
  }
}

const val = (label: string, v: unknown, bad: readonly string[] = []): Arg => new Arg(label, () => v, bad)
const pick = (valid: Arg[], invalid: Arg[], weight = 3): fc.Arbitrary<Arg> =>
  fc.oneof(
    { withCrossShrink: true },
    { arbitrary: fc.constantFrom(...valid), weight },
    { arbitrary: fc.constantFrom(...invalid), weight: 2 },
  )

export const NUMBERS: Array<[string, number]> = [
  ['0', 0], ['-0', -0], ['1', 1], ['7', 7], ['4096', 4096], ['65536', 65536], ['2**31-1', 2 ** 31 - 1],
  ['2**31', 2 ** 31], ['2**32-1', 2 ** 32 - 1], ['2**32', 2 ** 32], ['2**53-1', 2 ** 53 - 1], ['2**53', 2 ** 53],
  ['2**64', 2 ** 64], ['1e300', 1e300], ['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity], ['-1', -1],
  ['-2**31', -(2 ** 31)], ['1.5', 1.5], ['-0.5', -0.5], ['Number.EPSILON', Number.EPSILON],
]
const BIGINTS: Array<[string, bigint]> = [
  ['0n', 0n], ['1n', 1n], ['4096n', 4096n], ['2n**53n', 2n ** 53n], ['2n**63n-1n', 2n ** 63n - 1n], ['2n**63n', 2n ** 63n],
  ['2n**64n', 2n ** 64n], ['2n**64n+1n', 2n ** 64n + 1n], ['-1n', -1n], ['-(2n**64n)', -(2n ** 64n)],
]
/** Wrong types for a number slot (bigint, null and undefined are added per slot). */
const NOT_NUMBERS: Array<[string, () => unknown]> = [
  ["'3'", () => '3'], ["''", () => ''], ['{}', () => ({})], ['[3]', () => [3]], ['() => 3', () => () => 3],
  ['Symbol()', () => Symbol('s')], ['true', () => true], ['{ valueOf: () => 3 }', () => ({ valueOf: () => 3 })],
  ['new Number(3)', () => new Number(3)],
]
const wrong = (): Arg[] => NOT_NUMBERS.map(([l, f]) => new Arg(l, f, [TYPE]))

const isInt = (v: number, max: number) => Number.isInteger(v) && v >= 0 && v <= max && v <= Number.MAX_SAFE_INTEGER

/**
 * A number (or bigint) slot. Numbers outside [0, max] or not whole are RangeErrors;
 * `skip` drops valid numbers the fuzz must not use (fd numbers it does not own, sizes
 * that would allocate gigabytes). `nullish`: which of null/undefined are valid.
 */
function numeric(o: { max: number; bigMax?: bigint; nullish?: 'both' | 'undefined'; skip?: (v: number) => boolean }) {
  const valid: Arg[] = []
  const invalid: Arg[] = []
  valid.push(...(o.nullish === 'both' ? [val('null', null)] : []), ...(o.nullish ? [val('undefined', undefined)] : []))
  invalid.push(...(o.nullish === 'both' ? [] : [val('null', null, [TYPE])]), ...(o.nullish ? [] : [val('undefined', undefined, [TYPE])]))
  for (const [l, v] of NUMBERS) {
    if (!isInt(v, o.max)) invalid.push(val(l, v, [RANGE]))
    else if (!o.skip?.(v)) valid.push(val(l, v))
  }
  for (const [l, v] of BIGINTS) {
    if (o.bigMax === undefined) invalid.push(val(l, v, [TYPE]))
    else if (v < 0n || v > o.bigMax) invalid.push(val(l, v, [RANGE]))
    else valid.push(val(l, v))
  }
  invalid.push(...wrong())
  return { valid, invalid }
}

/** The fd kinds the raw pool has (world.ts). */
export const FD_KINDS = ['pipeR', 'pipeW', 'pipe2R', 'pipe2W', 'file', 'devnull', 'tcp', 'listen', 'udpBound', 'udpConn', 'closed', 'reused']

/** An fd: one of the pool's, a closed or reused number, or no fd at all. Never 0-2 or a foreign fd. */
export function fdArg(kinds = FD_KINDS): fc.Arbitrary<Arg> {
  const n = numeric({ max: 2 ** 31 - 1, skip: (v) => v !== 2 ** 31 - 1 })
  return pick([...kinds.map((k) => new Arg(`fd(${k})`, (e) => e.fd(k))), ...n.valid], n.invalid, 4)
}

export function offsetArg(nullish = true): fc.Arbitrary<Arg> {
  const n = numeric({ max: 2 ** 53 - 1, bigMax: 2n ** 63n - 1n, ...(nullish ? { nullish: 'both' as const } : {}) })
  return pick([...n.valid, ...[1, 100, 4095, 65535, 70000].map((v) => val(String(v), v))], n.invalid)
}
export const lengthArg = (): fc.Arbitrary<Arg> => offsetArg(false)

export function flagsArg(common: number[]): fc.Arbitrary<Arg> {
  const n = numeric({ max: 2 ** 32 - 1, nullish: 'undefined' })
  const valid = [...common.map((v) => val(`0x${v.toString(16)}`, v)), ...n.valid]
  return fc.oneof(
    { withCrossShrink: true },
    { arbitrary: pick(valid, n.invalid), weight: 4 },
    { arbitrary: fc.nat({ max: 2 ** 32 - 1 }).map((v) => val(`0x${v.toString(16)}`, v)), weight: 1 },
  )
}

/** A count or size; `skip` drops valid values that would allocate gigabytes. */
export function sizeArg(o: { max: number; bigMax?: bigint; undefinedValid?: boolean; skip?: (v: number) => boolean; extra?: number[]; maybeAbove?: number }): fc.Arbitrary<Arg> {
  const n = numeric({
    max: o.max,
    ...(o.bigMax !== undefined ? { bigMax: o.bigMax } : {}),
    ...(o.undefinedValid ? { nullish: 'undefined' as const } : {}),
    ...(o.skip ? { skip: o.skip } : {}),
  })
  const valid = [...n.valid, ...(o.extra ?? []).map((v) => val(String(v), v))]
  // Valid by type, but past what anything could allocate: a coded refusal is fine too.
  const maybe = (a: Arg) => (o.maybeAbove !== undefined && Number(a.make(undefined as never)) > o.maybeAbove ? new Arg(a.label, a.make, [MAYBE]) : a)
  return pick(valid.map(maybe), n.invalid)
}

export function boolArg(): fc.Arbitrary<Arg> {
  const bad: Array<[string, unknown]> = [['0', 0], ['1', 1], ["'true'", 'true'], ['null', null], ['undefined', undefined], ['{}', {}]]
  return pick([val('true', true), val('false', false)], [...bad.map(([l, v]) => val(l, v, [TYPE])), new Arg('new Boolean(true)', () => new Boolean(true), [TYPE])])
}

// ---- byte data ---------------------------------------------------------------

/** raw: vmsplice/send; recv: recv (null is a valid buffer); send: ZeroCopySocket.send; each: sendEach; view: pageOffsetOf. */
export type DataMode = 'raw' | 'recv' | 'send' | 'each' | 'view'

function detached(): ArrayBuffer {
  const ab = new ArrayBuffer(16)
  structuredClone(ab, { transfer: [ab] })
  return ab
}
const resizable = () => new (ArrayBuffer as unknown as new (n: number, o: object) => ArrayBuffer)(8, { maxByteLength: 16 })
const growableSab = () => new (SharedArrayBuffer as unknown as new (n: number, o: object) => SharedArrayBuffer)(8, { maxByteLength: 16 })
const views = (n: number, size = 1) => {
  const b = Buffer.alloc(n * size, 0x61)
  return Array.from({ length: n }, (_, i) => b.subarray(i * size, (i + 1) * size))
}

export function dataArg(mode: DataMode): fc.Arbitrary<Arg> {
  const zc = mode === 'send' || mode === 'each'
  const hostile = zc ? [TYPE] : [MAYBE] // the contract refuses these for sends; raw calls may take them
  const asArray = mode === 'view' ? [TYPE] : []
  const single = mode === 'each' ? [TYPE] : []
  const singles: Array<[string, () => unknown, string[]]> = [
    ["Buffer.from('hello')", () => Buffer.from('hello'), []],
    ['Buffer.alloc(0)', () => Buffer.alloc(0), []],
    ['Uint16Array(3)', () => new Uint16Array([1, 2, 3]), []],
    ['Float64Array(4).subarray(1, 3)', () => new Float64Array([1, 2, 3, 4]).subarray(1, 3), []],
    ['DataView(ArrayBuffer(16), 3, 5)', () => new DataView(new ArrayBuffer(16), 3, 5), []],
    ['ArrayBuffer(16)', () => new ArrayBuffer(16), []],
    ['Buffer(70000)', () => Buffer.alloc(70000, 7), []],
    ['Uint8Array(SharedArrayBuffer(8))', () => new Uint8Array(new SharedArrayBuffer(8)), hostile],
    ['Uint8Array(growable SharedArrayBuffer(8, max 16))', () => new Uint8Array(growableSab()), hostile],
    ['resizable ArrayBuffer(8, max 16)', resizable, hostile],
    ['Uint8Array(resizable ArrayBuffer(8, max 16))', () => new Uint8Array(resizable()), hostile],
    ['Uint8Array(resizable ArrayBuffer, 2, 4)', () => new Uint8Array(resizable(), 2, 4), hostile],
    ['SharedArrayBuffer(8)', () => new SharedArrayBuffer(8), [TYPE]],
    ['detached ArrayBuffer', detached, [STATE]],
    ['Uint8Array of a detached ArrayBuffer', () => { const ab = new ArrayBuffer(8); const v = new Uint8Array(ab, 2, 4); structuredClone(ab, { transfer: [ab] }); return v }, [STATE]],
  ]
  const arrays: Array<[string, () => unknown, string[], boolean?]> = [
    ['[]', () => [], []],
    ["[Buffer.from('ab'), DataView(4), ArrayBuffer(3)]", () => [Buffer.from('ab'), new DataView(new ArrayBuffer(4)), new ArrayBuffer(3)], []],
    ['[Buffer.alloc(0), Buffer.alloc(0)]', () => [Buffer.alloc(0), Buffer.alloc(0)], []],
    ['1024 views of 1 B', () => views(1024), []],
    ['1025 views of 1 B', () => views(1025), mode === 'each' ? [] : [RANGE]],
    ['[Buffer, DataView of a detached ArrayBuffer]', () => { const ab = new ArrayBuffer(8); const v = new DataView(ab); structuredClone(ab, { transfer: [ab] }); return [Buffer.from('x'), v] }, [STATE]],
    ['[Buffer, Uint8Array(SharedArrayBuffer)]', () => [Buffer.from('x'), new Uint8Array(new SharedArrayBuffer(4))], hostile],
    ['[Buffer, , Buffer] (a hole)', () => [Buffer.from('a'), , Buffer.from('b')], [TYPE]], // eslint-disable-line no-sparse-arrays
    ['new Array(3) (all holes)', () => new Array(3), [TYPE]],
    ['2**26-length sparse array, [0] = Buffer', () => { const a = new Array(2 ** 26); a[0] = Buffer.from('x'); return a }, mode === 'each' ? [TYPE] : [RANGE], true],
    ['[[Buffer]]', () => [[Buffer.from('x')]], [TYPE]],
    ['[Buffer, 1]', () => [Buffer.from('x'), 1], [TYPE]],
    ["['abc']", () => ['abc'], [TYPE]],
  ]
  const others: Array<[string, unknown]> = [["'hello'", 'hello'], ['42', 42], ['null', null], ['undefined', undefined], ['{ length: 4 }', { length: 4 }], ['{ buffer: ArrayBuffer(4), byteLength: 4 }', { buffer: new ArrayBuffer(4), byteLength: 4 }], ['Symbol()', Symbol('d')], ['() => 1', () => 1]]
  const bytes = fc.uint8Array({ maxLength: 3000 }).map((a) => new Arg(`Uint8Array(${a.length})`, () => a, single))
  const list = fc
    .array(fc.uint8Array({ maxLength: mode === 'each' ? 1500 : 600 }), { maxLength: mode === 'each' ? 40 : 8 })
    .map((l) => new Arg(`[${l.map((a) => `Uint8Array(${a.length})`).join(', ')}]`, () => l, asArray))
  const valid = [
    ...singles.filter(([, , b]) => b.length === 0).map(([l, f]) => new Arg(l, f, single)),
    ...arrays.filter(([, , b]) => b.length === 0).map(([l, f]) => new Arg(l, f, asArray)),
  ]
  const invalid = [
    ...singles.filter(([, , b]) => b.length > 0).map(([l, f, b]) => new Arg(l, f, mode === 'each' ? [TYPE] : b)),
    ...arrays.filter(([, , b]) => b.length > 0).map(([l, f, b, q]) => new Arg(l, f, mode === 'view' ? [TYPE] : b, q)),
    ...others.filter(([l]) => mode !== 'recv' || l !== 'null').map(([l, v]) => val(l, v, [TYPE])),
  ]
  if (mode === 'recv') valid.push(val('null', null))
  if (mode === 'view') valid.push(new Arg('[Buffer] (one view in an array)', () => [Buffer.from('x')], [MAYBE]))
  return fc.oneof({ withCrossShrink: true }, { arbitrary: bytes, weight: 2 }, { arbitrary: list, weight: 2 }, { arbitrary: pick(valid, invalid), weight: 5 })
}

/** The bytes (one Buffer per message) a valid data value stands for, copied now. */
export function messagesOf(value: unknown): Buffer[] {
  const one = (v: unknown) =>
    v instanceof ArrayBuffer ? Buffer.from(new Uint8Array(v)) : Buffer.from(new Uint8Array((v as ArrayBufferView).buffer, (v as ArrayBufferView).byteOffset, (v as ArrayBufferView).byteLength))
  return Array.isArray(value) ? value.map(one) : [one(value)]
}

// ---- options objects -----------------------------------------------------------

/** A field value built per call (an AbortSignal, say). */
export class Fresh {
  constructor(readonly f: () => unknown) {}
}
export type Field = Array<[string, unknown, string[]]>
const absent: unique symbol = Symbol('absent')

/**
 * An options object built from fields, each absent or one of its values. At times the
 * whole value is not an object at all: the contract does not say what that must do, so
 * those get the general rules only.
 */
export function optionsArg(fields: Record<string, Field>, odd = true): fc.Arbitrary<Arg> {
  const rec: Record<string, fc.Arbitrary<[string, unknown, string[]] | typeof absent>> = {}
  for (const [k, f] of Object.entries(fields)) rec[k] = fc.oneof({ withCrossShrink: true }, fc.constant(absent), fc.constantFrom(...f))
  const built = fc.record(rec).map((r) => {
    const set = Object.entries(r).filter((e): e is [string, [string, unknown, string[]]] => e[1] !== absent)
    const label = set.length === 0 ? '{}' : `{ ${set.map(([k, [l]]) => `${k}: ${l}`).join(', ')} }`
    const make = () => Object.fromEntries(set.map(([k, [, v]]) => [k, v instanceof Fresh ? v.f() : v]))
    return new Arg(label, make, set.flatMap(([, [, , b]]) => b))
  })
  const whole = [val('null', null, [MAYBE]), val("'fast'", 'fast', [MAYBE]), val('42', 42, [MAYBE]), val('[]', [], [MAYBE])]
  const none = fc.constant(val('undefined', undefined))
  if (!odd) return fc.oneof({ withCrossShrink: true }, { arbitrary: none, weight: 1 }, { arbitrary: built, weight: 4 })
  return fc.oneof({ withCrossShrink: true }, { arbitrary: none, weight: 1 }, { arbitrary: built, weight: 4 }, { arbitrary: fc.constantFrom(...whole), weight: 1 })
}

const numField = (valid: Array<[string, number]>, range: Array<[string, unknown]>, type: Array<[string, unknown]>): Field => [
  ...valid.map(([l, v]): [string, unknown, string[]] => [l, v, []]),
  ...range.map(([l, v]): [string, unknown, string[]] => [l, v, [RANGE]]),
  ...type.map(([l, v]): [string, unknown, string[]] => [l, v, [TYPE]]),
]
const BAD_TYPES: Array<[string, unknown]> = [["'10'", '10'], ['null', null], ['10n', 10n], ['{}', {}], ['true', true]]

/** ZeroCopySocket.from options (CONTRACT.md "Options"). */
export const zcOptionsFields: Record<string, Field> = {
  lingerMs: numField([['0', 0], ['-0', -0], ['1', 1], ['30000', 30000], ['2**31-1', 2 ** 31 - 1], ['Infinity', Infinity]], [['NaN', NaN], ['-5', -5], ['2**31', 2 ** 31], ['1.5', 1.5], ['-Infinity', -Infinity], ['2**53', 2 ** 53]], BAD_TYPES),
  copiedThreshold: numField([['1', 1], ['32', 32], ['2**31', 2 ** 31], ['Infinity', Infinity]], [['0', 0], ['-0', -0], ['NaN', NaN], ['-5', -5], ['1.5', 1.5], ['-Infinity', -Infinity]], BAD_TYPES),
  onNotification: [
    ['() => {}', () => {}, []],
    ['() => { throw }', () => { throw new Error('observer') }, []],
    ...BAD_TYPES.map(([l, v]): [string, unknown, string[]] => [l, v, [TYPE]]),
  ],
}

/** send/sendEach options: the contract says nothing of a non-boolean `copy`, so it is not judged. */
export const sendOptionsArg = (): fc.Arbitrary<Arg> =>
  optionsArg({ copy: [['true', true, []], ['false', false, []], ["'yes'", 'yes', [MAYBE]], ['1', 1, [MAYBE]]] })

// ---- judging ---------------------------------------------------------------------

export function describe(v: unknown): string {
  if (v instanceof Error) {
    const e = v as NodeJS.ErrnoException
    return `${e.name}${e.code !== undefined ? ` [${String(e.code)}]` : ' (no code)'}: ${e.message}`
  }
  if (typeof v === 'bigint') return `${v}n`
  if (typeof v === 'symbol' || typeof v === 'function') return String(v)
  const ctor = (v as object | null)?.constructor?.name
  if (ctor !== undefined && !['Object', 'Array', 'Number', 'String', 'Boolean'].includes(ctor)) return `a ${ctor}`
  try {
    const s = JSON.stringify(v)
    return s === undefined ? String(v) : s.length > 200 ? `${s.slice(0, 200)}...` : s
  } catch {
    return Object.prototype.toString.call(v)
  }
}

/** What is wrong with an error by the contract's general rules, if anything. */
export function errorProblem(err: unknown): string | undefined {
  if (!(err instanceof Error)) return `threw a non-Error ${describe(err)}`
  const e = err as NodeJS.ErrnoException
  if (typeof e.code !== 'string') return `error without a string code: ${describe(e)}`
  if ((e.code === TYPE || e.code === STATE) && !(e instanceof TypeError)) return `${e.code} must be a TypeError, got ${describe(e)}`
  if (e.code === RANGE && !(e instanceof RangeError)) return `${RANGE} must be a RangeError, got ${describe(e)}`
  if (e.code === 'ABORT_ERR' && e.name !== 'AbortError') return `ABORT_ERR must be named AbortError, got ${describe(e)}`
  if (/^E[A-Z0-9]+$/.test(e.code)) {
    const errno = (os.constants.errno as Record<string, number>)[e.code]
    if (errno === undefined) return `SystemError with unknown code: ${describe(e)}`
    if (e.errno !== -errno) return `SystemError errno ${String(e.errno)}, want ${-errno}: ${describe(e)}`
    if (typeof e.syscall !== 'string' || e.syscall === '') return `SystemError without syscall: ${describe(e)}`
  } else if (!e.code.startsWith('ERR_') && e.code !== 'ABORT_ERR') return `unexpected code: ${describe(e)}`
  return undefined
}

export type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown }

/**
 * The per-call property: a documented result (shape() says what is wrong with it), or
 * a well-formed coded error; and if any argument is bad, an error with one of the codes
 * the bad arguments provoke (arguments are checked before the kernel sees any).
 */
export function judge(args: readonly Arg[], out: Outcome, shape: (v: unknown) => string | undefined): string | undefined {
  const want = new Set(args.flatMap((a) => a.bad).filter((b) => b !== MAYBE))
  const bad = args.filter((a) => a.bad.length > 0 && !a.bad.includes(MAYBE)).map((a) => a.label)
  const maybe = args.some((a) => a.bad.includes(MAYBE))
  if (out.ok) {
    if (want.size > 0) return `accepted ${bad.join(', ')} (want ${[...want].join(' | ')}) and returned ${describe(out.value)}`
    const s = shape(out.value)
    return s === undefined ? undefined : `returned ${describe(out.value)}: ${s}`
  }
  const p = errorProblem(out.error)
  if (p !== undefined) return p
  const code = (out.error as NodeJS.ErrnoException).code!
  if (want.size > 0 && !want.has(ANY) && !want.has(code) && !maybe) return `for ${bad.join(', ')} want ${[...want].join(' | ')}, got ${describe(out.error)}`
  return undefined
}

export const isCount = (v: unknown) => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? undefined : 'not a byte count')
