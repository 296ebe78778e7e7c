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
