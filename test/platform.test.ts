// On anything but Linux the package fails with one clear error, so a server that marks
// it optional can catch it and go on.
import * as assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import * as path from 'node:path'
import { test } from 'node:test'

test('requiring the package on another platform gives one clear error naming it', () => {
  const entry = path.join(__dirname, '..', 'lib', 'index.js')
  const script = `
    Object.defineProperty(process, 'platform', { value: 'darwin' })
    try { require(${JSON.stringify(entry)}); console.log('loaded') }
    catch (err) { console.log('error: ' + err.message) }`
  const out = execFileSync(process.execPath, ['-e', script]).toString()
  assert.match(out, /^error: zerocopy supports Linux only \(this is darwin-\w+\)/)
})
