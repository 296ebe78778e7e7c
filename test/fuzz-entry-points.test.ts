// Property-based fuzz of every exported function and method, on real pipes, files and
// loopback sockets. Each call gets arguments that mix valid values with wrong types,
// impossible numbers, hostile buffers (SharedArrayBuffer, resizable, detached, holes,
// 2^26-length sparse arrays, 1025 views), closed, reused and wrong-kind fds, and bad
// options. Property (CONTRACT.md "Validation", README "Errors"): a documented result,
// or a coded error (TypeError ERR_INVALID_ARG_TYPE/ERR_INVALID_STATE, RangeError
// ERR_OUT_OF_RANGE, SystemError with code, negative errno and syscall, or another
// ERR_*), the one a bad argument provokes when there is one; Promise APIs never throw
// synchronously; nothing blocks, hangs, crashes, escapes as an uncaught exception or
// unhandled rejection, or leaks an fd; after every call on a ZeroCopySocket a good send
// on the same socket still arrives byte for byte.
//
// ZEROCOPY_FUZZ_SEED=n sets the seed (default 20261123; 'random' draws one; printed either way), ZEROCOPY_FUZZ_RUNS=n the runs
// per property (npm run test:fuzz-long), ZEROCOPY_FUZZ_ONLY=name + ZEROCOPY_FUZZ_PATH=p
// replay one counterexample; a failure prints the line to paste.
import * as assert from 'node:assert/strict'
import * as fs from 'node:fs'
import { after, before, test } from 'node:test'
import * as fc from 'fast-check'
import * as zc from '../lib'
import { ZeroCopySocket, constants, pageSize } from '../lib'
import { openFdTargets, randomBytes } from './helpers'
import {
  ANY, Arg, Fresh, MAYBE, NUMBERS, RANGE, TYPE, boolArg, dataArg, describe, fdArg, flagsArg, isCount, judge, lengthArg, messagesOf,
  offsetArg, optionsArg, sendOptionsArg, sizeArg, zcOptionsFields, type Field, type Outcome,
} from './fuzz/args'
import { PAYLOAD, RelayWorld, endArg, expectedRelay, fileArg as relayFileArg, fileOptionsArg, relayOptionsArg } from './fuzz/relay-world'
import { runningJobs } from '../lib/relay-engine'
import { SEED, ZWorld, RawPool, callAsync, callSync, leakedFds, type Called, type On, fuzz } from './fuzz/world'
import { STREAM_TARGETS, StreamSite, isResponseKind, type StreamTarget } from './fuzz/streams'

const RAW_RUNS = 300
const ZC_RUNS = 80
/** A refusal that must be decided from an array's length alone takes less than this. */
const QUICK_MS = 500

const { SPLICE_F_NONBLOCK: NB, SPLICE_F_MORE, SPLICE_F_MOVE, SPLICE_F_GIFT, MSG_DONTWAIT, MSG_NOSIGNAL, MSG_ZEROCOPY } = constants
const spliceFlags = [0, NB, NB | SPLICE_F_MORE, NB | SPLICE_F_MOVE, NB | SPLICE_F_GIFT]
const msgFlags = [0, MSG_DONTWAIT, MSG_DONTWAIT | MSG_NOSIGNAL, MSG_DONTWAIT | MSG_ZEROCOPY]
const recvFlags = [0, MSG_DONTWAIT, constants.MSG_TRUNC, constants.MSG_PEEK, constants.MSG_TRUNC | constants.MSG_PEEK]
/** recv gets MSG_DONTWAIT added to any valid flag word: on a blocking socket it could otherwise wait forever. */
const dontWait = (f: unknown) =>
  typeof f === 'number' && Number.isInteger(f) && f >= 0 && f <= 2 ** 32 - 1 && (f & MSG_DONTWAIT) === 0 ? f + MSG_DONTWAIT : f

const fdsAtStart = openFdTargets()
let pool: RawPool
let site: StreamSite
before(async () => {
  pool = await RawPool.open()
  site = await StreamSite.open()
  // The reactor's epoll instance lives as long as the process (lib/reactor.ts): open it
  // now, and count it in the fds the process started with.
  const w = await ZWorld.open(pool)
  assert.equal(await w.goodSend('tcp'), undefined)
  assert.equal(await w.goodSend('udp'), undefined)
  await w.close()
  // So do the relay thread's epoll and eventfd (lib/relay-engine.ts).
  const r = await RelayWorld.open(pool.dir)
  await zc.relay(r.c.proxyIn, r.c.proxyOut)
  await r.close()
  for (const [n, to] of openFdTargets()) {
    if ((to === 'anon_inode:[eventpoll]' || to === 'anon_inode:[eventfd]') && !fdsAtStart.has(n)) fdsAtStart.set(n, to)
  }
})
after(async () => {
  await site.close() // if the last test did not run (a name pattern)
  // A ZeroCopySocket left busy by a failure would keep this process alive forever.
  setTimeout(() => {
    console.error('fuzz-entry-points: something (a busy ZeroCopySocket?) kept the process alive 5 s after the tests; exiting')
    process.exit(1)
  }, 5000).unref()
})

// ---- argument kinds beyond args.ts ---------------------------------------------------

const val = (label: string, v: unknown, bad: string[] = []) => new Arg(label, () => v, bad)
const objArg = (kind: string, bad: string[] = []) => new Arg(kind, (e) => e.obj(kind), bad)

/**
 * An int slot of setSocketOption/getSocketOption: valid values from `valid` (options
 * that cannot hurt the shared pool: SO_DEBUG, SO_TYPE, SO_SNDBUF, unknown names; the
 * kernel answers each), every other number of NUMBERS out of range below `min` or past
 * 2^31 - 1 or not whole, and wrong types.
 */
const LEVELS = [0, 1, 6, 17, 65536, 2 ** 31 - 1]
const OPTION_NAMES = [1, 3, 7, 9999, 2 ** 31 - 1]
const OPTION_VALUES = [0, 1, -1, 4096, 2 ** 31 - 1, -(2 ** 31)]
const sockoptArg = (valid: number[], min: number) => {
  const good = valid.map((v) => val(String(v), v))
  const bad = NUMBERS.filter(([, v]) => !(Number.isInteger(v) && v >= min && v <= 2 ** 31 - 1)).map(([l, v]) => val(l, v, [RANGE]))
  const types: Array<[string, unknown]> = [["'1'", '1'], ['1n', 1n], ['null', null], ['undefined', undefined], ['{}', {}], ['true', true]]
  return fc.oneof(
    { withCrossShrink: true },
    { arbitrary: fc.constantFrom(...good), weight: 3 },
    { arbitrary: fc.constantFrom(...bad, ...types.map(([l, v]) => val(l, v, [TYPE]))), weight: 2 },
  )
}

