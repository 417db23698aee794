# TAP helpers for the shell tests (sourced). ok COND-EXIT-STATUS "name"
tap_n=0 tap_failed=0
ok() { tap_n=$((tap_n + 1)); if [ "$1" -eq 0 ]; then echo "ok $tap_n - $2"; else echo "not ok $tap_n - $2"; tap_failed=$((tap_failed + 1)); fi; }
# checks LABEL COMMAND...: each "PASS what" or "FAIL what (why)" line the command prints (e.g.
# tests/trace_check) becomes a TAP line "LABEL: what"
checks() {
  local label=$1 line; shift
  while IFS= read -r line; do
    case $line in
      PASS\ *) ok 0 "$label: ${line#PASS }" ;;
      FAIL\ *) ok 1 "$label: ${line#FAIL }" ;;
    esac
  done < <("$@")
}
tap_done() { echo "1..$tap_n"; [ "$tap_failed" -eq 0 ]; }
# skip WHY: a check that cannot run here
skip() { tap_n=$((tap_n + 1)); echo "ok $tap_n # SKIP $1"; }
STARMOE=${STARMOE:-./starmoe}
FIXTURE=${STARMOE_SRCDIR:-..}/tests/fixtures/dsv3-tiny-a
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# expect_error NAME PATTERN COMMAND...: the command must exit 1 or 2 and print PATTERN
# (extended regex, any case)
expect_error() {
  local name=$1 pattern=$2; shift 2
  "$@" > "$TMP/out" 2>&1; local rc=$?
  if [ $rc -ge 1 ] && [ $rc -le 2 ] && grep -qiE -e "$pattern" "$TMP/out"; then ok 0 "$name"
  else ok 1 "$name (exit $rc: $(grep -v '^\[starpu\]' "$TMP/out" | head -c 400))"; fi
}
# losses RUN_FOLDER: the train losses of its metrics.jsonl as exact doubles, one a line (JSON
# may spell one value with 16 or 17 digits)
losses() {
  grep '"kind":"train"' "$1/metrics.jsonl" | sed 's/.*"loss":\([^,]*\),.*/\1/' |
    awk '{printf "%.17g\n", $1}'
}
