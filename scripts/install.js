// npm's install step: nothing to do when a prebuilt binary matches this platform (the
// package ships prebuilds/linux-x64, for glibc); otherwise compile with node-gyp, and
// say so. `npm rebuild zerocopy --build-from-source` compiles even where a prebuild
// matches (lib/native.ts suggests it when the prebuild does not load).
'use strict'
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const gypBuild = require('node-gyp-build')

const root = path.join(__dirname, '..')
const fromSource = /^(true|1)$/.test(process.env.npm_config_build_from_source || '')
if (fromSource) {
  console.log('zerocopy: --build-from-source; compiling with node-gyp')
} else {
  try {
    gypBuild.path(root)
    process.exit(0) // a prebuild or an earlier build is there
  } catch {
    console.log(`zerocopy: no prebuilt binary for ${process.platform}-${process.arch}; compiling with node-gyp`)
  }
}
const nodeGyp = process.env.npm_config_node_gyp
const [cmd, args] = nodeGyp ? [process.execPath, [nodeGyp, 'rebuild']] : ['node-gyp', ['rebuild']]
const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' })
process.exit(r.status ?? 1)
