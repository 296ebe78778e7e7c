// `npm test`'s runner: every dist/test/*.test.js through node's test runner, one file at
// a time (the tests measure timing and CPU, so files must not compete). Node 20.10+ does
// that with --test-concurrency=1; older Node (18) gets one `node --test` per file.
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const dir = path.join(__dirname, '..', 'dist', 'test')
const files = fs
  .readdirSync(dir)
  .filter((f) => f.endsWith('.test.js'))
  .sort()
  .map((f) => path.join(dir, f))
const [major, minor] = process.versions.node.split('.').map(Number)
const run = (args) => spawnSync(process.execPath, args, { stdio: 'inherit' }).status ?? 1

if (major > 20 || (major === 20 && minor >= 10)) {
  process.exit(run(['--test', '--test-concurrency=1', ...files]))
}
let failed = 0
for (const file of files) if (run(['--test', file]) !== 0) failed++
console.log(`files: ${files.length - failed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
