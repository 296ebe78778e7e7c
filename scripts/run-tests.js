// `npm test`'s runner: every dist/test/*.test.js through node's test runner, one file at
// a time (the tests measure timing and CPU, so files must not compete), on the engine
// sockets get by default here (io_uring where it can run, else epoll); then the files
// whose subject is the send engine once more on the other engine (ZEROCOPY_ENGINE), so
// both engines pass every rule. ZEROCOPY_ENGINE set by the caller: that engine only.
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const dir = path.join(__dirname, '..', 'dist', 'test')
// ZEROCOPY_TEST_SKIP=a,b leaves out dist/test/a.test.js and b.test.js (the ASan run and
// the Node matrix leave out the long example runs in namespaces; npm test runs them all).
const skip = new Set((process.env.ZEROCOPY_TEST_SKIP ?? '').split(',').filter(Boolean).map((n) => `${n}.test.js`))
const files = fs
  .readdirSync(dir)
  .filter((f) => f.endsWith('.test.js') && !skip.has(f))
  .sort()
  .map((f) => path.join(dir, f))
// Everything that sends through a SendChannel: the model-based sequences, the rules of
// order, lifetime, abort and reset, and the kernels' releases, on both engines.
const ENGINE_FILES = [
  'cancel-downloads',
  'detached-send',
  'lifetime',
  'model-sequences',
  'regressions-file',
  'regressions-send',
  'relay-order',
  'relay-sequences',
  'send-each',
  'send-file',
  'unmappable-files',
  'workers',
  'zerocopy-tcp',
  'zerocopy-udp',
].map((name) => path.join(dir, `${name}.test.js`))

function run(label, list, env) {
  console.log(`# ${label}`)
  const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...list], { stdio: 'inherit', env })
  return r.status ?? 1
}

if (process.env.ZEROCOPY_ENGINE) {
  process.exit(run(`engine ${process.env.ZEROCOPY_ENGINE} (ZEROCOPY_ENGINE)`, files, process.env))
}
const { chooseEngine, uringUnavailable } = require('../dist/lib/engine')
const first = chooseEngine('auto').engine
let status = run(`every test file, on the default engine here: ${first}`, files, process.env)
if (first === 'io_uring') {
  status ||= run('the engine files again on the epoll engine', ENGINE_FILES, { ...process.env, ZEROCOPY_ENGINE: 'epoll' })
} else {
  console.log(`# the io_uring engine cannot run here (${uringUnavailable()}): its pass is skipped`)
}
process.exit(status)
