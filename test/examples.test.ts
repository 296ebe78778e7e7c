// The examples keep working: each runs as a user would run it.
import * as assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { test } from 'node:test'
import { randomBytes, sha256, tempDir } from './helpers'

const examples = path.join(__dirname, '..', 'examples')

test('examples/splice-copy copies a file byte for byte', (t) => {
  const dir = tempDir(t)
  const data = randomBytes(3 * 1024 * 1024 + 7, 41)
  fs.writeFileSync(path.join(dir, 'in'), data)
  const out = execFileSync(process.execPath, [path.join(examples, 'splice-copy.js'), path.join(dir, 'in'), path.join(dir, 'out')])
  assert.match(out.toString(), new RegExp(`copied ${data.length} bytes`))
  assert.equal(sha256(fs.readFileSync(path.join(dir, 'out'))), sha256(data))
})

test('examples/demo runs its three transfers on loopback and prints the comparison', () => {
  const started = Date.now()
  const out = execFileSync(process.execPath, [path.join(examples, 'demo.js')], {
    env: { ...process.env, ZEROCOPY_DEMO_SECONDS: '1' },
    timeout: 30000,
  }).toString()
  assert.match(out, /^transfer\s+GB\/s\s+CPU s\/GB\s+completions\s+copied$/m)
  assert.match(out, /^socket\.write\s+\d+\.\d+\s+\d+\.\d+\s+0\s+yes/m)
  assert.match(out, /^ZeroCopySocket\.send\s+\d+\.\d+\s+\d+\.\d+\s+[1-9]\d*\s+yes, the kernel said COPIED/m)
  assert.match(out, /^sendFileZeroCopy\s+\d+\.\d+\s+\d+\.\d+\s+[1-9]\d*\s+yes/m)
  assert.match(out, /local socket, and the kernel copies/)
  assert.ok(Date.now() - started < 30000)
})
