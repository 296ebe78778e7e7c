// Smoke test of an installed copy, from CommonJS: splice, vmsplice, a zero-copy send.
// Run from a project that has zerocopy in node_modules: node smoke.cjs
'use strict'
const assert = require('node:assert/strict')
const zc = require('zerocopy')
require('./smoke-body.cjs')(zc, assert, 'cjs').catch((err) => {
  console.error(err)
  process.exit(1)
})