/** A socket for receiveDatagrams/setReceiveBuffer: a dgram.Socket or an fd. */
const socketArg = () =>
  fc.oneof(
    { withCrossShrink: true },
    fc.constantFrom(objArg('dgram(bound)'), objArg('dgram(connected)')),
    fdArg(),
    fc.constantFrom(objArg('dgram(unbound)', [TYPE]), objArg('net.Socket', [TYPE]), objArg('net.Server', [TYPE]), val('{}', {}, [TYPE])),
  )
const buffersArg = () =>
  fc.constantFrom(
    new Arg('4 x Buffer(2048)', () => [0, 1, 2, 3].map(() => Buffer.alloc(2048))),
    val('[]', []),
    new Arg('3 x Buffer.alloc(0)', () => [0, 1, 2].map(() => Buffer.alloc(0))),
    new Arg('300 x Buffer(64)', () => Array.from({ length: 300 }, () => Buffer.alloc(64))),
    new Arg('[Uint16Array(8), DataView(16)]', () => [new Uint16Array(8), new DataView(new ArrayBuffer(16))]),
    // Elements are read only as far as `lengths` reaches: not judged beyond the general rules.
    new Arg('[Buffer, , Buffer]', () => [Buffer.alloc(8), , Buffer.alloc(8)], [MAYBE]), // eslint-disable-line no-sparse-arrays
    new Arg('[Uint8Array(SharedArrayBuffer(8))]', () => [new Uint8Array(new SharedArrayBuffer(8))], [MAYBE]),
    new Arg('[detached ArrayBuffer]', () => { const ab = new ArrayBuffer(8); structuredClone(ab, { transfer: [ab] }); return [ab] }, [MAYBE]),
    val('Buffer(16)', Buffer.alloc(16), [TYPE]), val("'x'", 'x', [TYPE]), val('null', null, [TYPE]), val('undefined', undefined, [TYPE]),
  )
const lengthsArg = () =>
  fc.constantFrom(
    new Arg('Uint32Array(4)', () => new Uint32Array(4)), new Arg('Uint32Array(0)', () => new Uint32Array(0)),
    new Arg('Uint32Array(300)', () => new Uint32Array(300)), new Arg('Int32Array(4)', () => new Int32Array(4), [TYPE]),
    val('[0, 0, 0, 0]', [0, 0, 0, 0], [TYPE]), new Arg('Buffer(16)', () => Buffer.alloc(16), [TYPE]), val('null', null, [TYPE]),
    new Arg('Float64Array(4)', () => new Float64Array(4), [TYPE]), new Arg('Uint32Array(SharedArrayBuffer(16))', () => new Uint32Array(new SharedArrayBuffer(16)), [MAYBE]),
  )
const bools: Field = [['true', true, []], ['false', false, []], ['1', 1, [TYPE]], ["'yes'", 'yes', [TYPE]], ['null', null, [TYPE]]]

// ---- result shapes ---------------------------------------------------------------------

const int = (v: unknown, lo: number, hi: number, what: string) =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= lo && v <= hi ? undefined : `not ${what} in [${lo}, ${hi}]`
const lengthOf = (v: unknown) => (Array.isArray(v) || ArrayBuffer.isView(v) ? (v as { length: number }).length : 0)
function pipeEnds(v: unknown): string | undefined {
  const p = v as { readFd?: unknown; writeFd?: unknown }
  return int(p?.readFd, 3, 2 ** 31 - 1, 'readFd') ?? int(p?.writeFd, 3, 2 ** 31 - 1, 'writeFd') ?? (p.readFd === p.writeFd ? 'one fd for both ends' : undefined)
}
function errorQueue(v: unknown, a: unknown[]): string | undefined {
  if (!Array.isArray(v)) return 'not an array'
  if (v.length > (a[1] === undefined ? 64 : Number(a[1]))) return 'more entries than max'
  const keys = ['origin', 'code', 'errno', 'info', 'data']
  return v.every((e) => keys.every((k) => typeof e[k] === 'number')) ? undefined : 'an entry lacks a numeric field'
}
function aligned(v: unknown, a: unknown[]): string | undefined {
  if (!Buffer.isBuffer(v) || v.length !== a[0]) return 'not a Buffer of the size asked'
  return zc.pageOffsetOf(v) === 0 ? undefined : 'not page-aligned'
}

interface RawEntry {
  name: string
  args: Array<fc.Arbitrary<Arg>>
  call: (...a: unknown[]) => unknown
  shape: (v: unknown, a: unknown[]) => string | undefined
  async?: boolean
  /** Undo what a successful call created. */
  undo?: (v: unknown) => void
}

