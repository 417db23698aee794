#!/usr/bin/env bash
# Pipeline ranks together with expert and data parallelism (issue 11, items 1-4 and 6): on 4
# ranks, parallel.pp 2 x parallel.ep 2 (and pp 2 x dp 2) under every pipeline policy gives, with
# engine.deterministic, the step numbers, evaluations, weights and moments of the one-rank
# unpipelined run over the same global batch bit for bit; without it, the losses within 1e-6
# relative. A pp 2 x ep 2 checkpoint resumes in one process; in the traces of a 4-rank DualPipe
# run each rank ran its program in order, sent and received its boundaries and interleaved its
# overlapped pairs; the merged trace gives every rank's bubble, feeds the simulator and is drawn
# by Chromium with the ranks stacked; a killed rank is named; a layout that does not fit the
# ranks is refused before any work. Every mpirun is bounded by a timeout.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/mpi.sh"
. "$(dirname "$0")/browser.sh"
. "$(dirname "$0")/pipeline_runs.sh"
# close RUN1 RUN2 [TOL]: the 4 losses within TOL (1e-6) relative
close() {
  paste <(grep -o '"loss":[^,]*' "$1/metrics.jsonl" | cut -d: -f2) \
    <(grep -o '"loss":[^,]*' "$2/metrics.jsonl" | cut -d: -f2) |
    awk -v tol="${3:-1e-6}" '{ n++; d = $1 - $2; if (d < 0) d = -d
                               if (d > tol * ($1 < 0 ? -$1 : $1)) bad++ }
                             END { exit !(n == 4 && bad == 0) }'
}
# run4 NAME ARGS...: a 4-rank run with 4 micro-batches per rank; its exit status in $rc
run4() {
  local name=$1; shift
  "${MPIRUN[@]}" -np 4 "${TRAIN[@]}" --set parallel.pp=2 --set train.micro_batches=4 \
    --out "$TMP/$name" "$@" > "$TMP/out-$name" 2>&1
  rc=$?
}
why() { [ "$rc" -eq 0 ] || grep -v '^\[starpu' "$TMP/out-$1" | grep -iE 'error|rank [0-9]+:' | head -2; }

# the references: one rank, the global batch of 16 in 8 micro-batches of 2 (each of the 2
# shares of a pipeline rank runs 4 of them)
"${TRAIN[@]}" "${DET[@]}" --set train.micro_batches=8 --out "$TMP/one" > "$TMP/out-one" 2>&1 ||
  echo "# the one-rank run failed"
"${TRAIN[@]}" --set train.micro_batches=8 --out "$TMP/one-nd" > "$TMP/out-one-nd" 2>&1 ||
  echo "# the one-rank run failed"

for pol in gpipe 1f1b zbh1 dualpipe dualpipev; do
  run4 "$pol" --set parallel.ep=2 "${DET[@]}" --set engine.sched=$pol
  [ $rc -eq 0 ] && same "$TMP/one" "$TMP/$pol"
  ok $? "$pol, pp 2 x ep 2 on 4 ranks, deterministic: loss, balance loss, gradient norm, load, \
weights and moments of the one-rank run bit for bit (exit $rc $(why "$pol"))"
done
for pol in zbh1 dualpipe; do
  run4 "$pol-dp" --set parallel.dp=2 "${DET[@]}" --set engine.sched=$pol
  [ $rc -eq 0 ] && same "$TMP/one" "$TMP/$pol-dp"
  ok $? "$pol, pp 2 x dp 2 on 4 ranks, deterministic: the one-rank run bit for bit \
(exit $rc $(why "$pol-dp"))"
done
for pol in gpipe 1f1b zbh1 dualpipe dualpipev; do
  run4 "$pol-nd" --set parallel.ep=2 --set engine.sched=$pol
  [ $rc -eq 0 ] && close "$TMP/one-nd" "$TMP/$pol-nd"
  ok $? "$pol, pp 2 x ep 2, not deterministic: the 4 losses of one rank within 1e-6 relative \
(exit $rc $(why "$pol-nd"))"
done

