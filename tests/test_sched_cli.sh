#!/usr/bin/env bash
# Scheduling policies from the command line: '--sched help' lists starmoe's, a plugin's and
# StarPU's policies on any running command; the ordered policy and the example plugin give an
# eval dump bitwise identical to lws, and the fixture's numeric tests pass under ordered; a
# missing plugin, a library without the interface and a broken policy are refused naming the
# file. `starmoe schedule` prints the per-rank programs, the timeline and the summary, as text,
# JSON and SVG, and refuses bad input.
. "$(dirname "$0")/tap.sh"
PLUGIN=${PLUGIN:-examples/.libs/plugin_fifo.so}
in="$FIXTURE/inputs.safetensors"
expect_error() { # name, pattern, command...
  local name=$1 pattern=$2; shift 2
  "$@" > "$TMP/out" 2>&1
  local rc=$?
  if [ $rc -ge 1 ] && [ $rc -le 2 ] && grep -qiE -e "$pattern" "$TMP/out"; then ok 0 "$name"
  else ok 1 "$name (exit $rc: $(head -c 300 "$TMP/out"))"; fi
}

# ---- the registry
"$STARMOE" eval --sched help > "$TMP/help" 2>&1
ok $? "eval --sched help exits 0 without --model"
for name in ordered eager prio lws ws dmda dmdas heteroprio random peager; do
  grep -qE "^  $name " "$TMP/help"; ok $? "--sched help lists $name"
done
grep -q '^StarPU [0-9.]* built-ins:' "$TMP/help"; ok $? "built-ins come under StarPU's version"
"$STARMOE" bench --sched help 2>&1 | grep -qE '^  ordered '; ok $? "bench --sched help lists them too"
"$STARMOE" eval --sched-lib "$PLUGIN" --sched help 2>&1 | grep -qE '^  plugin-fifo +example plugin'
ok $? "with --sched-lib first, help lists the plugin's policy"

# ---- same results under every policy: ordered and the plugin against lws
run_eval() { # out, workers, extra args...
  local out=$1 w=$2; shift 2
  "$STARMOE" eval --model "$FIXTURE" --inputs "$in" --dump "$out" --micro 2 --workers "$w" "$@" \
    > "$TMP/log" 2>&1
}
run_eval "$TMP/lws.safetensors" 2 --sched lws; ok $? "eval under lws"
for w in 1 2; do
  run_eval "$TMP/ordered-$w.safetensors" $w --sched ordered; ok $? "eval under ordered, $w workers"
  cmp -s "$TMP/lws.safetensors" "$TMP/ordered-$w.safetensors"
  ok $? "ordered with $w workers: dump bitwise identical to lws"
  run_eval "$TMP/plugin-$w.safetensors" $w --sched-lib "$PLUGIN" --sched plugin-fifo
  ok $? "eval under the plugin's plugin-fifo, $w workers"
  cmp -s "$TMP/lws.safetensors" "$TMP/plugin-$w.safetensors"
  ok $? "plugin-fifo with $w workers: dump bitwise identical to lws"
done

# STARPU_SCHED may name starmoe's policy too: the fixture's numeric checks all pass under it
STARPU_SCHED=ordered ./tests/test_fixture > "$TMP/fixture.log" 2>&1 && ! grep -q '^not ok' "$TMP/fixture.log"
ok $? "tests/test_fixture passes under STARPU_SCHED=ordered ($(grep -c '^ok' "$TMP/fixture.log") checks)"

# ---- refusals
expect_error "unknown policy" "'nosuch' is unknown" \
  "$STARMOE" eval --model "$FIXTURE" --inputs "$in" --sched nosuch
expect_error "STARPU_SCHED naming another policy" "STARPU_SCHED=eager.*--sched ordered" \
  env STARPU_SCHED=eager "$STARMOE" eval --model "$FIXTURE" --inputs "$in" --sched ordered
expect_error "missing plugin file named" "$TMP/nope.so: cannot open: not found" \
  "$STARMOE" eval --model "$FIXTURE" --inputs "$in" --sched-lib "$TMP/nope.so" --sched x
expect_error "--sched-lib needs --sched" "plugin_fifo.so: name the policy" \
  "$STARMOE" eval --model "$FIXTURE" --inputs "$in" --sched-lib "$PLUGIN"
