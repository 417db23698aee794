#!/usr/bin/env bash
# starmoe train with pipeline parallelism (engine.pp = 2) under each pipeline schedule: the
# losses are bitwise those of the unpipelined run (DualPipe's summed gradient copies: in
# deterministic mode); the trace shows each rank's worker starting its tasks in its program
# order; the example plugin policy trains; bad engine settings get errors naming the field.
. "$(dirname "$0")/tap.sh"
src=${STARMOE_SRCDIR:-..}
PLUGIN=${PLUGIN:-examples/.libs/plugin_fifo.so}
mkdir -p "$TMP/corpus"
cp "$src"/model/*.c "$src"/tasks/*.c "$TMP/corpus/"
small=(--set train.batch_size=8 --set train.seq_len=32 --set train.micro_batches=4
       --set train.steps=4 --set train.warmup_steps=1 --set eval.every=0
       --set checkpoint.every=0 --set log.every=1 --set data.val_fraction=0.1
       --set data.doc_separator=\"\" --set engine.workers=2)
train() { "$STARMOE" train --config "$src/examples/tiny.json" --data "$TMP/corpus" "${small[@]}" "$@"; }

train --out "$TMP/base" > "$TMP/base.log" 2>&1
ok $? "unpipelined run under lws ($(losses "$TMP/base" | tr '\n' ' '))"
train --out "$TMP/base-det" --set engine.deterministic=true > "$TMP/base-det.log" 2>&1
ok $? "unpipelined run in deterministic mode"

for p in gpipe 1f1b zbh1 dualpipe dualpipev; do
  train --out "$TMP/$p" --set engine.sched=$p --set engine.pp=2 > "$TMP/$p.log" 2>&1
  ok $? "$p, pp 2: 4 training steps ($(grep -o 'engine: [^;]*' "$TMP/$p.log"))"
  if [ $p != dualpipe ]; then
    diff <(losses "$TMP/base") <(losses "$TMP/$p") > /dev/null
    ok $? "$p, pp 2: losses bitwise those of the unpipelined run"
  else
    paste <(losses "$TMP/base") <(losses "$TMP/$p") | awk '{d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5 * $1) exit 1}'
    ok $? "dualpipe, pp 2: losses within 1e-5 of the unpipelined run (two summed gradient copies)"
  fi
  train --out "$TMP/$p-det" --set engine.sched=$p --set engine.pp=2 --set engine.deterministic=true > /dev/null 2>&1
  diff <(losses "$TMP/base-det") <(losses "$TMP/$p-det") > /dev/null
  ok $? "$p, pp 2, deterministic: losses bitwise those of the unpipelined deterministic run"
done

train --out "$TMP/flags" --sched 1f1b --pp 2 > /dev/null 2>&1
ok $? "train --sched 1f1b --pp 2 (flags for engine.sched and engine.pp)"
diff <(losses "$TMP/1f1b") <(losses "$TMP/flags") > /dev/null
ok $? "the flags give the losses of --set engine.sched=1f1b --set engine.pp=2"

# the trace: per stage (rank), ordered tasks start in order on that rank's own worker
train --out "$TMP/tr" --set engine.sched=zbh1 --set engine.pp=2 --set train.steps=2 \
  --trace "$TMP/zbh1.json" --trace-steps 2:2 > /dev/null 2>&1
ok $? "zbh1 run writes a trace"
python3 - "$TMP/zbh1.json" > "$TMP/trace-check.txt" 2>&1 <<'PY'
import json, sys, collections
ev = [e for e in json.load(open(sys.argv[1]))["traceEvents"] if e.get("ph") == "X" and e.get("args", {}).get("order", -1) >= 0]
by = collections.defaultdict(list)
for e in ev:
    by[e["args"]["stage"]].append(e)
workers = {s: {(e["pid"], e["tid"]) for e in v} for s, v in by.items()}
assert sorted(by) == [0, 1], sorted(by)
assert not (workers[0] & workers[1]), workers
for s, v in by.items():
    v.sort(key=lambda e: (e["ts"], e["args"]["order"]))
    orders = [e["args"]["order"] for e in v]
    assert orders == list(range(len(v))), (s, orders[:20])
    print("stage %d: %d tasks in order on %s" % (s, len(v), sorted(workers[s])))
PY
ok $? "trace: each stage's worker starts its tasks in schedule order ($(tr '\n' ';' < "$TMP/trace-check.txt" | head -c 300))"

"$STARMOE" trace summary "$TMP/zbh1.json" > "$TMP/zbh1-summary.txt" 2>&1
grep -q "pipeline ranks: their scheduled tasks only" "$TMP/zbh1-summary.txt" &&
  [ "$(awk '/^stage +workers/ { on = 1; next } on && /^[01] +1 / { n++ } END { print n + 0 }' "$TMP/zbh1-summary.txt")" -eq 2 ]
ok $? "trace summary: one bubble row per pipeline rank, one worker each, from the scheduled tasks"

# two workers per rank (4 workers): same losses; each rank's tasks on its own two workers
train --out "$TMP/w4" --workers 4 --sched zbh1 --pp 2 --trace "$TMP/w4.json" --trace-steps 2:2 > /dev/null 2>&1
ok $? "zbh1, pp 2 on 4 workers"
diff <(losses "$TMP/base") <(losses "$TMP/w4") > /dev/null
ok $? "4 workers, two per rank: losses bitwise those of the unpipelined run"
python3 - "$TMP/w4.json" > "$TMP/w4-check.txt" 2>&1 <<'PY'
import json, sys, collections
ev = [e for e in json.load(open(sys.argv[1]))["traceEvents"] if e.get("ph") == "X" and e.get("args", {}).get("order", -1) >= 0]
workers = collections.defaultdict(set)
for e in ev:
    workers[e["args"]["stage"]].add(e["tid"])
assert sorted(workers) == [0, 1] and not (workers[0] & workers[1]), workers
assert all(len(w) <= 2 for w in workers.values()), workers
print({s: sorted(w) for s, w in workers.items()})
PY
ok $? "trace: each rank's tasks ran on its own lane of workers ($(cat "$TMP/w4-check.txt" | head -c 200))"

train --out "$TMP/plugin" --set engine.sched_lib=\"$PLUGIN\" --set engine.sched=plugin-fifo > "$TMP/plugin.log" 2>&1
ok $? "the example plugin policy trains ($(grep -o 'engine: [^;]*' "$TMP/plugin.log"))"
diff <(losses "$TMP/base") <(losses "$TMP/plugin") > /dev/null
ok $? "plugin-fifo: losses bitwise those under lws"

train --out "$TMP/plugin2" --sched-lib "$PLUGIN" --sched plugin-fifo > /dev/null 2>&1
ok $? "train --sched-lib $PLUGIN --sched plugin-fifo"
diff <(losses "$TMP/base") <(losses "$TMP/plugin2") > /dev/null
ok $? "plugin-fifo through --sched-lib: losses bitwise those under lws"

expect_fail() { # expect_fail NAME REGEX ARGS...
  local name=$1 re=$2; shift 2
  train --out "$TMP/bad" "$@" > "$TMP/bad.log" 2>&1
  local rc=$?
  [ $rc -ne 0 ] && grep -qE "$re" "$TMP/bad.log"; ok $? "$name: refused ($(grep -m1 'starmoe' "$TMP/bad.log"))"
}
expect_fail "pp 2 under lws" "engine\.pp.*pipeline schedule" --set engine.pp=2
expect_fail "pp 3 on 2 workers" "engine\.pp.*engine\.workers" --set engine.sched=1f1b --set engine.pp=3
expect_fail "dualpipe with 2 micro-batches" "micro" --set engine.sched=dualpipe --set engine.pp=2 --set train.micro_batches=2
expect_fail "missing plugin file" "nope\.so" --set engine.sched_lib=\"$TMP/nope.so\" --set engine.sched=plugin-fifo
expect_fail "--pp 0" "pp" --pp 0
"$STARMOE" bench --config "$src/configs/tiny.json" --batch 8 --seq 32 --micro 4 --pp 2 --reps 1 > "$TMP/bench-pp.log" 2>&1
[ $? -ne 0 ] && grep -q "pipeline schedule" "$TMP/bench-pp.log"
ok $? "bench --pp 2 without a pipeline schedule: refused ($(head -c 150 "$TMP/bench-pp.log"))"

# bench reports the first and last training step's loss: the same under lws and a 1f1b pipeline
bench_losses() {
  "$STARMOE" bench --config "$src/configs/tiny.json" --batch 8 --seq 32 --micro 4 --train \
    --reps 2 --warmup 1 --format json "$@" 2>/dev/null |
    sed -n 's/.*"loss_first": *\([^,]*\),.*"loss_last": *\([^,}]*\).*/\1 \2/p'
}
plain=$(bench_losses) piped=$(bench_losses --sched 1f1b --pp 2)
[ -n "$plain" ] && [ "$plain" != "0.0 0.0" ] && [ "$plain" = "$piped" ]
ok $? "bench losses (first, last step) under lws and 1f1b pp 2: '$plain' and '$piped'"
tap_done