const call = (f: unknown) => f as (...a: unknown[]) => unknown
const RAW: RawEntry[] = [
  { name: 'splice', args: [fdArg(), offsetArg(), fdArg(), offsetArg(), lengthArg(), flagsArg(spliceFlags)], call: call(zc.splice), shape: isCount },
  { name: 'spliceAsync', args: [fdArg(), offsetArg(), fdArg(), offsetArg(), lengthArg(), flagsArg(spliceFlags)], call: call(zc.spliceAsync), shape: isCount, async: true },
  { name: 'tee', args: [fdArg(), fdArg(), lengthArg(), flagsArg(spliceFlags)], call: call(zc.tee), shape: isCount },
  { name: 'teeAsync', args: [fdArg(), fdArg(), lengthArg(), flagsArg(spliceFlags)], call: call(zc.teeAsync), shape: isCount, async: true },
  { name: 'vmsplice', args: [fdArg(), dataArg('raw'), flagsArg(spliceFlags)], call: call(zc.vmsplice), shape: isCount },
  { name: 'sendfile', args: [fdArg(), fdArg(), offsetArg(), lengthArg()], call: call(zc.sendfile), shape: isCount },
  { name: 'sendfileAsync', args: [fdArg(), fdArg(), offsetArg(), lengthArg()], call: call(zc.sendfileAsync), shape: isCount, async: true },
  {
    name: 'pipe', args: [optionsArg({ nonBlocking: bools, closeOnExec: bools })], call: call(zc.pipe), shape: pipeEnds,
    undo: (v) => { const p = v as zc.PipeEnds; fs.closeSync(p.readFd); fs.closeSync(p.writeFd) },
  },
  { name: 'getPipeSize', args: [fdArg()], call: call(zc.getPipeSize), shape: (v) => int(v, 1, 2 ** 31, 'a pipe size') },
  { name: 'setPipeSize', args: [fdArg(), sizeArg({ max: 2 ** 31 - 1, bigMax: 2n ** 31n - 1n, extra: [100, 8192, 1 << 20] })], call: call(zc.setPipeSize), shape: (v) => int(v, 1, 2 ** 31, 'a pipe size') },
  { name: 'inputQueueBytes', args: [fdArg()], call: call(zc.inputQueueBytes), shape: isCount },
  { name: 'outputQueueBytes', args: [fdArg()], call: call(zc.outputQueueBytes), shape: isCount },
  { name: 'send', args: [fdArg(), dataArg('raw'), flagsArg(msgFlags)], call: call(zc.send), shape: isCount },
  { name: 'recv', args: [fdArg(), dataArg('recv'), flagsArg(recvFlags)], call: (fd, b, f) => zc.recv(fd as number, b as null, dontWait(f) as number), shape: isCount },
  {
    name: 'recv(fd, null, flags, length)', args: [fdArg(), fc.constant(val('null', null)), flagsArg(recvFlags), sizeArg({ max: 2 ** 53 - 1, bigMax: 2n ** 63n - 1n, undefinedValid: true, extra: [1, 64, 1 << 21] })],
    call: (fd, b, f, l) => zc.recv(fd as number, b as null, dontWait(f) as number, l as number), shape: isCount,
  },
  { name: 'dup', args: [fdArg()], call: call(zc.dup), shape: (v) => int(v, 0, 2 ** 31 - 1, 'an fd'), undo: (v) => fs.closeSync(v as number) },
  { name: 'setZeroCopy', args: [fdArg(), boolArg()], call: call(zc.setZeroCopy), shape: (v) => (v === undefined ? undefined : 'not undefined') },
  { name: 'setSocketOption', args: [fdArg(), sockoptArg(LEVELS, 0), sockoptArg(OPTION_NAMES, 0), sockoptArg(OPTION_VALUES, -(2 ** 31))], call: call(zc.setSocketOption), shape: (v) => (v === undefined ? undefined : 'not undefined') },
  { name: 'getSocketOption', args: [fdArg(), sockoptArg(LEVELS, 0), sockoptArg(OPTION_NAMES, 0)], call: call(zc.getSocketOption), shape: (v) => int(v, -(2 ** 31), 2 ** 31 - 1, 'an int') },
  // 4 * max words are allocated: valid maxes from 2^16 to 2^31 would take gigabytes.
  { name: 'readErrorQueue', args: [fdArg(), sizeArg({ max: 2 ** 53 - 1, undefinedValid: true, skip: (v) => v > 65536 && v < 2 ** 31, maybeAbove: 65536 })], call: call(zc.readErrorQueue), shape: errorQueue },
  {
    name: 'receiveDatagrams', args: [socketArg(), buffersArg(), lengthsArg()], call: call(zc.receiveDatagrams),
    shape: (v, a) => int(v, 0, Math.min(lengthOf(a[1]), lengthOf(a[2]), 256), 'a datagram count'),
  },
  { name: 'setReceiveBuffer', args: [socketArg(), sizeArg({ max: 2 ** 53 - 1, bigMax: 2n ** 63n - 1n, extra: [4096, 1 << 20] })], call: call(zc.setReceiveBuffer), shape: (v) => int(v, 1, 2 ** 31, 'a buffer size') },
  // Valid sizes past 1 MiB would allocate up to 8 PiB: only those that Buffer refuses stay.
  { name: 'allocPageAligned', args: [sizeArg({ max: 2 ** 53 - 1, skip: (v) => v > 1 << 20 && v < 2 ** 33, extra: [100, 2 ** 40], maybeAbove: 1 << 20 })], call: call(zc.allocPageAligned), shape: aligned },
  // Registered memory is pinned: valid sizes past 1 MiB (up to the kernel's 1 GiB) stay out.
  { name: 'allocRegistered', args: [sizeArg({ max: 2 ** 30, skip: (v) => v > 1 << 20, extra: [100, 4096] })], call: call(zc.allocRegistered), shape: aligned },
  { name: 'pageOffsetOf', args: [dataArg('view')], call: call(zc.pageOffsetOf), shape: (v) => int(v, 0, pageSize - 1, 'a page offset') },
]

/** The general rules a call must meet beyond `judge`: no block or hang, quick refusals. */
function callProblem(args: readonly Arg[], c: Called, shape: (v: unknown) => string | undefined): string | undefined {
  const slow = args.find((a) => a.quick)
  return (
    c.problem ??
    judge(args, c.out!, shape) ??
    (slow !== undefined && c.ms > QUICK_MS ? `took ${c.ms.toFixed(0)} ms to settle for ${slow.label} (must be refused at once)` : undefined)
  )
}

for (const e of RAW) {
  test(e.name, (t) =>
    fuzz(t, fc.tuple(...e.args), RAW_RUNS, async (args) => {
      const fds = openFdTargets()
      const values = args.map((a) => a.make(pool))
      const c = e.async ? await callAsync(() => e.call(...values)) : callSync(() => e.call(...values))
      if (c.out?.ok && e.undo) e.undo(c.out.value)
      pool.reset()
      const p = callProblem(args, c, (v) => e.shape(v, values)) ?? (await leakedFds(fds))
      return p === undefined ? undefined : `${e.name}(${args.join(', ')}) ${p}`
    }),
  )
}

// ---- ZeroCopySocket and the Promise APIs on it ----------------------------------------

