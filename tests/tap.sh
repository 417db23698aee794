# TAP helpers for the shell tests (sourced). ok COND-EXIT-STATUS "name"
tap_n=0 tap_failed=0
ok() { tap_n=$((tap_n + 1)); if [ "$1" -eq 0 ]; then echo "ok $tap_n - $2"; else echo "not ok $tap_n - $2"; tap_failed=$((tap_failed + 1)); fi; }
tap_done() { echo "1..$tap_n"; [ "$tap_failed" -eq 0 ]; }
STARMOE=${STARMOE:-./starmoe}
FIXTURE=${STARMOE_SRCDIR:-..}/tests/fixtures/dsv3-tiny-a
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
