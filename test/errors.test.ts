// Error codes are symbolic names for every errno, also those libuv has no name for, and
// come from a table built at compile time (glibc's strerrorname_np needs glibc 2.32; the
// prebuilt binary must load on 2.28, which test:package checks).
import * as assert from 'node:assert/strict'
import * as os from 'node:os'
import { test } from 'node:test'
import { native } from '../lib/native'

test('every errno Node knows gets one of its names as the code', () => {
  const names = new Map<number, string[]>()
  for (const [name, value] of Object.entries(os.constants.errno)) names.set(value, [...(names.get(value) ?? []), name])
  for (const [value, known] of names) {
    const err = native.systemError(value, 'test')
    assert.ok(known.includes(err.code!), `errno ${value}: ${err.code} is not one of ${known.join(', ')}`)
    assert.equal(err.errno, -value)
  }
})

test('errnos libuv has no name for still get their symbolic name, and an unknown one E<n>', () => {
  // Linux's numbers (asm-generic, the same on x64 and arm64).
  const expected: Array<[number, string]> = [
    [45, 'EL2NSYNC'],
    [85, 'ERESTART'],
    [129, 'EKEYREJECTED'],
    [133, 'EHWPOISON'],
    [35, 'EDEADLK'],
    [200, 'E200'],
  ]
  for (const [value, code] of expected) {
    const err = native.systemError(value, 'test')
    assert.equal(err.code, code)
    assert.match(err.message, new RegExp(`^${code}: .+, test$`))
  }
})