CC=${CC:-cc}
starpu_cflags=$(pkg-config --cflags starpu-1.3 2>/dev/null || pkg-config --cflags starpu-1.4 2>/dev/null)
cat > "$TMP/lib.c" <<'EOF'
#include <string.h>
#include <starpu.h>
#ifdef POLICY
static void init(unsigned ctx) { (void)ctx; }
static int push(struct starpu_task *t) { (void)t; return 0; }
static struct starpu_task *pop(unsigned ctx) { (void)ctx; return NULL; }
static struct starpu_sched_policy p = {.init_sched = init, .push_task = push, .pop_task = POP,
                                       .policy_name = POLICY};
static struct starpu_sched_policy *list[] = {&p, NULL};
struct starpu_sched_policy *starpu_get_sched_lib_policy(const char *n) { return strcmp(n, POLICY) ? NULL : &p; }
struct starpu_sched_policy **starpu_get_sched_lib_policies(void) { return list; }
#else
int not_a_policy_library;
#endif
EOF
if command -v "$CC" > /dev/null && "$CC" -shared -fPIC $starpu_cflags -o "$TMP/empty.so" "$TMP/lib.c" &&
   "$CC" -shared -fPIC $starpu_cflags -DPOLICY='"broken"' -DPOP=NULL -o "$TMP/broken.so" "$TMP/lib.c" &&
   "$CC" -shared -fPIC $starpu_cflags -DPOLICY='"lws"' -DPOP=pop -o "$TMP/clash.so" "$TMP/lib.c"; then
  expect_error "a library without the interface is named" "empty.so: defines no starpu_get_sched_lib_policy" \
    "$STARMOE" eval --sched-lib "$TMP/empty.so" --sched help
  expect_error "a policy without pop_task is named" "broken.so: policy 'broken' has no pop_task" \
    "$STARMOE" eval --model "$FIXTURE" --inputs "$in" --sched-lib "$TMP/broken.so" --sched broken
  expect_error "a plugin policy reusing a built-in name" "clash.so: policy 'lws' is already defined \(a StarPU built-in\)" \
    "$STARMOE" bench --sched-lib "$TMP/clash.so" --sched help
else
  for i in 1 2 3; do skip "no C compiler to build broken plugins"; done
fi

# ---- starmoe schedule
"$STARMOE" schedule --policy dualpipe --pp 4 --micro 8 -o "$TMP/t.svg" > "$TMP/s" 2>&1
ok $? "schedule dualpipe --pp 4 --micro 8"
grep -qx 'rank 0: F0.0 F1.0 F2.0 F0.1 B0.1 W0.1 F1.1 (F3.0&BW1.1) (F2.1&BW0.0) BW2.1 (F3.1&BW1.0) BW3.1 B2.0 W2.0 B3.0 W3.0' "$TMP/s"
ok $? "rank 0's program in the notation of docs/pipeline-schedules.md"
grep -qE '^rank 3   \|F' "$TMP/s"; ok $? "a Gantt row per rank"
grep -qx 'makespan 24' "$TMP/s"; ok $? "the makespan"
grep -qx 'rank 0: busy 22.5  bubble 1.5  peak activations 5' "$TMP/s"; ok $? "bubble and peak activations per rank"
grep -q '</svg>' "$TMP/t.svg"; ok $? "-o writes the SVG timeline"
"$STARMOE" schedule --policy 1f1b --pp 8 --micro 20 --format json > "$TMP/j" 2>&1
ok $? "schedule --format json"
grep -qE '^\{"policy":"1f1b",.*"makespan":81,"bubble_max":21,.*\}$' "$TMP/j"; ok $? "one JSON object with the makespan and bubble"
expect_error "dualpipe with an odd pp" "pp 3: dualpipe needs an even number of ranks" \
  "$STARMOE" schedule --policy dualpipe --pp 3 --micro 12
expect_error "dualpipe with too few micro-batches" "micro 4: dualpipe needs at least 2 x pp = 8" \
  "$STARMOE" schedule --policy dualpipe --pp 4 --micro 4
expect_error "unknown schedule" "policy 'vpp'" "$STARMOE" schedule --policy vpp --pp 2 --micro 2
expect_error "bad --cost" "--cost '1,2': expected F,B,W,FB" "$STARMOE" schedule --policy 1f1b --pp 2 --micro 2 --cost 1,2
expect_error "negative cost" "--cost '1,1,-1,2': cost W" "$STARMOE" schedule --policy 1f1b --pp 2 --micro 2 --cost 1,1,-1,2
expect_error "schedule without --micro" "usage" "$STARMOE" schedule --policy 1f1b --pp 2
expect_error "unwritable SVG" "/nonexistent/t.svg" "$STARMOE" schedule --policy gpipe --pp 2 --micro 2 -o /nonexistent/t.svg
tap_done