/** What from()/sendZeroCopy()/sendFileZeroCopy() are given: [kind, codes it alone provokes]. */
// Shrinking goes toward the front: the contract's own examples first, then what it does not spell out.
const TARGETS: Array<[string, string[]]> = [
  ['tcp', []], ['udp', []], ['tcp fd', []], ['udp fd', []],
  ['net.Server', [TYPE]], ['destroyed net.Socket', ['ERR_SOCKET_CLOSED']], ['file fd', ['ENOTSOCK']], ['pipeR fd', ['ENOTSOCK']],
  ['closed fd', ['EBADF']], ['closed dgram.Socket', ['ERR_SOCKET_CLOSED']],
  ['unconnected net.Socket', [MAYBE]], ['unconnected dgram.Socket', [MAYBE]], ['listen fd', [MAYBE]], ['udpBound fd', [MAYBE]],
]
function targetArg(forFiles = false): fc.Arbitrary<Arg> {
  // Files need a stream socket (CONTRACT.md): any datagram socket is a TypeError there.
  const codes = (k: string, c: string[]) =>
    !forFiles || !/^udp|dgram/.test(k) ? c : c.length === 0 || c.includes(MAYBE) ? [TYPE] : [...c, TYPE]
  const all = TARGETS.map(([k, c]) => objArg(k, codes(k, c)))
  const odd: Array<[string, unknown, string[]]> = [
    ["'3'", '3', [TYPE]], ['{}', {}, [TYPE]], ['null', null, [TYPE]], ['undefined', undefined, [TYPE]], ['Symbol()', Symbol('t'), [TYPE]],
    ['3n', 3n, [TYPE]], ['-1', -1, [TYPE, RANGE]], ['1.5', 1.5, [TYPE, RANGE]], ['NaN', NaN, [TYPE, RANGE]], ['2**31', 2 ** 31, [TYPE, RANGE]],
  ]
  return fc.oneof({ withCrossShrink: true }, { arbitrary: fc.constantFrom(...all.slice(0, 4)), weight: 3 }, { arbitrary: fc.constantFrom(...all.slice(4)), weight: 2 }, { arbitrary: fc.constantFrom(...odd.map(([l, v, c]) => val(l, v, c))), weight: 1 })
}

type Body<T> = (w: ZWorld, v: T) => Promise<string | undefined>
/** One run on fresh loopback pairs: the body, then no fd left open once they are closed. */
const zrun = <T>(body: Body<T>) => async (v: T): Promise<string | undefined> => {
  const fds = openFdTargets()
  const w = await ZWorld.open(pool)
  let p: string | undefined
  try {
    p = await body(w, v)
  } finally {
    const closing = await w.close()
    p ??= closing ?? (await leakedFds(fds))
  }
  return p
}
/** Good sends on both pairs; each peer has exactly what it should. */
const goodSends = async (w: ZWorld) => (await w.goodSend('tcp')) ?? (await w.goodSend('udp'))

const sendShape = (bytes: number) => (v: unknown) => {
  const r = v as zc.SendResult
  if (r?.bytes !== bytes) return `bytes ${String(r?.bytes)}, want ${bytes}`
  if (typeof r.zeroCopy !== 'boolean' || typeof r.copied !== 'boolean' || !Number.isSafeInteger(r.calls)) return 'not a SendResult'
  return ['msg_zerocopy', 'io_uring', 'copy', 'mixed'].includes(r.mechanism) ? undefined : `mechanism ${String(r.mechanism)}`
}
const fileShape = (bytes: number, streamy: boolean) => (v: unknown) => {
  const r = v as zc.SendFileResult
  if (r?.bytes !== bytes) return `bytes ${String(r?.bytes)}, want ${bytes} (the source's bytes in the range asked)`
  if (typeof r.zeroCopy !== 'boolean' || typeof r.copied !== 'boolean' || !Number.isSafeInteger(r.windows) || typeof r.mechanism !== 'string') return 'not a SendFileResult'
  // A source without a size is read and copied, and says so (CONTRACT.md "Settling").
  if (streamy && bytes > 0 && (r.zeroCopy || !r.copied || typeof r.fallback !== 'string')) return 'a source read and copied must say zeroCopy: false, copied: true, and why (fallback)'
  if (streamy) return undefined // the mechanism of such a copy is not named by the contract
  return ['mmap+msg_zerocopy', 'mmap+io_uring', 'mmap+copy', 'mixed'].includes(r.mechanism) ? undefined : `mechanism ${String(r.mechanism)}`
}

/** The messages a valid data argument stands for (undefined for a bad one). */
const snapshot = (a: Arg, v: unknown) => (a.bad.length === 0 ? messagesOf(v) : undefined)
/** Records what a settled send put on the wire at `on`'s peer. */
function expect(w: ZWorld, on: On | undefined, out: Outcome | undefined, msgs: Buffer[] | undefined, each: boolean): string | undefined {
  if (on === undefined || out === undefined || msgs === undefined) return undefined
  if (!out.ok) {
    // A refused datagram stops a batch: the ones before it went (README "sendEach").
    if (on !== 'udp' || !each) return undefined
    const sent = (out.error as { sent?: unknown }).sent
    if (sent === undefined) return undefined
    if (!Number.isSafeInteger(sent)) return `rejection's err.sent is ${describe(sent)}`
    w.want.udp.push(...msgs.slice(0, sent as number))
    return undefined
  }
  w.want[on].push(...(on === 'udp' && !each ? [Buffer.concat(msgs)] : msgs))
  return undefined
}

// Each entry point is fuzzed twice: one slot alone (the rest valid), then all of them,
// so that one defect does not hide the others behind its shrunk counterexample.
const sockets = fc.constantFrom(objArg('tcp'), objArg('udp'))
const validZcOptions = optionsArg(
  Object.fromEntries(Object.entries(zcOptionsFields).map(([k, f]) => [k, f.filter(([, , b]) => b.length === 0)])),
  false,
)
const validSendOptions = fc.constantFrom(val('undefined', undefined), val('{}', {}), val('{ copy: true }', { copy: true }), val('{ copy: false }', { copy: false }))
const validData = fc.uint8Array({ maxLength: 3000 }).map((a) => new Arg(`Uint8Array(${a.length})`, () => a))

