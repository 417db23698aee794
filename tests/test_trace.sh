#!/usr/bin/env bash
# Execution traces end to end: a TINY training run (the small settings of test_train.sh) traced
# with --trace is checked by tests/trace_check (one slice per task, no lane overlapping itself,
# every time inside the run, dependencies in time order, summary totals that add up); step
# ranges, the Paje format (read back by pj_dump when pajeng is installed), eval and bench
# traces, merging two ranks; the HTML report loaded in headless Chromium (lanes and task boxes
# drawn, no script error; a screenshot is kept in tests/test_trace.out/); the report of a
# hand-written trace of two processes with messages: lanes by pid, each one's workers then its
# lanes of sends and receives, message boxes drawn and described on hover; malformed trace files
# and bad flags get errors naming the file; outputs that are an input are refused, a failed
# merge leaves no output, absurd times and dependencies are refused naming the event and field.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/browser.sh"
src=${STARMOE_SRCDIR:-..}
check_tool=${TRACE_CHECK:-./tests/trace_check}
out_dir=tests/test_trace.out
mkdir -p "$TMP/corpus" "$out_dir"
cp "$src"/model/*.c "$src"/tasks/*.c "$src"/io/*.c "$TMP/corpus/"
small=(--set train.batch_size=4 --set train.seq_len=32 --set train.micro_batches=2
       --set train.steps=3 --set train.warmup_steps=1 --set eval.every=2 --set eval.batches=2
       --set checkpoint.every=2 --set log.every=1 --set data.val_fraction=0.1
       --set data.doc_separator=\"\")
train() { "$STARMOE" train --config "$src/examples/tiny.json" --data "$TMP/corpus" "${small[@]}" "$@"; }
count() { grep -c "$1" "$2"; }

# ---- a traced training run
train --out "$TMP/run" --trace "$TMP/train.json" --trace-deps > "$TMP/train.log" 2>&1
ok $? "train --trace --trace-deps runs ($(tail -1 "$TMP/train.log"))"
"$STARMOE" trace summary "$TMP/train.json" --format json > "$TMP/summary.json"
ok $? "trace summary --format json"
checks "train" "$check_tool" "$TMP/train.json" "$TMP/summary.json"
[ "$(count '"kind":"train","tasks"' "$TMP/train.json")" -eq 3 ]; ok $? "one training step graph per step"
[ "$(count '"kind":"eval","tasks"' "$TMP/train.json")" -eq 6 ]; ok $? "evaluation batches traced (2 at steps 0, 2 and 3)"
grep -q '"cat":"evaluation"' "$TMP/train.json" && grep -q '"cat":"checkpoint"' "$TMP/train.json"
ok $? "evaluation and checkpoint marks"
grep -q '"cat":"communication"' "$TMP/train.json"; ok $? "dispatch/combine tasks in the communication category"
grep -q '"name":"ready","ph":"C"' "$TMP/train.json" && grep -q '"name":"activation memory","ph":"C"' "$TMP/train.json"
ok $? "ready-tasks and activation-memory counters"
"$STARMOE" trace summary "$TMP/train.json" > "$TMP/summary.txt"
ok $? "trace summary (text)"
for k in "op family" "worker" "bubble" "critical path" "overlap"; do
  grep -q "$k" "$TMP/summary.txt"; ok $? "the summary reports $k"
done

# ---- a step range: only step 2 (its training graph and the evaluation after it)
train --out "$TMP/range" --trace "$TMP/range.json" --trace-steps 2:2 > /dev/null 2>&1
ok $? "train --trace-steps 2:2 runs"
checks "steps 2:2" "$check_tool" "$TMP/range.json"
[ "$(count '"kind":"train","tasks"' "$TMP/range.json")" -eq 1 ] && ! grep -q '"step":[013],' "$TMP/range.json"
ok $? "only step 2 is traced"

# ---- Paje
train --out "$TMP/paje" --trace "$TMP/run.paje" --trace-format paje --trace-deps --trace-steps 1:1 > /dev/null 2>&1
ok $? "train --trace-format paje runs"
tasks=$(grep -o '"kind":"train","tasks":[0-9]*' "$TMP/train.json" | head -1 | sed 's/.*://')
[ "$(count '^8 .* ST_Task W[0-9]* v[0-9]*$' "$TMP/run.paje")" -eq "$tasks" ]
ok $? "a Paje state per task of the step ($tasks)"
if command -v pj_dump > /dev/null; then
  pj_dump "$TMP/run.paje" > "$TMP/paje.dump" 2> "$TMP/paje.err"
  ok $? "pj_dump reads the Paje trace ($(head -c 200 "$TMP/paje.err"))"
  [ "$(grep -c '^State' "$TMP/paje.dump")" -eq $((2 * tasks)) ]; ok $? "pj_dump sees every task (and the idle gaps)"
else
  skip "pajeng (pj_dump) not installed"
  skip "pajeng (pj_dump) not installed"
fi

# ---- eval and bench traces
"$STARMOE" eval --model "$FIXTURE" --inputs "$FIXTURE/inputs.safetensors" --trace "$TMP/eval.json" > "$TMP/eval.log" 2>&1
ok $? "eval --trace runs"
n=$(sed -n 's/.*tasks \([0-9]*\).*/\1/p' "$TMP/eval.log")
[ -n "$n" ] && [ "$(count '"ph":"X"' "$TMP/eval.json")" -eq "$n" ]; ok $? "eval trace: one slice per task ($n)"
"$STARMOE" bench --model "$FIXTURE" --batch 2 --seq 16 --reps 2 --warmup 1 --train --format json \
  --trace "$TMP/bench.json" > "$TMP/bench.log" 2>&1
