#!/usr/bin/env bash
# Pipeline stages on MPI ranks (issue 11, item 1 and 3): `--set parallel.pp=P` with a pipeline
# policy puts pipeline rank r on MPI rank r, holding only its stages' parameters, activations
# and their gradients sent and received between them inside the step graph. Every policy at
# pp 2 (and 1f1b, dualpipe, dualpipev at pp 4) gives, with engine.deterministic, the step
# numbers (evaluations included), weights and moments of the one-rank unpipelined run bit for
# bit; without it, the losses within 1e-6; a pp 2 run stopped and resumed goes on bit for bit;
# a killed rank is named by the other; bad layouts are refused before any work. Every mpirun
# is bounded by a timeout.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/mpi.sh"
. "$(dirname "$0")/browser.sh"
. "$(dirname "$0")/pipeline_runs.sh"
# pp_run NAME NP MICRO ARGS...: a run over NP pipeline ranks; its exit status in $rc
pp_run() {
  local name=$1 np=$2 micro=$3; shift 3
  "${MPIRUN[@]}" -np "$np" "${TRAIN[@]}" --set parallel.pp="$np" --set train.micro_batches="$micro" \
    --out "$TMP/$name" "$@" > "$TMP/out-$name" 2>&1
  rc=$?
}
why() { [ "$rc" -eq 0 ] || grep -v '^\[starpu' "$TMP/out-$1" | grep -iE 'error|rank [0-9]+:' | head -2; }

for micro in 4 8; do
  "${TRAIN[@]}" "${DET[@]}" --set train.micro_batches=$micro --out "$TMP/one-$micro" \
    > "$TMP/out-one" 2>&1 || echo "# the one-rank run failed"
done
for pol in gpipe 1f1b zbh1 dualpipe dualpipev; do
  pp_run "$pol" 2 4 "${DET[@]}" --set engine.sched=$pol
  [ $rc -eq 0 ] && same "$TMP/one-4" "$TMP/$pol"
  ok $? "$pol on 2 ranks, deterministic: loss, balance loss, gradient norm, load, weights and \
moments of the one-rank unpipelined run bit for bit (exit $rc $(why "$pol"))"
done
# each pipeline rank holds only its stage's parameters: rank 0 writes the embedding and layers
# 0-1 (shard 1), rank 1 layer 2, the final norm and the head (shard 2)
python3 - "$TMP/1f1b/step-000004/model.safetensors.index.json" > "$TMP/held" << 'EOF'
import collections, json, sys
held = collections.defaultdict(set)
for name, shard in json.load(open(sys.argv[1]))["weight_map"].items():
    part = name.split(".")
    held[shard].add("layer " + part[2] if part[1] == "layers" else name)
print("; ".join(f"{s}: {', '.join(sorted(held[s]))}" for s in sorted(held)))
EOF
grep -qx "model-00001-of-00002.safetensors: layer 0, layer 1, model.embed_tokens.weight; \
model-00002-of-00002.safetensors: layer 2, lm_head.weight, model.norm.weight" "$TMP/held"
ok $? "1f1b on 2 ranks: each rank holds and writes only its stage's parameters ($(cat "$TMP/held"))"
grep -q "^pipeline: 1f1b, 2 ranks: stage 0 = embedding" "$TMP/out-1f1b" &&
  [ "$(grep -c '^step ' "$TMP/out-1f1b")" -eq 4 ]
ok $? "rank 0 alone prints the cut and one line per step"
for pol in 1f1b dualpipe dualpipev; do
  pp_run "$pol-4" 4 8 "${DET[@]}" --set engine.sched=$pol
  [ $rc -eq 0 ] && same "$TMP/one-8" "$TMP/$pol-4"
  ok $? "$pol on 4 ranks, 8 micro-batches, deterministic: the one-rank run bit for bit \
(exit $rc $(why "$pol-4"))"
done