function fromTest(name: string, arb: fc.Arbitrary<{ target: Arg; options: Arg }>): void {
  test(name, (t) =>
    fuzz(t, arb, ZC_RUNS, zrun(async (w, { target, options }) => {
      const c = callSync(() => ZeroCopySocket.from(target.make(w) as number, options.make(w) as zc.ZeroCopyOptions))
      const p = callProblem([target, options], c, (v) => (v instanceof ZeroCopySocket ? undefined : 'not a ZeroCopySocket')) ?? (await goodSends(w))
      if (c.out?.ok && target.label !== 'tcp' && target.label !== 'udp') w.owned.push([target.label, c.out.value as ZeroCopySocket])
      return p === undefined ? undefined : `ZeroCopySocket.from(${target}, ${options}) ${p}`
    })),
  )
}
fromTest('ZeroCopySocket.from(target)', fc.record({ target: targetArg(), options: validZcOptions }))
fromTest('ZeroCopySocket.from(socket, options)', fc.record({ target: sockets, options: optionsArg(zcOptionsFields, false) }))
fromTest('ZeroCopySocket.from(target, options)', fc.record({ target: targetArg(), options: optionsArg(zcOptionsFields) }))

/** One owner per kernel socket, named by the socket or its fd; a new one after close() (CONTRACT.md "Identity"). */
const idOp = fc.record({ on: fc.constantFrom<On>('tcp', 'udp'), via: fc.constantFrom('socket', 'fd'), then: fc.constantFrom('send', 'close', 'nothing') })
test('ZeroCopySocket.from: one instance per kernel socket', (t) =>
  fuzz(t, fc.array(idOp, { minLength: 1, maxLength: 4 }), ZC_RUNS, zrun(async (w, ops) => {
    const closed = new Set<ZeroCopySocket>()
    for (const [i, { on, via, then }] of ops.entries()) {
      const what = `op ${i + 1}: from(${on}${via === 'fd' ? ' fd' : ''}) then ${then}`
      const inst = ZeroCopySocket.from(w.obj(via === 'fd' ? `${on} fd` : on) as number)
      const other = ZeroCopySocket.from(w.obj(via === 'fd' ? on : `${on} fd`) as number)
      if (!w.owned.some(([, z]) => z === inst)) w.owned.push([`${on} (via ${via})`, inst])
      if (!w.owned.some(([, z]) => z === other)) w.owned.push([`${on} (via ${via === 'fd' ? 'socket' : 'fd'})`, other])
      if (other !== inst) return `${what}: from(socket) and from(fd) gave two instances for one kernel socket`
      if (closed.has(inst)) return `${what}: from() gave back an instance already closed`
      let p: string | undefined
      if (then === 'send') {
        const data = randomBytes(100 + i, i + 1)
        const c = await callAsync(() => inst.send(data))
        p = callProblem([], c, sendShape(data.length)) ?? expect(w, on, c.out, [data], false)
      } else if (then === 'close') {
        p = callProblem([], await callAsync(() => inst.close()), (v) => (v === undefined ? undefined : 'not undefined'))
        closed.add(inst)
      }
      p ??= await goodSends(w)
      if (p !== undefined) return `${what}: ${p}`
    }
    return undefined
  })),
)

/** zc.send / zc.sendEach: 1-3 calls, each followed by good sends on both pairs. */
function sendTest(name: string, each: boolean, data: fc.Arbitrary<Arg>, options: fc.Arbitrary<Arg>): void {
  const op = fc.record({ on: fc.constantFrom<On>('tcp', 'udp'), data, options })
  test(name, (t) =>
    fuzz(t, fc.array(op, { minLength: 1, maxLength: 3 }), ZC_RUNS, zrun(async (w, ops) => {
      for (const [i, { on, data, options }] of ops.entries()) {
        const s = ZeroCopySocket.from(on === 'tcp' ? w.tcp : w.udp)
        const d = data.make(w)
        const msgs = snapshot(data, d)
        const o = options.make(w) as zc.SendOptions
        const c = await callAsync(() => (each ? s.sendEach(d as Buffer[], o) : s.send(d as Buffer, o)))
        const total = msgs?.reduce((n, m) => n + m.length, 0) ?? 0
        const p = callProblem([data, options], c, sendShape(total)) ?? expect(w, on, c.out, msgs, each) ?? (await goodSends(w))
        if (p !== undefined) return `call ${i + 1}: ${on}.${each ? 'sendEach' : 'send'}(${data}, ${options}) ${p}`
      }
      return undefined
    })),
  )
}
sendTest('zc.send(data)', false, dataArg('send'), validSendOptions)
sendTest('zc.send(data, options)', false, dataArg('send'), sendOptionsArg())
sendTest('zc.sendEach(messages)', true, dataArg('each'), validSendOptions)
sendTest('zc.sendEach(messages, options)', true, dataArg('each'), sendOptionsArg())

/** zc.close, awaited or not, between sends; sends on a closed instance; a new instance after. */
const closeOp = fc.oneof(
  fc.record({ op: fc.constant('close' as const), on: fc.constantFrom<On>('tcp', 'udp'), wait: fc.boolean() }),
  fc.record({ op: fc.constantFrom('send' as const, 'sendOnClosed' as const), on: fc.constantFrom<On>('tcp', 'udp'), data: fc.uint8Array({ minLength: 1, maxLength: 3000 }) }),
)
test('zc.close', (t) =>
  fuzz(t, fc.array(closeOp, { minLength: 1, maxLength: 5 }), ZC_RUNS, zrun(async (w, ops) => {
    const closed: Partial<Record<On, ZeroCopySocket>> = {}
    const pending: Array<Promise<Called>> = []
    for (const [i, o] of ops.entries()) {
      const sock = o.on === 'tcp' ? w.tcp : w.udp
      let p: string | undefined
      if (o.op === 'close') {
        const s = ZeroCopySocket.from(sock)
        closed[o.on] = s
        const c = callAsync(() => s.close())
        if (o.wait) p = callProblem([], await c, (v) => (v === undefined ? undefined : 'not undefined'))
        else pending.push(c)
      } else {
        const s = o.op === 'send' ? ZeroCopySocket.from(sock) : closed[o.on]
        if (s === undefined) continue
        const c = await callAsync(() => s.send(o.data))
        // A closed instance takes no new sends (CONTRACT.md "close"): a coded rejection.
        p = callProblem([val('closed instance', s, o.op === 'send' ? [] : [ANY])], c, sendShape(o.data.length)) ?? expect(w, o.on, c.out, [Buffer.from(o.data)], false)
      }
      p ??= await goodSends(w)
      if (p !== undefined) return `op ${i + 1} (${o.op} on ${o.on}${'wait' in o ? (o.wait ? ', awaited' : ', not awaited') : ''}): ${p}`
    }
    for (const c of pending) {
      const p = callProblem([], await c, (v) => (v === undefined ? undefined : 'not undefined'))
      if (p !== undefined) return `a close() not awaited: ${p}`
    }
    return undefined
  })),
)

