#!/usr/bin/env bash
# Proves the repository tests on its own: clones the committed HEAD of this checkout into an
# empty temporary folder (nothing beside the clone), builds it there and runs the plain test
# suite (the clone's `scripts/test.sh --plain`), then checks that nothing reached outside the
# repository: no tracked file and no test log names the reference folder `../shared`, and no
# log reports a file it could not open except where a test expected that error. Uncommitted
# changes are not in the clone. Ends with one line "clone: N passed, N failed" (the suite's TAP
# checks plus these two) and fails when anything failed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
outside='\.\./shared|/work/shared|shared/(fixtures|docs|configs)/'
passed=0 failed=0
finish() { echo "clone: $passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit; }
check() { # status, what
    if [ "$1" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $2"; fi
}

sha=$(git -C "$root" rev-parse --verify HEAD 2>/dev/null) || {
    echo "clone: $root is not a git checkout"; failed=1; finish; }
[ -z "$(git -C "$root" status --porcelain)" ] ||
    echo "clone: note: uncommitted changes are not tested here (HEAD ${sha:0:12} is)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
clone=$tmp/starmoe
git -c advice.detachedHead=false clone --quiet "$root" "$clone" &&
    git -C "$clone" -c advice.detachedHead=false checkout --quiet --detach "$sha" || {
    echo "clone: git clone of $root failed"; failed=1; finish; }
echo "clone: HEAD ${sha:0:12} in $clone, nothing beside it: $(ls -A "$tmp" | tr '\n' ' ')"

# The clone's own plain suite; its last line is "N passed, N failed".
echo "clone: building and testing (a few minutes)"
out=$(cd "$clone" && bash scripts/test.sh --plain 2>&1)
echo "$out" | grep -v '^[0-9]* passed, [0-9]* failed$'
counts=$(echo "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' | tail -1)
if [ -n "$counts" ]; then
    passed=$((passed + ${counts% *})); failed=$((failed + ${counts#* }))
else
    echo "FAIL: the clone's test suite printed no 'N passed, N failed' line"; failed=$((failed + 1))
fi

refs=$(git -C "$clone" grep -nE "$outside" -- . ':!bench/results' ':!scripts/test-clone.sh' \
       2>/dev/null)
[ -z "$refs" ]; check $? "tracked files refer to the reference folder outside the repository:
$refs"
logs=("$clone"/build/tests/*.log)
opens=$(grep -H "cannot open" "${logs[@]}" 2>/dev/null)
bad=$( { grep -HE "$outside" "${logs[@]}" 2>/dev/null
         echo "$opens" | grep -vE '^[^:]*:(ok|PASS:) '
         echo "$opens" | grep -E '^[^:]*:(ok|PASS:) .*# SKIP'; } | sed '/^$/d' | awk '!seen[$0]++' |
       head -20)
[ -z "$bad" ]; check $? "test logs name the reference folder or a file that could not be opened:
$bad"
finish