ok $? "bench --trace runs"
fwd=$(sed -n 's/.*"tasks_fwd":\([0-9]*\).*/\1/p' "$TMP/bench.log")
step=$(sed -n 's/.*"tasks_step":\([0-9]*\).*/\1/p' "$TMP/bench.log")
[ -n "$fwd" ] && [ "$(count '"ph":"X"' "$TMP/bench.json")" -eq $((3 * (fwd + step))) ]
ok $? "bench trace: every timed step's tasks (3 x ($fwd + $step))"
grep -q '"trace_s_median":' "$TMP/bench.log"; ok $? "bench reports the trace's writing time"
checks "bench" "$check_tool" "$TMP/bench.json"

# ---- merging two ranks
"$STARMOE" trace merge "$TMP/eval.json" "$TMP/eval.json" -o "$TMP/merged.json" > /dev/null
ok $? "trace merge"
"$STARMOE" trace summary "$TMP/merged.json" --format json > "$TMP/merged.sum"
ok $? "a merged trace summarises"
grep -q "\"tasks\": $((2 * n))," "$TMP/merged.sum" && [ "$(grep -c '"pid": 1' "$TMP/merged.sum")" -ge 1 ]
ok $? "the merged trace holds both ranks' tasks under two pids"

# ---- the HTML report in a real browser
"$STARMOE" trace html "$TMP/train.json" -o "$out_dir/report.html" > /dev/null
ok $? "trace html writes a report"
! grep -qiE '<(script|link)[^>]* src=|https?://' "$out_dir/report.html"; ok $? "the report is self-contained (no external script, style or URL)"
if command -v chromium > /dev/null; then
  page_ok "$out_dir/report.html"; ok $? "Chromium draws the lanes and task boxes, no script error ($(cat "$TMP/body"))"
  grep -q "data-slices=\"$(count '"ph":"X"' "$TMP/train.json")\"" "$TMP/body"; ok $? "the page holds every task"
  sed 's|</body>|<script>null.boom();</script></body>|' "$out_dir/report.html" > "$TMP/broken.html"
  ! page_ok "$TMP/broken.html" && grep -q 'data-error=' "$TMP/body"; ok $? "a script error is caught (data-error)"
  sed '/^<script>$/,/^<\/script>$/d' "$out_dir/report.html" > "$TMP/blank.html"
  ! page_ok "$TMP/blank.html"; ok $? "a page that draws nothing fails the check"
  chromium_cmd --dump-dom "file://$(realpath "$out_dir/report.html")#selftest" | grep -o '<body[^>]*>' > "$TMP/body"
  grep -qE 'data-zoom="[1-9]' "$TMP/body" && grep -qE 'data-tip="[a-z_]+' "$TMP/body" && ! grep -q 'data-error=' "$TMP/body"
  ok $? "the wheel zooms in and hovering a task shows its details ($(cat "$TMP/body"))"
  rm -f "$out_dir/report.png"
  chromium_cmd --screenshot="$(realpath "$out_dir")/report.png" "file://$(realpath "$out_dir/report.html")#selftest" > /dev/null
  [ -s "$out_dir/report.png" ]; ok $? "screenshot (zoomed, a tooltip shown) saved in $out_dir/report.png"