# from the rank traces: each rank ran only its stage's tasks, in its program's order (one
# worker: starts in order), and sent or received every boundary activation (x2, the input of
# layer 2) and residual gradient (dres) of the 4 micro-batches; the evaluations (at step 0 and
# at the end) run through the pipeline too, forward only
pp_run traced 2 4 --set engine.sched=1f1b --steps 2 --trace "$TMP/t.json"
ok $rc "1f1b on 2 ranks with --trace (exit $rc $(why traced))"
checks "pipeline trace" python3 - "$(dirname "$0")" "$TMP/t.json" "$TMP/t.rank1.json" << 'EOF'
import collections, re, sys
sys.path.insert(0, sys.argv[1])
from rank_traces import ordered_tasks, say
for rank, path in enumerate(sys.argv[2:]):
    ev, tasks = ordered_tasks(path)
    graphs = collections.defaultdict(list)
    for e in tasks:
        graphs[e["args"]["graph"]].append(e)
    train = {g for g, ts in graphs.items() if any(e["cat"].startswith("backward") for e in ts)}
    say(len(train) == 2 and len(graphs) == 4,
        f"rank {rank}: ordered tasks in {len(train)} training step graphs (2 steps) and "
        f"{len(graphs) - len(train)} forward-only evaluation graphs (2 evaluations)")
    for g, ts in sorted(graphs.items()):
        say(all(e["args"]["stage"] == rank for e in ts),
            f"rank {rank}, graph {g}: only its own stage's tasks ({len(ts)})")
        by_order = sorted(ts, key=lambda e: e["args"]["order"])
        say(all(a["ts"] <= b["ts"] for a, b in zip(by_order, by_order[1:])),
            f"rank {rank}, graph {g}: tasks started in program order")
        msgs = [e for e in ev if e.get("cat") == "message" and e["args"]["graph"] == g]
        kinds = collections.Counter((e["name"].split(".", 1)[1], e["args"]["dir"])
                                    for e in msgs if re.match(r"mb[0-9]+[.](x2|dres)$", e["name"]))
        want = {("x2", "send"): 4, ("dres", "recv"): 4} if rank == 0 else \
               {("x2", "recv"): 4, ("dres", "send"): 4}
        if g not in train:
            want = {k: n for k, n in want.items() if k[0] == "x2"}
        say(dict(kinds) == want, f"rank {rank}, graph {g}: boundary messages {dict(kinds)}")
EOF

# the merged timeline: trace summary gives each pipeline rank's bubble and exposed
# communication, schedule --costs-from predicts the step from it, Chromium draws its report
"$STARMOE" trace merge "$TMP/t.json" "$TMP/t.rank1.json" -o "$TMP/all.json" > /dev/null &&
  "$STARMOE" trace summary "$TMP/all.json" > "$TMP/summary"
rc=$?
[ $rc -eq 0 ] && grep -qE "^0 +0 +1 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+%" "$TMP/summary" &&
  grep -qE "^1 +1 +1 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+%" "$TMP/summary" &&
  grep -qE "^1 +[0-9]+ +[0-9]+ .*%$" "$TMP/summary"
ok $? "trace summary of the merged ranks: each pipeline rank's bubble and exposed communication"
"$STARMOE" schedule --policy 1f1b --pp 2 --micro 4 --costs-from "$TMP/all.json" > "$TMP/predicted"
rc=$?
[ $rc -eq 0 ] && grep -q "^measured: .* predicted makespan .* x measured" "$TMP/predicted"
ok $? "schedule --costs-from the merged trace predicts the step ($(grep '^measured' \
"$TMP/predicted" | sed 's/.*= //'))"
if command -v chromium > /dev/null; then
  "$STARMOE" trace html "$TMP/all.json" -o "$TMP/all.html" > /dev/null && page_ok "$TMP/all.html"
  ok $? "Chromium draws the merged ranks' report ($(cat "$TMP/body"))"
else
  skip "chromium not installed"
fi

