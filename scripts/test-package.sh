#!/usr/bin/env bash
# test:package: what a user with no compiler gets. Builds the prebuilt binary
# (prebuildify --napi --strip --tag-libc: prebuilds/linux-x64/zerocopy.glibc.node),
# checks that it needs nothing newer than the oldest systems Node's own binaries run on
# (glibc 2.28, GCC 8's libstdc++), packs the package, checks the tarball holds what it
# should and nothing else, installs it into an empty project with --ignore-scripts and
# with every compiler on PATH replaced by one that fails, and runs the smoke tests
# (CommonJS and ESM) against that installed copy. Then: a prebuild that does not load
# says why and how to build from source, and that advice works; where no prebuild
# matches (musl), npm install compiles and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

npx prebuildify --napi --strip --tag-libc >"$work/prebuild.log" 2>&1 || { cat "$work/prebuild.log"; exit 1; }
binary=prebuilds/linux-x64/zerocopy.glibc.node
test -f "$binary" || { echo "no $binary"; ls -R prebuilds; exit 1; }

# The symbol versions the prebuild imports, highest per library, against the floor of
# Node's own Linux binaries: glibc 2.28 and GCC 8's libstdc++ (RHEL 8; Debian 11 and
# Ubuntu 20.04 have newer). A version above it means the binary does not load there.
floor_ok=1
check_floor() { # <version prefix> <highest allowed>
  local found highest
  found=$(objdump -T "$binary" | grep -oE "\(${1}_[0-9][0-9.]*\)" | tr -d '()' | sed "s/^${1}_//" | sort -uV)
  highest=$(tail -n 1 <<<"$found")
  echo "$binary: highest ${1} version needed: ${highest:-none} (allowed: up to $2)"
  [ -z "$highest" ] && return 0
  if [ "$(printf '%s\n%s\n' "$highest" "$2" | sort -V | tail -n 1)" != "$2" ]; then
    objdump -T "$binary" | grep -E "\(${1}_" | while read -r line; do
      v=$(grep -oE "${1}_[0-9.]+" <<<"$line" | sed "s/^${1}_//")
      [ "$(printf '%s\n%s\n' "$v" "$2" | sort -V | tail -n 1)" != "$2" ] && echo "  needs ${1}_$v: ${line##* }"
    done
    floor_ok=0
  fi
  return 0
}
check_floor GLIBC 2.28
check_floor GLIBCXX 3.4.25
check_floor CXXABI 1.3.11
[ "$floor_ok" -eq 1 ] || { echo "the prebuild needs a newer glibc or libstdc++ than Node itself does"; exit 1; }
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

# A prebuild that does not load (here: not even an ELF file) fails with an error that
# says why and what to run; running it fixes the install.
cp node_modules/zerocopy/prebuilds/linux-x64/zerocopy.glibc.node "$work/good.node"
echo 'not a shared object' >node_modules/zerocopy/prebuilds/linux-x64/zerocopy.glibc.node
if node -e "require('zerocopy')" >"$work/load.log" 2>&1; then
  echo "a broken prebuild loaded"
  exit 1
fi
for want in 'ERR_ZEROCOPY_NATIVE_LOAD' 'does not load on this system' 'npm rebuild zerocopy --build-from-source'; do
  grep -qF "$want" "$work/load.log" || { cat "$work/load.log"; echo "the load error does not say: $want"; exit 1; }
done
npm rebuild zerocopy --build-from-source --foreground-scripts >"$work/rebuild.log" 2>&1 || { cat "$work/rebuild.log"; exit 1; }
grep -q "zerocopy: --build-from-source; compiling with node-gyp" "$work/rebuild.log" || { cat "$work/rebuild.log"; echo "rebuild did not compile"; exit 1; }
node smoke.cjs
cp "$work/good.node" node_modules/zerocopy/prebuilds/linux-x64/zerocopy.glibc.node
echo "test:package: a prebuild that does not load says why and how to build from source, and that build works"

# Where no prebuild matches (musl libc, as on Alpine; node-gyp-build reads LIBC), the
# install step compiles with node-gyp and says so.
mkdir -p "$work/app2" && cd "$work/app2"
echo '{"name":"app2","version":"1.0.0","private":true}' >package.json
LIBC=musl npm install --foreground-scripts --no-audit --no-fund "$work/$tarball" >"$work/install2.log" 2>&1 || {
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
LIBC=musl node smoke.cjs
echo "test:package: with no prebuild for this libc, npm install compiled the addon and said so"
