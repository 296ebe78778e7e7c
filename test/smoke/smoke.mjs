// Smoke test of an installed copy, from an ES module: named imports and the same checks.
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import * as zc from 'zerocopy'
import { sendZeroCopy, splice, vmsplice } from 'zerocopy'

assert.equal(typeof sendZeroCopy, 'function')
assert.equal(typeof splice, 'function')
assert.equal(typeof vmsplice, 'function')
const require = createRequire(import.meta.url)
await require('./smoke-body.cjs')(zc, assert, 'esm')