# without engine.deterministic: the losses within 1e-6 relative
"${TRAIN[@]}" --set train.micro_batches=4 --out "$TMP/one-nd" > "$TMP/out-one" 2>&1
for pol in 1f1b dualpipe; do
  pp_run "$pol-nd" 2 4 --set engine.sched=$pol
  [ $rc -eq 0 ] && paste <(grep -o '"loss":[^,]*' "$TMP/one-nd/metrics.jsonl" | cut -d: -f2) \
    <(grep -o '"loss":[^,]*' "$TMP/$pol-nd/metrics.jsonl" | cut -d: -f2) |
    awk '{ n++; d = $1 - $2; if (d < 0) d = -d; if (d > 1e-6 * ($1 < 0 ? -$1 : $1)) bad++ }
         END { exit !(n == 4 && bad == 0) }'
  ok $? "$pol on 2 ranks: the 4 losses of one rank within 1e-6 relative (exit $rc)"
done

# stopped after step 2 and resumed: bit for bit the uninterrupted run
pp_run resumed 2 4 "${DET[@]}" --set engine.sched=zbh1 --steps 2 &&
  "${MPIRUN[@]}" -np 2 "$STARMOE" train --resume --out "$TMP/resumed" --steps 4 \
    > "$TMP/out-resumed" 2>&1
rc=$?
# (the stopped run evaluated at its last step: the training steps are compared)
[ $rc -eq 0 ] && same "$TMP/zbh1" "$TMP/resumed" train
ok $? "zbh1 on 2 ranks stopped after step 2 and resumed: the uninterrupted run bit for bit \
(exit $rc $(why resumed))"

# rank 1 killed mid-run: rank 0 names it and the job ends within 30 s
kill_at_step2 "$TMP/out-killed" 1 "${MPIRUN[@]}" -np 2 "${TRAIN[@]}" --set parallel.pp=2 \
  --set engine.sched=1f1b --set train.micro_batches=4 --steps 1000 --set eval.every=0 \
  --out "$TMP/killed"
[ -n "$victim" ] && [ $rc -ne 0 ] && [ $took -le 30 ] &&
  grep -q "^rank 0: .*rank 1 (pid $victim) was lost" "$TMP/out-killed"
ok $? "1f1b on 2 ranks, rank 1 killed (pid $victim): rank 0 names it and the job ends within 30 s \
(took $took s, exit $rc)"

# bad layouts: refused on every rank before any work, naming the fields
pp_run nopolicy 2 4
[ $rc -ne 0 ] && grep -q "rank 0: .*parallel.pp 2 .*engine.sched" "$TMP/out-nopolicy" &&
  grep -q "rank 1: .*parallel.pp 2 .*engine.sched" "$TMP/out-nopolicy" && [ ! -d "$TMP/nopolicy" ]
ok $? "parallel.pp without a pipeline policy: every rank names parallel.pp and engine.sched \
($(grep -m1 'rank 0:' "$TMP/out-nopolicy" | head -c 200))"
"${MPIRUN[@]}" -np 2 "${TRAIN[@]}" --set parallel.pp=4 --set engine.sched=1f1b \
  --out "$TMP/count" > "$TMP/out-count" 2>&1
rc=$?
[ $rc -ne 0 ] && grep -q "rank 1: .*parallel.pp 4 x parallel.ep 1 x parallel.dp 1 = 4 ranks, but 2" \
  "$TMP/out-count"
ok $? "parallel.pp 4 on 2 ranks names the count ($(grep -m1 'rank 1:' "$TMP/out-count" | head -c 200))"
pp_run fewmicro 2 2 --set engine.sched=dualpipe
[ $rc -ne 0 ] && grep -q "rank 0: .*dualpipe.*micro" "$TMP/out-fewmicro"
ok $? "dualpipe with 2 micro-batches on 2 ranks: refused naming them ($(grep -m1 "rank 0:" "$TMP/out-fewmicro" | head -c 200))"
tap_done