else
  for i in 1 2 3 4 5 6; do skip "chromium not installed"; done
fi

# ---- a report of two processes with messages, from a hand-written trace: pid 1's events come
# first, pid 0's lanes of messages in the file (one named, one not) get no lane of their own
cat > "$TMP/ranks.json" << 'EOF'
{"traceEvents":[
{"name":"thread_name","ph":"M","pid":1,"tid":0,"args":{"name":"CPU 0"}},
{"name":"thread_name","ph":"M","pid":1,"tid":1000,"args":{"name":"recv from rank 0"}},
{"name":"a","cat":"forward","ph":"X","ts":0,"dur":10,"pid":1,"tid":0},
{"name":"mb3.x2","cat":"message","ph":"X","ts":10,"dur":5,"pid":1,"tid":1000,"args":{"dir":"recv","peer":0,"tag":7,"bytes":64}},
{"name":"b","cat":"forward","ph":"X","ts":0,"dur":8,"pid":0,"tid":1},
{"name":"c","cat":"backward-input","ph":"X","ts":20,"dur":8,"pid":0,"tid":0},
{"name":"mb3.x2","cat":"message","ph":"X","ts":8,"dur":6,"pid":0,"tid":1001,"args":{"dir":"send","peer":1,"tag":7,"bytes":64}},
{"name":"mb3.loss","cat":"message","ph":"X","ts":30,"dur":2,"pid":0,"tid":1002,"args":{"dir":"recv","peer":1}},
{"name":"thread_name","ph":"M","pid":0,"tid":1001,"args":{"name":"send to rank 1"}}
]}
EOF
grep -v '"pid":1' "$TMP/ranks.json" > "$TMP/rank0.json"
lanes_of() { paste -sd '|' "$TMP/lanes"; }
for t in ranks rank0; do
  "$STARMOE" trace html "$TMP/$t.json" -o "$TMP/$t.html" > /dev/null
  ok $? "trace html of $t.json"
  checks "$t.json" report_lanes "$TMP/$t.html" "$TMP/$t.json"
done
report_lanes "$TMP/ranks.html" "$TMP/ranks.json" > /dev/null
[ "$(lanes_of)" = "0: tid 1|0: tid 0|0: MPI send|0: MPI recv|1: CPU 0|1: MPI send|1: MPI recv" ]
ok $? "two processes: pid 0's workers and message lanes, then pid 1's ($(lanes_of))"
report_lanes "$TMP/rank0.html" "$TMP/rank0.json" > /dev/null
[ "$(lanes_of)" = "tid 1|tid 0|MPI send|MPI recv" ]
ok $? "one process with messages: its workers, then MPI send and MPI recv, no prefix ($(lanes_of))"
checks "train report" report_lanes "$out_dir/report.html" "$TMP/train.json"
! grep -q "MPI send" "$TMP/lanes"; ok $? "a trace without messages has no lanes of messages"
if command -v chromium > /dev/null; then
  page_ok "$TMP/ranks.html" && [ "$(body_attr data-comm-lanes)" = 4 ] &&
    [ "$(body_attr data-comm-boxes)" = 3 ]
  ok $? "Chromium draws 4 lanes of messages and the 3 messages ($(cat "$TMP/body"))"
  chromium_cmd --dump-dom "file://$(realpath "$TMP/ranks.html")#selftest" |
    grep -o '<body[^>]*>' > "$TMP/body"
  [ "$(body_attr data-comm-tip)" = "mb3.x2 / send to rank 1" ] && ! grep -q data-error "$TMP/body"
  ok $? "hovering a message names it, its direction and its peer ($(cat "$TMP/body"))"
else
  for i in 1 2; do skip "chromium not installed"; done
fi

