// examples/netns-testbed: the table shows true zero-copy into the sink, and no
// namespace survives the run, also when a step fails.
import * as assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import * as path from 'node:path'
import { test } from 'node:test'
import { netnsUnavailable } from '../examples/netns-topology'

const TESTBED = path.join(__dirname, '..', 'examples', 'netns-testbed.js')

/**
 * The namespaces a test-bed process made that still exist: named zc-a-/zc-b- and its
 * pid in base 36 (examples/netns-topology.ts). Other processes on the machine (another
 * checkout's test run) make namespaces of their own meanwhile; they are not ours.
 */
function leftBy(pid: number | undefined): string[] {
  assert.ok(pid !== undefined && pid > 0, 'the test bed ran')
  return execFileSync('ip', ['netns', 'list'])
    .toString()
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(`zc-a-${pid.toString(36)}`) || n.startsWith(`zc-b-${pid.toString(36)}`))
}

test('the test bed prints its table with zc=y for UDP into the sink and cleans up', (t) => {
  const why = netnsUnavailable()
  if (why !== undefined) return t.skip(why)
  const r = spawnSync(process.execPath, [TESTBED, '1'], { timeout: 120000 })
  assert.equal(r.status, 0, r.stderr.toString())
  const table = r.stdout.toString()
  assert.match(table, /^test\s+mode\s+MB\/s\s+completions\s+zc\s+why$/m)
  for (const mode of ['tcp\\s+copy', 'tcp\\s+-z', 'tcp\\s+-f file', 'udp\\s+copy']) assert.match(table, new RegExp(`^${mode}\\s`, 'm'))
  assert.match(table, /^tcp\s+-z\s+\d+\s+[1-9]\d*\s+n\s+TCP needs a receiving socket/m)
  // The example sends UDP on an fd libuv does not watch: completions on every Node, and
  // -Z 1 held (a copied completion would have failed the run).
  assert.match(table, /^udp\s+-z\s+\d+\s+[1-9]\d*\s+y\s+forwarded to a blackhole/m)
  assert.deepEqual(leftBy(r.pid), [], 'no namespace left behind')
})

test('a step that fails still removes the namespaces', (t) => {
  const why = netnsUnavailable()
  if (why !== undefined) return t.skip(why)
  const r = spawnSync(process.execPath, [TESTBED, '1'], { timeout: 60000, env: { ...process.env, ZEROCOPY_TESTBED_FAIL_AT: '1' } })
  assert.equal(r.status, 1)
  assert.match(r.stderr.toString(), /step 1 failed on request/)
  assert.deepEqual(leftBy(r.pid), [], 'no namespace left behind')
})
