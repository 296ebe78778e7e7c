// Every argument check, table-driven: wrong types are TypeErrors, impossible values
// RangeErrors, a closed fd the kernel's EBADF, and none of them reaches a syscall
// with a bad pointer or length (the AddressSanitizer run checks the native side).
import * as assert from 'node:assert/strict'
import * as fs from 'node:fs'
import { test } from 'node:test'
import * as zc from '../lib'
import { closeQuietly, rejectsSystemError, testPipe, throwsSystemError } from './helpers'

type Expected = 'ERR_INVALID_ARG_TYPE' | 'ERR_OUT_OF_RANGE' | 'ERR_INVALID_STATE'
interface Case {
  name: string
  value: unknown
  code: Expected
}

const errorClass: Record<Expected, ErrorConstructor> = {
  ERR_INVALID_ARG_TYPE: TypeError,
  ERR_OUT_OF_RANGE: RangeError,
  ERR_INVALID_STATE: TypeError,
}

const badFds: Case[] = [
  { name: 'a string', value: '3', code: 'ERR_INVALID_ARG_TYPE' },
  { name: 'null', value: null, code: 'ERR_INVALID_ARG_TYPE' },
  { name: 'undefined', value: undefined, code: 'ERR_INVALID_ARG_TYPE' },
  { name: 'a bigint', value: 3n, code: 'ERR_INVALID_ARG_TYPE' },
  { name: 'an object', value: { valueOf: () => 3 }, code: 'ERR_INVALID_ARG_TYPE' },
  { name: 'negative', value: -1, code: 'ERR_OUT_OF_RANGE' },
  { name: 'fractional', value: 1.5, code: 'ERR_OUT_OF_RANGE' },
  { name: 'NaN', value: NaN, code: 'ERR_OUT_OF_RANGE' },
  { name: 'Infinity', value: Infinity, code: 'ERR_OUT_OF_RANGE' },
  { name: '2^31', value: 2 ** 31, code: 'ERR_OUT_OF_RANGE' },
]

const badOffsets: Case[] = [
  { name: 'a string', value: '0', code: 'ERR_INVALID_ARG_TYPE' },
  { name: 'a boolean', value: false, code: 'ERR_INVALID_ARG_TYPE' },
  { name: 'an object', value: {}, code: 'ERR_INVALID_ARG_TYPE' },
  { name: 'negative', value: -1, code: 'ERR_OUT_OF_RANGE' },
  { name: 'negative zero is fine, -0.5 is not', value: -0.5, code: 'ERR_OUT_OF_RANGE' },
  { name: 'fractional', value: 0.5, code: 'ERR_OUT_OF_RANGE' },
  { name: 'NaN', value: NaN, code: 'ERR_OUT_OF_RANGE' },
  { name: 'past 2^53 as a number', value: 2 ** 53, code: 'ERR_OUT_OF_RANGE' },
  { name: 'a negative bigint', value: -1n, code: 'ERR_OUT_OF_RANGE' },
  { name: 'a bigint of 2^63', value: 2n ** 63n, code: 'ERR_OUT_OF_RANGE' },
  { name: 'a bigint of 2^64', value: 2n ** 64n, code: 'ERR_OUT_OF_RANGE' },
]

// Lengths take what offsets take, except that null/undefined are not "no length".
const badLengths: Case[] = [
  ...badOffsets,
  { name: 'null', value: null, code: 'ERR_INVALID_ARG_TYPE' },
  { name: 'undefined', value: undefined, code: 'ERR_INVALID_ARG_TYPE' },
]

const badFlags: Case[] = [
  { name: 'a string', value: '1', code: 'ERR_INVALID_ARG_TYPE' },
  { name: 'null', value: null, code: 'ERR_INVALID_ARG_TYPE' },
  { name: 'a bigint', value: 1n, code: 'ERR_INVALID_ARG_TYPE' },
  { name: 'negative', value: -1, code: 'ERR_OUT_OF_RANGE' },
  { name: '2^32', value: 2 ** 32, code: 'ERR_OUT_OF_RANGE' },
  { name: 'fractional', value: 1.5, code: 'ERR_OUT_OF_RANGE' },
]

function detachedBuffer(): ArrayBuffer {
  const ab = new ArrayBuffer(16)
  structuredClone(ab, { transfer: [ab] })
  assert.equal(ab.byteLength, 0, 'detached')
  return ab
}