# ---- one colour per phase in every view: the report's legend, its boxes' bands, Paje, DOT
"$STARMOE" graph --config "$FIXTURE/config.json" --dot "$TMP/step.dot" --batch 2 --seq 16 > /dev/null
python3 - "$out_dir/report.html" "$TMP/run.paje" "$TMP/step.dot" > "$TMP/colors.txt" 2>&1 <<'PY'
import json, re, sys
html, paje, dot = (open(p).read() for p in sys.argv[1:4])
legend = dict(re.findall(r"\.phase-([a-z-]+)\{background:(#[0-9a-f]{6})\}", html))
data = json.loads(re.search(r'<script id="trace-data" type="application/json">(.*?)</script>',
                            html, re.S).group(1))
bands = dict(zip(data["cats"], data["cat_colors"]))
rgb = lambda c: tuple(int(c[i:i + 2], 16) for i in (1, 3, 5))
paje_colors = {tuple(round(float(x) * 255) for x in v.split())
               for v in re.findall(r'^5 v\d+ ST_Task ".*" "([0-9. ]+)"$', paje, re.M)}
dot_colors = set(re.findall(r'fillcolor="(#[0-9a-f]{6})"', dot))
problems = [c for c in bands if c in legend and bands[c] != legend[c]]
problems += [c for c in paje_colors if c not in {rgb(v) for v in legend.values()}]
problems += [c for c in dot_colors if c not in legend.values()]
print(len(legend), "phases;", "mismatches:", problems)
sys.exit(int(len(legend) < 6 or len(bands) < 4 or not paje_colors or not dot_colors or
             bool(problems)))
PY
ok $? "the report's legend and bands, Paje and DOT use the phase table's colours ($(cat "$TMP/colors.txt"))"

# ---- malformed trace files and bad flags
expect_error() { # name, pattern, command...
  local name=$1 pattern=$2; shift 2
  "$@" > "$TMP/out" 2>&1; local rc=$?
  if [ $rc -ge 1 ] && [ $rc -le 2 ] && grep -qiE "$pattern" "$TMP/out"; then ok 0 "$name"
  else ok 1 "$name (exit $rc: $(head -c 300 "$TMP/out"))"; fi
}
# (the cut may fall inside an event, "FILE:LINE: truncated", or just after one, "FILE: truncated")
head -c 20000 "$TMP/eval.json" > "$TMP/truncated.json"
printf '[{"ph":"X"}]\n' > "$TMP/array.json"
printf '{"otherData":{"command":"train"}}\n' > "$TMP/noevents.json"
printf '{"traceEvents":[\n{"ph":"M","name":"thread_name","pid":0,"tid":0,"args":{"name":"CPU 0"}},\n{"name":"a","ph":"X","ts":"soon","dur":1,"pid":0,"tid":0}]}\n' > "$TMP/wrongtype.json"
printf '{"traceEvents":[1]}\n' > "$TMP/notevent.json"
: > "$TMP/empty.json"
for cmd in summary html; do
  args=(); [ $cmd = html ] && args=(-o "$TMP/x.html")
  expect_error "$cmd: missing file" "none.json.*cannot open" "$STARMOE" trace $cmd "$TMP/none.json" "${args[@]}"
  expect_error "$cmd: truncated JSON" "truncated.json(:[0-9]+)?: truncated" "$STARMOE" trace $cmd "$TMP/truncated.json" "${args[@]}"
  expect_error "$cmd: not an object" "array.json:1: the top level is not a JSON object" "$STARMOE" trace $cmd "$TMP/array.json" "${args[@]}"
  expect_error "$cmd: traceEvents missing" "noevents.json: no \"traceEvents\"" "$STARMOE" trace $cmd "$TMP/noevents.json" "${args[@]}"
  expect_error "$cmd: event with a wrong type" "wrongtype.json:3: event 1 \(\"a\"\): \"ts\" must be a number" "$STARMOE" trace $cmd "$TMP/wrongtype.json" "${args[@]}"
  expect_error "$cmd: event not an object" "notevent.json:1: event 0: an event must be a JSON object" "$STARMOE" trace $cmd "$TMP/notevent.json" "${args[@]}"
  expect_error "$cmd: empty file" "empty.json: empty file" "$STARMOE" trace $cmd "$TMP/empty.json" "${args[@]}"
done

# ---- outputs that would overwrite an input, failed merges, absurd events
cp "$TMP/eval.json" "$TMP/keep.json"
ln -sf eval.json "$TMP/eval-link.json"
expect_error "merge -o one of its inputs is refused" "eval.json: the output is the input" \
  "$STARMOE" trace merge "$TMP/train.json" "$TMP/eval.json" -o "$TMP/eval.json"
