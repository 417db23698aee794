#!/usr/bin/env bash
# Runs the whole test suite and ends with one line "N passed, N failed" counting every TAP check
# of every suite:
#   plain      a plain build in build/, with the checkout's uncommitted changes;
#   clone      a plain build in a fresh clone of HEAD with nothing beside it
#              (scripts/test-clone.sh: the repository must need nothing outside itself);
#   sanitizers an AddressSanitizer + UndefinedBehaviorSanitizer build with leak checks
#              (build-asan/).
# A checkout without uncommitted changes (CI's, a fresh clone) is HEAD itself, so there the clone
# stands in for the plain suite instead of repeating it; outside a git checkout (a release
# tarball) there is nothing to clone. `--plain` runs the plain suite alone (what test-clone.sh
# runs inside the clone).
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
run_clone() {
  local out counts
  out=$(bash "$root/scripts/test-clone.sh" 2>&1)
  echo "$out"
  counts=$(echo "$out" | sed -n 's/^clone: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' | tail -1)
  [ -n "$counts" ] || { echo "clone: no result line"; failed=$((failed + 1)); return; }
  passed=$((passed + ${counts% *})); failed=$((failed + ${counts#* }))
}
in_git=0
git -C "$root" rev-parse --verify -q HEAD >/dev/null 2>&1 && in_git=1
if [ "${1:-}" = --plain ]; then
  run_suite build
elif [ "$in_git" -eq 0 ]; then
  echo "clone: skipped (not a git checkout)"
  run_suite build
  run_suite build-asan --enable-sanitizers
elif [ -z "$(git -C "$root" status --porcelain)" ]; then
  echo "plain: no uncommitted changes, so the clone of HEAD is the plain suite"
  run_clone
  run_suite build-asan --enable-sanitizers
else
  run_suite build
  run_clone
  run_suite build-asan --enable-sanitizers
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