function detachedView<V>(View: new (ab: ArrayBuffer, offset: number, length: number) => V): V {
  const ab = new ArrayBuffer(8)
  const view = new View(ab, 2, 4)
  structuredClone(ab, { transfer: [ab] })
  return view
}

const badData: Case[] = [
  { name: 'a string', value: 'hello', code: 'ERR_INVALID_ARG_TYPE' },
  { name: 'a number', value: 42, code: 'ERR_INVALID_ARG_TYPE' },
  { name: 'null', value: null, code: 'ERR_INVALID_ARG_TYPE' },
  { name: 'a plain object', value: { length: 4 }, code: 'ERR_INVALID_ARG_TYPE' },
  { name: 'an array holding a number', value: [Buffer.from('a'), 1], code: 'ERR_INVALID_ARG_TYPE' },
  { name: 'an array holding an array', value: [[Buffer.from('a')]], code: 'ERR_INVALID_ARG_TYPE' },
  { name: 'a detached ArrayBuffer', value: detachedBuffer(), code: 'ERR_INVALID_STATE' },
  { name: 'a view of a detached ArrayBuffer', value: detachedView(Uint8Array), code: 'ERR_INVALID_STATE' },
  { name: 'a DataView of a detached ArrayBuffer', value: [new DataView(new ArrayBuffer(4)), detachedView(DataView)], code: 'ERR_INVALID_STATE' },
  { name: 'more views than IOV_MAX', value: new Array(zc.constants.IOV_MAX + 1).fill(Buffer.alloc(1)), code: 'ERR_OUT_OF_RANGE' },
]

/** Runs `call` with `value` in one argument slot and checks the error class and code. */
function expectArgError(call: (value: unknown) => unknown, c: Case, argName: string): void {
  assert.throws(
    () => call(c.value),
    (err: NodeJS.ErrnoException) => {
      assert.ok(err instanceof errorClass[c.code], `${argName} ${c.name}: ${err.name}`)
      assert.equal(err.code, c.code, `${argName} ${c.name}: ${err.message}`)
      assert.ok(err.message.includes(argName), `message names ${argName}: ${err.message}`)
      return true
    },
  )
}

test('every raw call rejects bad arguments before the kernel sees them', (t) => {
  const p = testPipe(t, { nonBlocking: true })
  const { readFd: r, writeFd: w } = p
  // [function name, argument name, call with the bad value in that slot, cases]
  const table: Array<[string, (v: unknown) => unknown, Case[]]> = [
    ['fdIn', (v) => zc.splice(v as number, null, w, null, 1), badFds],
    ['offIn', (v) => zc.splice(r, v as number, w, null, 1), badOffsets],
    ['fdOut', (v) => zc.splice(r, null, v as number, null, 1), badFds],
    ['offOut', (v) => zc.splice(r, null, w, v as number, 1), badOffsets],
    ['length', (v) => zc.splice(r, null, w, null, v as number), badLengths],
    ['flags', (v) => zc.splice(r, null, w, null, 1, v as number), badFlags],
    ['fdIn', (v) => zc.tee(v as number, w, 1), badFds],
    ['fdOut', (v) => zc.tee(r, v as number, 1), badFds],
    ['length', (v) => zc.tee(r, w, v as number), badLengths],
    ['flags', (v) => zc.tee(r, w, 1, v as number), badFlags],
    ['pipeFd', (v) => zc.vmsplice(v as number, Buffer.alloc(1)), badFds],
    ['data', (v) => zc.vmsplice(w, v as Buffer), badData],
    ['flags', (v) => zc.vmsplice(w, Buffer.alloc(1), v as number), badFlags],
    ['outFd', (v) => zc.sendfile(v as number, r, null, 1), badFds],
    ['inFd', (v) => zc.sendfile(w, v as number, null, 1), badFds],
    ['offset', (v) => zc.sendfile(w, r, v as number, 1), badOffsets],
    ['count', (v) => zc.sendfile(w, r, null, v as number), badLengths],
    ['fd', (v) => zc.getPipeSize(v as number), badFds],
    ['fd', (v) => zc.setPipeSize(v as number, 4096), badFds],
    ['size', (v) => zc.setPipeSize(w, v as number), [...badLengths, { name: '2^31', value: 2 ** 31, code: 'ERR_OUT_OF_RANGE' }]],
    ['fd', (v) => zc.inputQueueBytes(v as number), badFds],
    ['fd', (v) => zc.outputQueueBytes(v as number), badFds],
  ]
  let checked = 0
  for (const [argName, call, cases] of table) {
    for (const c of cases) {
      expectArgError(call, c, argName)
      checked++
    }
  }
  assert.ok(checked > 150, `checked ${checked} cases`)
  assert.equal(zc.inputQueueBytes(r), 0, 'no call put a byte into the pipe')
})

