// examples/getopt: glibc's getopt rules, which the msg_zerocopy example's command line
// follows so that the kernel selftest's scripts can drive it.
import * as assert from 'node:assert/strict'
import { test } from 'node:test'
import { atoi, getopt, strtoi } from '../examples/getopt'

const OPTS = '46c:C:D:i:l:mp:rs:S:t:vzZ:'
const parse = (args: string[]) => {
  const warnings: string[] = []
  const r = getopt(args, OPTS, (m) => warnings.push(m))
  return { ...r, flat: r.options.map((o) => (o.value === undefined ? o.letter : `${o.letter}=${o.value}`)), warnings }
}

test('options anywhere, grouped flags, attached and separate values', () => {
  const r = parse(['-4z', '-t2', 'udp', '-Z', '0', '-vv', '-D', '-6'])
  assert.deepEqual(r.flat, ['4', 'z', 't=2', 'Z=0', 'v', 'v', 'D=-6'])
  assert.deepEqual(r.operands, ['udp'])
  assert.equal(r.last, 'udp')
  assert.deepEqual(r.warnings, [])
  // The selftest script's own line: options after the test name.
  assert.deepEqual(parse(['-4', '-i', 'veth0', '-t', '1', '-C', '3', '-S', 'a', '-D', 'b', '-z', 'udp', '-Z', '1']).operands, ['udp'])
})

test('"--" ends the options; unknown options and missing values are reported and skipped', () => {
  const r = parse(['-x4', '--', '-z', 'tcp'])
  assert.deepEqual(r.flat, ['?', '4'])
  assert.deepEqual(r.operands, ['-z', 'tcp'])
  assert.deepEqual(r.warnings, ["invalid option -- 'x'"])
  const m = parse(['tcp', '-t'])
  assert.deepEqual(m.flat, ['?'])
  assert.deepEqual(m.warnings, ["option requires an argument -- 't'"])
  assert.equal(parse(['-4', '-D', '1.2.3.4']).last, '1.2.3.4', "argv[argc - 1] when there is no operand")
})

test('strtoul/strtol/atoi as C parses them', () => {
  assert.equal(strtoi('8000'), 8000)
  assert.equal(strtoi('0x10'), 16)
  assert.equal(strtoi('010'), 8)
  assert.equal(strtoi('010', 10), 10)
  assert.equal(strtoi('12abc'), 12)
  assert.equal(strtoi('abc'), 0)
  assert.equal(strtoi(' -3'), -3)
  assert.equal(atoi('2'), 2)
  assert.equal(atoi('x'), 0)
})
