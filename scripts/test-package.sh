#!/usr/bin/env bash
# test:package: what a user with no compiler gets. Builds the prebuilt binary
# (prebuildify --napi --strip), packs the package, checks the tarball holds what it
# should and nothing else, installs it into an empty project with --ignore-scripts and
# with every compiler on PATH replaced by one that fails, and runs the smoke tests
# (CommonJS and ESM) against that installed copy.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

npx prebuildify --napi --strip >"$work/prebuild.log" 2>&1 || { cat "$work/prebuild.log"; exit 1; }
ls prebuilds/linux-x64/*.node >/dev/null
tarball=$(npm pack --silent --pack-destination "$work" 2>/dev/null | tail -n 1)
echo "packed $tarball"

# The tarball: the prebuild, the compiled library with types, the sources to build
# from, README and license; no build output, tests, benchmarks or examples.
tar -tzf "$work/$tarball" | sed 's|^package/||' | sort >"$work/contents"
for required in package.json README.md LICENSE binding.gyp dist/lib/index.js dist/lib/index.d.ts native/addon.cc; do
  grep -qx "$required" "$work/contents" || { echo "tarball lacks $required"; exit 1; }
done
grep -q '^prebuilds/linux-x64/.*\.node$' "$work/contents" || { echo "tarball lacks the linux-x64 prebuild"; exit 1; }
if grep -E '^(build/|build-asan/|test/|bench/|examples/|dist/test/|dist/bench/|dist/examples/|node_modules/)' "$work/contents"; then
  echo "tarball holds files it should not (above)"
  exit 1
fi

# No compiler: each name a build could call fails loudly.
mkdir -p "$work/nocc"
for tool in cc gcc g++ c++ clang clang++ make python3; do
  printf '#!/bin/sh\necho "%s: no compiler here (test:package)" >&2\nexit 127\n' "$tool" >"$work/nocc/$tool"
  chmod +x "$work/nocc/$tool"
done
mkdir -p "$work/app"
cd "$work/app"
echo '{"name":"app","version":"1.0.0","private":true}' >package.json
PATH="$work/nocc:$PATH" npm install --ignore-scripts --no-audit --no-fund "$work/$tarball" >"$work/install.log" 2>&1 || {
  cat "$work/install.log"
  exit 1
}
cp "$root"/test/smoke/smoke.cjs "$root"/test/smoke/smoke.mjs "$root"/test/smoke/smoke-body.cjs .
PATH="$work/nocc:$PATH" node smoke.cjs
PATH="$work/nocc:$PATH" node smoke.mjs
test ! -e node_modules/zerocopy/build || { echo "the installed copy was built, not prebuilt"; exit 1; }
echo "test:package: the packed tarball installs without scripts or compilers and works from CommonJS and ESM"

# Where no prebuild matches, the install step compiles with node-gyp and says so.
mkdir -p "$work/noprebuild" && tar -xzf "$work/$tarball" -C "$work/noprebuild"
rm -rf "$work/noprebuild/package/prebuilds"
(cd "$work/noprebuild" && tar -czf "$work/noprebuild.tgz" package)
mkdir -p "$work/app2" && cd "$work/app2"
echo '{"name":"app2","version":"1.0.0","private":true}' >package.json
npm install --foreground-scripts --no-audit --no-fund "$work/noprebuild.tgz" >"$work/install2.log" 2>&1 || {
  cat "$work/install2.log"
  exit 1
}
grep -q "zerocopy: no prebuilt binary for linux-x64; compiling with node-gyp" "$work/install2.log" || {
  cat "$work/install2.log"
  echo "the fallback build did not say so"
  exit 1
}
test -f node_modules/zerocopy/build/Release/zerocopy.node || { echo "the fallback build left no binary"; exit 1; }
cp "$root"/test/smoke/smoke.cjs "$root"/test/smoke/smoke-body.cjs .
node smoke.cjs
echo "test:package: without a prebuild, npm install compiled the addon and said so"