function sendZeroCopyTest(name: string, arb: fc.Arbitrary<{ target: Arg; data: Arg; options: Arg }>): void {
  test(name, (t) =>
    fuzz(t, arb, ZC_RUNS, zrun(async (w, { target, data, options }) => {
      const d = data.make(w)
      const msgs = snapshot(data, d)
      const c = await callAsync(() => zc.sendZeroCopy(target.make(w) as never, d as Buffer, options.make(w) as zc.SendOptions))
      const total = msgs?.reduce((n, m) => n + m.length, 0) ?? 0
      const p = callProblem([target, data, options], c, sendShape(total)) ?? expect(w, ZWorld.peerOf(target.label), c.out, msgs, false) ?? (await goodSends(w))
      return p === undefined ? undefined : `sendZeroCopy(${target}, ${data}, ${options}) ${p}`
    })),
  )
}
sendZeroCopyTest('sendZeroCopy(target, data)', fc.record({ target: targetArg(), data: validData, options: fc.constant(val('undefined', undefined)) }))
sendZeroCopyTest('sendZeroCopy(socket, data, options)', fc.record({ target: sockets, data: dataArg('send'), options: sendOptionsArg() }))

// ---- sendFileZeroCopy ----------------------------------------------------------------------

const PIPED = randomBytes(3000, 11)
const PROC = fs.readFileSync('/proc/version')
const fileArg = (): fc.Arbitrary<Arg> => {
  const file = (label: string, content: () => Buffer, make: (e: ZWorld) => unknown, streamy = false) =>
    new Arg(label, (e) => ((e.content = content()), (e.streamy = streamy), make(e as ZWorld)))
  const valid = [
    file('path', () => pool.fileBytes, () => pool.file),
    file('fd(file)', () => pool.fileBytes, (e) => e.fd('file')),
    file('FileHandle', () => pool.fileBytes, (e) => e.handle),
    // Sources without a size (CONTRACT.md): the bytes read, never {bytes: 0}.
    file('pipe holding 3000 B, writer closed', () => PIPED, (e) => {
      const p = zc.pipe()
      fs.writeSync(p.writeFd, PIPED)
      fs.closeSync(p.writeFd)
      e.later(() => fs.closeSync(p.readFd))
      return p.readFd
    }, true),
    file("'/proc/version'", () => PROC, () => '/proc/version', true),
  ]
  valid.push(file('fd(/dev/null)', () => Buffer.alloc(0), (e) => e.fd('devnull'), true))
  const loose = ["'/nonexistent'", 'directory', 'fd(closed)'].map((l) =>
    new Arg(l, (e) => (l === "'/nonexistent'" ? '/nonexistent/x' : l === 'directory' ? pool.dir : e.fd('closed')), [MAYBE]))
  const bad: Array<[string, unknown, string[]]> = [
    ['{}', {}, [TYPE]], ['null', null, [TYPE]], ['undefined', undefined, [TYPE]], ['true', true, [TYPE]], ['3n', 3n, [TYPE]],
    ['Symbol()', Symbol('f'), [TYPE]], ['-1', -1, [RANGE, TYPE]], ['1.5', 1.5, [RANGE, TYPE]], ['NaN', NaN, [RANGE, TYPE]],
  ]
  return fc.oneof({ withCrossShrink: true }, { arbitrary: fc.constantFrom(...valid), weight: 4 }, { arbitrary: fc.constantFrom(...loose, ...bad.map(([l, v, c]) => val(l, v, c))), weight: 2 })
}
const nonNeg = (valid: Array<[string, number]>, loose: Array<[string, unknown]> = []): Field => [
  ...valid.map(([l, v]): [string, unknown, string[]] => [l, v, []]),
  ...loose.map(([l, v]): [string, unknown, string[]] => [l, v, [MAYBE]]),
  ...([['-1', -1], ['1.5', 1.5], ['NaN', NaN], ['-Infinity', -Infinity]] as const).map(([l, v]): [string, unknown, string[]] => [l, v, [RANGE]]),
  ["'5'", '5', [TYPE]], ['null', null, [TYPE]],
]
const fileOptions = (odd: boolean) => optionsArg({
  offset: nonNeg([['0', 0], ['1', 1], ['4096', 4096], ['65535', 65535], ['65536', 65536]], [['70000', 70000], ['5n', 5n], ['2**53', 2 ** 53]]),
  length: nonNeg([['0', 0], ['1', 1], ['1000', 1000], ['65536', 65536], ['2**40', 2 ** 40]], [['Infinity', Infinity]]),
  windowSize: nonNeg([['4096', 4096], ['8192', 8192], ['2**20', 2 ** 20]], [['0', 0], ['1', 1]]),
  maxWindows: nonNeg([['1', 1], ['2', 2], ['4', 4]], [['0', 0]]),
  signal: [
    ['a live signal', new Fresh(() => new AbortController().signal), []],
    ['an aborted signal', new Fresh(() => AbortSignal.abort()), ['ABORT_ERR']],
    ['{ aborted: true }', { aborted: true }, [MAYBE]],
  ],
  socketOptions: [
    ['{ lingerMs: 1000 }', { lingerMs: 1000 }, []],
    ['{ lingerMs: NaN }', { lingerMs: NaN }, [RANGE]],
    ['{ copiedThreshold: 0 }', { copiedThreshold: 0 }, [RANGE]],
    ["{ lingerMs: '10' }", { lingerMs: '10' }, [TYPE]],
  ],
}, odd)