# the dualpipe run's checkpoint holds 4 shards (2 pipeline ranks x 2 expert blocks); stopped
# after step 2 it goes on in one process (one rank, no pipeline, its 4 micro-batches now of 4
# sequences: sums associate otherwise) within 1e-5 of the uninterrupted one-rank run
run4 half --set parallel.ep=2 "${DET[@]}" --set engine.sched=dualpipe --steps 2
rc_a=$rc
"$STARMOE" train --resume --out "$TMP/half" --steps 4 --set parallel.pp=1 --set parallel.ep=1 \
  --set engine.sched=eager > "$TMP/out-resume" 2>&1
rc=$?
ls "$TMP/half/step-000002" | tr '\n' ' ' > "$TMP/ls"
[ $rc_a -eq 0 ] && [ $rc -eq 0 ] && grep -q "model-00004-of-00004" "$TMP/ls" &&
  grep -q "^resumed from .*step-000002 at step 2" "$TMP/out-resume" &&
  close "$TMP/one" "$TMP/half" 1e-5
ok $? "a pp 2 x ep 2 checkpoint ($(cat "$TMP/ls")) resumed in one process: the 4 losses of the \
one-rank run within 1e-5 (exit $rc_a, $rc)"

# the merged trace of a 4-rank DualPipe run: every rank's bubble and exposed communication,
# the simulator's prediction from it, Chromium's drawing with the ranks stacked
run4 traced --set parallel.ep=2 --set engine.sched=dualpipe --steps 2 --trace "$TMP/t.json"
traces=("$TMP/t.json" "$TMP/t.rank1.json" "$TMP/t.rank2.json" "$TMP/t.rank3.json")
[ $rc -eq 0 ] && "$STARMOE" trace merge "${traces[@]}" -o "$TMP/all.json" > /dev/null &&
  "$STARMOE" trace summary "$TMP/all.json" > "$TMP/summary"
rc=$?
n=$(grep -cE "^([01] +0|[23] +1) +1 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+%" "$TMP/summary")
[ $rc -eq 0 ] && [ "$n" -eq 4 ]
ok $? "trace summary of the 4 merged ranks: each rank's bubble and exposed communication \
($n rank lines)"
# each rank ran its program in order (one worker: ordered tasks start in order number) and, in
# each training step, sent and received the boundary activations (x) and gradients (dx) of
# its two directions' 2 micro-batches each
checks "4-rank DualPipe trace" python3 - "$(dirname "$0")" "${traces[@]}" << 'EOF'
import collections, re, sys
sys.path.insert(0, sys.argv[1])
from rank_traces import ordered_tasks, say
for rank, path in enumerate(sys.argv[2:]):
    ev, tasks = ordered_tasks(path)
    train = sorted({e["args"]["graph"] for e in tasks if e["cat"].startswith("backward")})
    ordered, kinds = True, collections.Counter()
    for g in train:
        by_order = sorted((e for e in tasks if e["args"]["graph"] == g),
                          key=lambda e: e["args"]["order"])
        ordered &= all(a["ts"] <= b["ts"] for a, b in zip(by_order, by_order[1:]))
        kinds.update((m["name"].split(".")[1][:2].rstrip("0123456789"), m["args"]["dir"])
                     for m in ev if m.get("cat") == "message" and m["args"]["graph"] == g
                     and re.match(r"mb[0-9]+[.](x|dx)[0-9]+$", m["name"]))
    want = {(k, d): 2 * len(train) for k in ("x", "dx") for d in ("send", "recv")}
    say(len(train) == 2 and ordered and dict(kinds) == want,
        f"rank {rank}: {len(train)} training steps, tasks started in program order, boundary "
        f"messages {dict(kinds)}")
EOF
# interleaved overlapped slots: some micro-batch's forward chunk has another micro-batch's
# backward tasks between its first and last forward task (the chunks merged by block parts);
# with engine.fb_interleave false, every forward chunk runs whole
run4 serial --set parallel.ep=2 --set engine.sched=dualpipe --steps 2 \
  --set engine.fb_interleave=false --trace "$TMP/s.json"