test('the async forms reject (never throw) on bad arguments', async (t) => {
  const p = testPipe(t)
  const calls: Array<[string, () => Promise<number>, string]> = [
    ['spliceAsync', () => zc.spliceAsync(-1, null, p.writeFd, null, 1), 'ERR_OUT_OF_RANGE'],
    ['teeAsync', () => zc.teeAsync(p.readFd, p.writeFd, 'x' as unknown as number), 'ERR_INVALID_ARG_TYPE'],
    ['sendfileAsync', () => zc.sendfileAsync(p.writeFd, p.readFd, -5n, 1), 'ERR_OUT_OF_RANGE'],
  ]
  for (const [name, call, code] of calls) {
    let promise: Promise<number> | undefined
    assert.doesNotThrow(() => {
      promise = call()
    }, name)
    await assert.rejects(promise!, { code }, name)
  }
})

test('pipe() options are checked', () => {
  assert.throws(() => zc.pipe('x' as never), { code: 'ERR_INVALID_ARG_TYPE' })
  assert.throws(() => zc.pipe([] as never), { code: 'ERR_INVALID_ARG_TYPE' })
  assert.throws(() => zc.pipe({ nonBlocking: 1 } as never), { code: 'ERR_INVALID_ARG_TYPE', message: /options\.nonBlocking/ })
  assert.throws(() => zc.pipe({ closeOnExec: 'no' } as never), { code: 'ERR_INVALID_ARG_TYPE' })
})

test('values at the edge of the ranges are accepted and reach the kernel', (t) => {
  const p = testPipe(t, { nonBlocking: true })
  const fd = fs.openSync(__filename, 'r')
  t.after(() => fs.closeSync(fd))
  // Largest offsets: the kernel, not the binding, has the last word.
  for (const off of [2 ** 53 - 1, 2n ** 63n - 1n]) {
    try {
      assert.equal(zc.splice(fd, off, p.writeFd, null, 1), 0)
    } catch (err) {
      assert.equal((err as NodeJS.ErrnoException).code, 'EINVAL', 'a kernel error, not a binding one')
    }
  }
  // -0 is a valid zero; lengths far past 4 GiB are capped by the kernel, not refused.
  assert.equal(zc.splice(fd, -0, p.writeFd, null, 2 ** 40), Math.min(fs.fstatSync(fd).size, 65536))
  assert.ok(zc.inputQueueBytes(p.readFd) > 0)
})

test('a closed fd is the kernel EBADF, in sync and async forms', async (t) => {
  const p = testPipe(t)
  const closed = zc.pipe()
  closeQuietly(closed.readFd)
  closeQuietly(closed.writeFd)
  // Nothing in this test opens fds in between, so the numbers stay free.
  throwsSystemError(() => zc.splice(closed.readFd, null, p.writeFd, null, 1), 'EBADF', 'splice')
  throwsSystemError(() => zc.tee(closed.readFd, p.writeFd, 1), 'EBADF', 'tee')
  throwsSystemError(() => zc.vmsplice(closed.writeFd, Buffer.alloc(1)), 'EBADF', 'vmsplice')
  throwsSystemError(() => zc.sendfile(p.writeFd, closed.readFd, 0, 1), 'EBADF', 'sendfile')
  await rejectsSystemError(zc.spliceAsync(closed.readFd, null, p.writeFd, null, 1), 'EBADF', 'splice')
  await rejectsSystemError(zc.teeAsync(closed.readFd, p.writeFd, 1), 'EBADF', 'tee')
  await rejectsSystemError(zc.sendfileAsync(p.writeFd, closed.readFd, 0, 1), 'EBADF', 'sendfile')
})

test('an array whose getter detaches an earlier view is refused, not read', (t) => {
  const p = testPipe(t, { nonBlocking: true })
  const ab = new ArrayBuffer(64)
  const first = new Uint8Array(ab)
  const list: unknown[] = [first]
  Object.defineProperty(list, 1, {
    enumerable: true,
    get() {
      structuredClone(ab, { transfer: [ab] })
      return Buffer.from('second')
    },
  })
  assert.throws(() => zc.vmsplice(p.writeFd, list as Buffer[]), { code: 'ERR_INVALID_STATE' })
  assert.equal(zc.inputQueueBytes(p.readFd), 0)
})