function sendFileTest(name: string, arb: fc.Arbitrary<{ target: Arg; file: Arg; options: Arg }>): void {
  test(name, (t) =>
    fuzz(t, arb, ZC_RUNS, zrun(async (w, { target, file, options }) => {
      w.content = undefined
      w.streamy = false
      const f = file.make(w)
      const o = options.make(w) as zc.SendFileOptions | undefined
      const c = await callAsync(() => zc.sendFileZeroCopy(target.make(w) as never, f as string, o))
      // The range asked of what the source holds (offset/length default to all of it).
      const num = (v: unknown) => (typeof v === 'number' || typeof v === 'bigint' ? Number(v) : undefined)
      const at = num(o?.offset) ?? 0
      const len = num(o?.length)
      const range = (w.content as Buffer | undefined)?.subarray(at, len === undefined ? undefined : at + len)
      const on = ZWorld.peerOf(target.label) === 'tcp' ? 'tcp' : undefined
      const p = callProblem([target, file, options], c, fileShape(range?.length ?? -1, w.streamy)) ?? expect(w, on, c.out, range && [range], false) ?? (await goodSends(w))
      return p === undefined ? undefined : `sendFileZeroCopy(${target}, ${file}, ${options}) ${p}`
    })),
  )
}
const none = fc.constant(val('undefined', undefined))
const tcp = fc.constant(objArg('tcp'))
sendFileTest('sendFileZeroCopy(target, file)', fc.record({ target: targetArg(true), file: fc.constant(new Arg('path', (e) => ((e.content = pool.fileBytes), pool.file))), options: none }))
sendFileTest('sendFileZeroCopy(socket, file)', fc.record({ target: tcp, file: fileArg(), options: none }))
sendFileTest('sendFileZeroCopy(socket, file, options)', fc.record({ target: tcp, file: fileArg(), options: fileOptions(false) }))
sendFileTest('sendFileZeroCopy(target, file, options)', fc.record({ target: targetArg(true), file: fileArg(), options: fileOptions(true) }))

// ---- targets with a protocol layer: TLS, HTTP responses, HTTP/2, Writables ------------------

const STREAM_RUNS = 30
const streamTargetArg = () =>
  fc.oneof(
    { withCrossShrink: true },
    { arbitrary: fc.constantFrom(...STREAM_TARGETS.filter(([, c]) => c.length === 0).map(([k]) => objArg(k))), weight: 3 },
    { arbitrary: fc.constantFrom(...STREAM_TARGETS.filter(([, c]) => c.length > 0).map(([k, c]) => objArg(k, c))), weight: 1 },
  )
/**
 * `options.end`: a boolean (a TypeError else) where it is read: by sendFileZeroCopy always
 * (its options are checked whole), by sendZeroCopy for an HTTP response only.
 */
const endOptionArg = fc.constantFrom<[string, unknown, boolean]>(['absent', undefined, false], ['true', true, false], ['false', false, false], ["'yes'", 'yes', true], ['1', 1, true], ['null', null, true])
function endSlot(target: Arg, [label, value, bad]: [string, unknown, boolean], always: boolean): Arg {
  return val(`end: ${label}`, value, !bad ? [] : always || isResponseKind(target.label) ? [TYPE] : [MAYBE])
}
const withEnd = (o: unknown, end: Arg) => (end.label === 'end: absent' ? o : { ...(typeof o === 'object' && o !== null ? o : {}), end: end.make(undefined as never) })

/** One run on a fresh target of `kind` (its own connection): the body, the target's check, no fd left. */
const srun = <T extends { target: Arg }>(body: (t: StreamTarget, v: T) => Promise<{ problem?: string; want?: Buffer; failed: boolean }>) => async (v: T): Promise<string | undefined> => {
  const fds = openFdTargets()
  const st = await site.target(v.target.label)
  let p: string | undefined
  try {
    const r = await body(st, v)
    p = r.problem ?? (await st.check(r.want, r.failed))
  } finally {
    await st.close()
  }
  return p ?? (await leakedFds(fds))
}
const streamSendShape = (bytes: number) => (v: unknown) => {
  const r = v as zc.SendResult & { windows?: number }
  if (r?.bytes !== bytes) return `bytes ${String(r?.bytes)}, want ${bytes}`
  if (typeof r.zeroCopy !== 'boolean' || typeof r.copied !== 'boolean' || !Number.isSafeInteger(r.calls) || typeof r.mechanism !== 'string') return 'not a result'
  return undefined
}
/** Through a protocol layer bytes are copies, and the result says so (README "honest copies"). */
const honest = (kind: string, bytes: number) => (v: unknown) =>
  streamSendShape(bytes)(v) ??
  (kind !== 'http res' && bytes > 0 && ((v as zc.SendResult).zeroCopy || !(v as zc.SendResult).copied || typeof (v as zc.SendResult).fallback !== 'string')
    ? 'bytes through a protocol layer must say zeroCopy: false, copied: true and why (fallback)'
    : undefined)

test('sendZeroCopy(stream target, data, options)', (t) =>
  fuzz(t, fc.record({ target: streamTargetArg(), data: dataArg('send'), options: sendOptionsArg(), end: endOptionArg }), STREAM_RUNS, srun(async (st, { target, data, options, end }) => {
    const d = data.make(undefined as never)
    const msgs = snapshot(data, d)
    const e = endSlot(target, end, false)
    const c = await callAsync(() => zc.sendZeroCopy(st.value as never, d as Buffer, withEnd(options.make(undefined as never), e) as zc.SendOptions))
    const want = msgs && Buffer.concat(msgs)
    const problem = callProblem([target, data, options, e], c, honest(target.label, want?.length ?? 0))
    return { problem: problem && `sendZeroCopy(${target}, ${data}, ${options} + ${e}) ${problem}`, want, failed: !c.out?.ok }
  })),
)

const streamFileOptions = optionsArg({
  offset: [['0', 0, []], ['1', 1, []], ['4096', 4096, []], ['65536', 65536, []], ['70000', 70000, [RANGE]], ['-1', -1, [RANGE]], ["'5'", '5', [TYPE]]],
  length: [['0', 0, []], ['1', 1, []], ['1000', 1000, []], ['2**40', 2 ** 40, []], ['1.5', 1.5, [RANGE]], ['null', null, [TYPE]]],
  signal: [
    ['a live signal', new Fresh(() => new AbortController().signal), []],
    ['an aborted signal', new Fresh(() => AbortSignal.abort()), ['ABORT_ERR']],
  ],
}, false)
const poolFile = fc.constantFrom(new Arg('path', () => pool.file), new Arg('fd(file)', () => pool.fd('file')))
test('sendFileZeroCopy(stream target, file, options)', (t) =>
  fuzz(t, fc.record({ target: streamTargetArg(), file: poolFile, options: streamFileOptions, end: endOptionArg }), STREAM_RUNS, srun(async (st, { target, file, options, end }) => {
    const o = options.make(undefined as never) as zc.SendFileOptions | undefined
    const e = endSlot(target, end, true)
    const c = await callAsync(() => zc.sendFileZeroCopy(st.value as never, file.make(pool) as string, withEnd(o, e) as zc.SendFileOptions))
    const at = typeof o?.offset === 'number' ? o.offset : 0
    const len = typeof o?.length === 'number' ? o.length : undefined
    const want = pool.fileBytes.subarray(at, len === undefined ? undefined : at + len)
    const problem = callProblem([target, file, options, e], c, honest(target.label, want.length))
    return { problem: problem && `sendFileZeroCopy(${target}, ${file}, ${options} + ${e}) ${problem}`, want, failed: !c.out?.ok }
  })),
)