rc_s=$rc
cat > "$TMP/interleaved.py" << 'EOF'
import sys
sys.path.insert(0, sys.argv[1])
from rank_traces import ordered_tasks
def inside(path):
    ev = ordered_tasks(path)[1]
    n = 0
    for g in {e["args"]["graph"] for e in ev}:
        tasks = [e for e in ev if e["args"]["graph"] == g]
        for mb in {e["args"]["mb"] for e in tasks}:
            fwd = [e["args"]["order"] for e in tasks
                   if e["args"]["mb"] == mb and e["cat"] == "forward"]
            if fwd:
                n += sum(min(fwd) < e["args"]["order"] < max(fwd) and e["args"]["mb"] != mb
                         for e in tasks)
    return n
print(" ".join(str(inside(p)) for p in sys.argv[2:]))
EOF
mine=$(python3 "$TMP/interleaved.py" "$(dirname "$0")" "${traces[@]}")
serial=$(python3 "$TMP/interleaved.py" "$(dirname "$0")" "$TMP/s.json" "$TMP/s.rank1.json" \
  "$TMP/s.rank2.json" "$TMP/s.rank3.json")
[ $rc_s -eq 0 ] && echo "$mine" | awk '{ for (i = 1; i <= 4; i++) if ($i < 1) exit 1 }' &&
  [ "$serial" = "0 0 0 0" ]
ok $? "DualPipe's overlapped slots interleave their two chunks on every rank (other micro-batches' \
tasks inside a forward chunk, per rank: $mine; with engine.fb_interleave false: $serial)"
"$STARMOE" schedule --policy dualpipe --pp 2 --micro 4 --costs-from "$TMP/all.json" \
  > "$TMP/predicted"
rc=$?
[ $rc -eq 0 ] && grep -q "^measured: .* predicted makespan .* x measured" "$TMP/predicted"
ok $? "schedule --costs-from the 4-rank trace predicts the step ($(grep '^measured' \
"$TMP/predicted" | sed 's/.*= //'))"
"$STARMOE" trace html "$TMP/all.json" -o "$TMP/all.html" > /dev/null
checks "4-rank report" report_lanes "$TMP/all.html" "$TMP/all.json"
if command -v chromium > /dev/null; then
  page_ok "$TMP/all.html" && [ "$(body_attr data-comm-lanes)" -eq 8 ] &&
    [ "$(body_attr data-comm-boxes)" -ge 4 ]
  ok $? "Chromium draws the 4 merged ranks stacked, each with its communication lanes \
($(cat "$TMP/body"))"
else
  skip "chromium not installed"
fi

# rank 3 killed mid-run: the others name it and the job ends within 30 s
kill_at_step2 "$TMP/out-killed" 3 "${MPIRUN[@]}" -np 4 "${TRAIN[@]}" --set parallel.pp=2 \
  --set parallel.ep=2 --set engine.sched=dualpipe --set train.micro_batches=4 --steps 1000 \
  --set eval.every=0 --out "$TMP/killed"
[ -n "$victim" ] && [ $rc -ne 0 ] && [ $took -le 30 ] &&
  grep -q "^rank [0-2]: .*rank 3 (pid $victim) was lost" "$TMP/out-killed"
ok $? "dualpipe, pp 2 x ep 2, rank 3 killed (pid $victim): another rank names it and the job \
ends within 30 s (took $took s, exit $rc)"

# layouts that do not fit: refused on every rank before any work, naming the fields
"${MPIRUN[@]}" -np 2 "${TRAIN[@]}" --set parallel.pp=2 --set parallel.ep=2 \
  --set engine.sched=1f1b --out "$TMP/count" > "$TMP/out-count" 2>&1
rc=$?
[ $rc -ne 0 ] && grep -q "rank 1: .*parallel.pp 2 x parallel.ep 2 x parallel.dp 1 = 4 ranks, but 2" \
  "$TMP/out-count" && [ ! -d "$TMP/count" ]
ok $? "pp 2 x ep 2 on 2 ranks names the count ($(grep -m1 'rank 1:' "$TMP/out-count" | head -c 200))"
run4 fewseq --set parallel.ep=2 --set engine.sched=1f1b --set train.batch_size=4
[ $rc -ne 0 ] && grep -q "rank 0: .*micro" "$TMP/out-fewseq"
ok $? "pp 2 x ep 2 with 2 sequences a rank and 4 micro-batches: refused naming them \
($(grep -m1 'rank 0:' "$TMP/out-fewseq" | head -c 200))"
tap_done