expect_error "html -o its input is refused" "eval.json: the output is the input" \
  "$STARMOE" trace html "$TMP/eval.json" -o "$TMP/eval.json"
expect_error "html -o a link to its input is refused" "eval-link.json: the output is the input" \
  "$STARMOE" trace html "$TMP/eval.json" -o "$TMP/eval-link.json"
cmp -s "$TMP/eval.json" "$TMP/keep.json"; ok $? "the input trace is unchanged"
expect_error "a merge with a truncated input fails" "truncated.json(:[0-9]+)?: truncated" \
  "$STARMOE" trace merge "$TMP/eval.json" "$TMP/truncated.json" -o "$TMP/partial.json"
! ls "$TMP" | grep -q '^partial\.json'; ok $? "the failed merge left no output, not even a temporary file"
cp "$TMP/merged.json" "$TMP/merged.keep"
"$STARMOE" trace merge "$TMP/eval.json" "$TMP/truncated.json" -o "$TMP/merged.json" > /dev/null 2>&1
cmp -s "$TMP/merged.json" "$TMP/merged.keep"; ok $? "a failed merge keeps the existing output"
absurd() { # file, events
  printf '{"traceEvents":[\n%s]}\n' "$2" > "$TMP/$1.json"
}
slice() { # name, ts, dur[, args]
  printf '{"name":"%s","ph":"X","ts":%s,"dur":%s,"pid":0,"tid":0%s}' "$1" "$2" "$3" "${4:+,\"args\":$4}"
}
absurd negative "$(slice a -3 1)"
absurd huge "$(slice a 1e16 1)"
absurd backwards "$(slice a 5 -2)"
absurd nan "$(slice a NaN 1)"
absurd late "$(slice a 0 10 '{"id":0}'),
$(slice b 0 10 '{"id":1,"deps":[0]}')"
absurd crossgraph "$(slice a 0 10 '{"id":0,"graph":0}'),
$(slice b 10 10 '{"id":1,"graph":1,"deps":[0]}')"
expect_error "summary: negative time" 'negative.json:2: event 0 \("a"\): "ts" is -3 us' "$STARMOE" trace summary "$TMP/negative.json"
expect_error "summary: time beyond 1e15 us" 'huge.json:2: event 0 \("a"\): "ts" is 1e\+16 us' "$STARMOE" trace summary "$TMP/huge.json"
expect_error "summary: end before start" 'backwards.json:2: event 0 \("a"\): "dur" is -2 us' "$STARMOE" trace summary "$TMP/backwards.json"
expect_error "summary: NaN time" 'nan.json:2: malformed JSON in event 0' "$STARMOE" trace summary "$TMP/nan.json"
expect_error "summary: a dependency ending after its consumer starts" \
  'late.json:3: event 1 \(op "b"\): "deps": task 0 ends at 10.000 us, after this task starts' "$STARMOE" trace summary "$TMP/late.json"
expect_error "summary: a dependency in another step graph" \
  'crossgraph.json:3: event 1 \(op "b"\): "deps": task 0 is in step graph 0' "$STARMOE" trace summary "$TMP/crossgraph.json"
expect_error "html: absurd times are refused too" 'negative.json:2: event 0' "$STARMOE" trace html "$TMP/negative.json" -o "$TMP/negative.html"
for f in summary.json merged.sum; do
  python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["critical_path"]; sys.exit(not c["us"] <= c["graphs_span_us"])' "$TMP/$f"
  ok $? "$f: the critical path is within the graphs' span"
done

expect_error "--trace-steps backwards" "trace-steps '5:2'" train --out "$TMP/x" --trace "$TMP/x.json" --trace-steps 5:2
expect_error "--trace-format unknown" "trace-format 'xml'" train --out "$TMP/x" --trace "$TMP/x.json" --trace-format xml
expect_error "trace file in a missing folder" "nodir/t.json: cannot create" train --out "$TMP/x" --trace "$TMP/nodir/t.json"
expect_error "trace without a subcommand" "usage" "$STARMOE" trace
expect_error "trace html without -o" "usage" "$STARMOE" trace html "$TMP/train.json"
tap_done