test('ZeroCopySocket.from(stream target): send, sendEach, close', (t) =>
  fuzz(t, fc.tuple(fc.record({ target: streamTargetArg(), options: sendOptionsArg() }), fc.oneof(fc.record({ each: fc.constant(false), data: dataArg('send') }), fc.record({ each: fc.constant(true), data: dataArg('each') }))).map(([a, b]) => ({ ...a, ...b })), STREAM_RUNS, srun(async (st, { target, each, data, options }) => {
    // A response is not a stream to attach: from() refuses it (send to it with sendZeroCopy).
    // An ended or destroyed Writable may be attached; its sends reject.
    const refused = isResponseKind(target.label) ? [TYPE] : target.bad.filter((c) => c === TYPE || c === 'ERR_ZEROCOPY_PROTOCOL_LAYER')
    const fromArg = new Arg(target.label, () => st.value, refused.length > 0 ? refused : target.bad.length > 0 ? [MAYBE] : [])
    const made = callSync(() => ZeroCopySocket.from(st.value as never))
    const p0 = callProblem([fromArg], made, (v) => (v instanceof ZeroCopySocket ? undefined : 'not a ZeroCopySocket'))
    if (p0 !== undefined) return { problem: `ZeroCopySocket.from(${target}) ${p0}`, failed: true }
    if (!made.out!.ok) return { failed: true }
    const z = made.out!.value as ZeroCopySocket
    const d = data.make(undefined as never)
    const msgs = snapshot(data, d)
    const o = options.make(undefined as never) as zc.SendOptions
    const c = await callAsync(() => (each ? z.sendEach(d as Buffer[], o) : z.send(d as Buffer, o)))
    const want = msgs && Buffer.concat(msgs)
    const problem = callProblem([target, data, options], c, honest(target.label, want?.length ?? 0)) ?? callProblem([], await callAsync(() => z.close()), (v) => (v === undefined ? undefined : 'not undefined'))
    return { problem: problem && `ZeroCopySocket.from(${target}).${each ? 'sendEach' : 'send'}(${data}, ${options}) ${problem}`, want, failed: !c.out?.ok }
  })),
)

// ---- relay and receiveToFile ---------------------------------------------------------------

const RELAY_RUNS = 60
/** One run on a fresh chain whose far ends already sent PAYLOAD bytes each and ended. */
const rrun = <T>(body: (w: RelayWorld, v: T) => Promise<string | undefined>) => async (v: T): Promise<string | undefined> => {
  const fds = openFdTargets()
  const w = await RelayWorld.open(pool.dir)
  let p: string | undefined
  try {
    p = await body(w, v)
  } finally {
    await w.close()
    p ??= runningJobs() > 0 ? `${runningJobs()} relay job(s) still running after the call settled` : await leakedFds(fds)
  }
  return p
}
/** The counts are exact when Node's own sockets were given (an fd leaves Node reading too). */
const bothNode = (...a: Arg[]) => a.every((x) => x.label === 'a' || x.label === 'b')
test('relay(a, b, options)', (t) =>
  fuzz(t, fc.record({ a: endArg('a'), b: endArg('b'), options: relayOptionsArg() }), RELAY_RUNS, rrun(async (w, { a, b, options }) => {
    const o = options.make(w) as zc.RelayOptions | undefined
    const c = await callAsync(() => zc.relay(a.make(w) as never, b.make(w) as never, o))
    const [ab, ba] = expectedRelay(o)
    const shape = (v: unknown) => {
      const r = v as zc.RelayResult
      if (!['copy', 'splice'].includes(r?.mechanism)) return `mechanism ${String(r?.mechanism)}`
      if (bothNode(a, b) && (r.aToB !== ab || r.bToA !== ba)) return `moved ${r.aToB}/${r.bToA}, want ${ab}/${ba}`
      return isCount(r.aToB) ?? isCount(r.bToA)
    }
    // A length needs a direction: a rule across two fields, judged as one more argument.
    const oneWay = o?.length === undefined || o?.direction === 'a->b' || o?.direction === 'b->a'
    const rule = oneWay ? [] : [val('length without a direction', undefined, ['ERR_INVALID_ARG_VALUE'])]
    const p = callProblem([a, b, options, ...rule], c, shape)
    return p === undefined ? undefined : `relay(${a}, ${b}, ${options}) ${p}`
  })),
)
test('receiveToFile(socket, file, options)', (t) =>
  fuzz(t, fc.record({ socket: endArg('a'), file: relayFileArg(), options: fileOptionsArg() }), RELAY_RUNS, rrun(async (w, { socket, file, options }) => {
    const o = options.make(w) as zc.ReceiveToFileOptions | undefined
    const c = await callAsync(() => zc.receiveToFile(socket.make(w) as never, file.make(w) as string, o))
    const want = typeof o?.length === 'number' ? o.length : PAYLOAD
    const shape = (v: unknown) => {
      const r = v as zc.ReceiveToFileResult
      if (!['copy', 'splice'].includes(r?.mechanism)) return `mechanism ${String(r?.mechanism)}`
      if (bothNode(socket) && r.bytes !== want) return `bytes ${r.bytes}, want ${want}`
      return isCount(r.bytes)
    }
    const p = callProblem([socket, file, options], c, shape)
    return p === undefined ? undefined : `receiveToFile(${socket}, ${file}, ${options}) ${p}`
  })),
)

test('no fd of the process is left open', async (t) => {
  t.diagnostic(`seed ${SEED}`)
  await site.close()
  await pool.close()
  assert.equal(await leakedFds(fdsAtStart), undefined)
})
