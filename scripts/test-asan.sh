#!/usr/bin/env bash
# Builds the addon with AddressSanitizer + UndefinedBehaviorSanitizer into
# build-asan/ (leaving build/Release alone) and runs the whole test suite against it.
# Node itself is not instrumented, so the ASan runtime is preloaded.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Build in a scratch copy so the regular build/ stays as it is.
cp -r binding.gyp native package.json "$work/"
ln -s "$PWD/node_modules" "$work/node_modules"
(cd "$work" && node-gyp rebuild --asan=1 >"$work/build.log" 2>&1) || {
  cat "$work/build.log"
  exit 1
}
mkdir -p build-asan
cp "$work/build/Release/zerocopy.node" build-asan/zerocopy.node
if ! nm -D build-asan/zerocopy.node | grep __asan_init >/dev/null; then
  echo "build-asan/zerocopy.node is not instrumented" >&2
  exit 1
fi

npx tsc -p tsconfig.json
libasan=$(gcc -print-file-name=libasan.so)
# Leak checking stays off: Node's own start-up allocations (not instrumented) would
# drown the report. halt_on_error makes any ASan/UBSan finding fail the run.
export ZEROCOPY_NATIVE=build-asan/zerocopy.node
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=86
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# The examples' own tests (msg_zerocopy and its script, the test bed, the demo and the
# servers: processes bound by wall-clock waits, about 90 s here) run in npm test; their
# native calls are the ones every other file makes. CI keeps .ci/run under 20 minutes.
LD_PRELOAD="$libasan" ZEROCOPY_TEST_SKIP=${ZEROCOPY_TEST_SKIP-msg-zerocopy-sh,netns-testbed,msg-zerocopy-example,examples} node scripts/run-tests.js
echo "test:asan: the suite passed against the ASan/UBSan build (build-asan/zerocopy.node)"
