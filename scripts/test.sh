#!/usr/bin/env bash
# Runs the whole test suite twice — a plain build (build/) and an AddressSanitizer +
# UndefinedBehaviorSanitizer build with leak checks (build-asan/) — and ends with one line
# "N passed, N failed" counting every TAP check of both.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
[ -x configure ] || autoreconf -fi >/dev/null || exit 1
passed=0 failed=0
run_suite() { # dir, configure args...
  local dir=$1; shift
  mkdir -p "$root/$dir" && cd "$root/$dir" || exit 1
  [ -f Makefile ] || "$root/configure" --quiet "$@" || exit 1
  make -s -j"$(nproc)" >/dev/null || { echo "build in $dir failed"; failed=$((failed + 1)); return; }
  make -s -j2 check >/dev/null 2>&1
  local log=test-suite.log
  [ -f "$log" ] || { echo "$dir: no test-suite.log"; failed=$((failed + 1)); return; }
  local p f e
  p=$(sed -n 's/^# PASS: *//p' "$log"); f=$(sed -n 's/^# FAIL: *//p' "$log"); e=$(sed -n 's/^# ERROR: *//p' "$log")
  echo "$dir: $p passed, $f failed, $e errors"
  grep -E "^(not ok|ERROR|FAIL)" "$root/$dir"/tests/*.log 2>/dev/null | head -20
  passed=$((passed + p)); failed=$((failed + f + e))
}
run_suite build
run_suite build-asan --enable-sanitizers
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
