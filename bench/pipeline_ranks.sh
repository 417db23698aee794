#!/usr/bin/env bash
# Pipeline stages on MPI ranks, every policy on one model: `mpirun -np PP*EP starmoe train` with
# parallel.pp=PP, parallel.ep=EP and engine.sched=POLICY (one worker per rank), each step
# traced. Per policy: the median step time of the timed steps (all but the first), the ranks'
# peak resident memory (GNU time around every rank: the largest, and the sum), and from the
# merged rank traces (`starmoe trace merge`) each MPI rank's bubble and exposed communication
# (`starmoe trace summary --format json`), and the makespan and per-rank bubbles the simulator
# predicts from the costs measured in the same trace (`starmoe schedule --costs-from`), as
# ratios to the measured scheduled span and bubbles. A policy written POLICY-serial runs with
# engine.fb_interleave=false (DualPipe's overlapped slots not interleaved), for comparison.
# Writes the table as JSON to bench/results/pipeline-ranks-DATE.json.
#   STARMOE=build/starmoe CONFIG=examples/small.json BATCH=8 SEQ=256 MICRO=4 PP=2 EP=1 STEPS=3 \
#     bash bench/pipeline_ranks.sh
# POLICIES (default "gpipe 1f1b zbh1 dualpipe dualpipev"). As root, OpenMPI needs
# OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 (set here).
set -euo pipefail
cd "$(dirname "$0")/.."
starmoe=$(realpath "${STARMOE:-build/starmoe}")
config=${CONFIG:-examples/small.json}
batch=${BATCH:-8} seq=${SEQ:-256} micro=${MICRO:-4} pp=${PP:-2} ep=${EP:-1} steps=${STEPS:-3}
read -r -a policies <<< "${POLICIES:-gpipe 1f1b zbh1 dualpipe dualpipev}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 STARPU_SILENT=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=bench/results/pipeline-ranks-$(date -u +%Y-%m-%d-%H%M%S).json
np=$((pp * ep))
for p in "${policies[@]}"; do
  sched=${p%-serial} interleave=true
  [ "$sched" != "$p" ] && interleave=false
  timeout 1800 mpirun --oversubscribe --bind-to none -np "$np" \
    /usr/bin/time -f "peak_kb %M" "$starmoe" train --config "$config" --steps "$steps" \
    --set train.batch_size="$batch" --set train.seq_len="$seq" --set train.micro_batches="$micro" \
    --set parallel.pp="$pp" --set parallel.ep="$ep" --set engine.sched="$sched" \
    --set engine.fb_interleave=$interleave --set engine.workers=1 \
    --set eval.every=0 --set eval.batches=1 --set log.every=1 \
    --out "$tmp/$p" --trace "$tmp/$p.json" --trace-steps "2:$steps" > "$tmp/$p.log" 2>&1
  ranks=("$tmp/$p.json")
  for ((r = 1; r < np; r++)); do ranks+=("$tmp/$p.rank$r.json"); done
  "$starmoe" trace merge "${ranks[@]}" -o "$tmp/$p.all.json" > /dev/null
  "$starmoe" trace summary "$tmp/$p.all.json" --format json > "$tmp/$p.summary.json"
  "$starmoe" schedule --policy "$sched" --pp "$pp" --micro "$micro" \
    --costs-from "$tmp/$p.all.json" > "$tmp/$p.predicted"
  echo "$p done" >&2
done
python3 - "$tmp" "$out" "$config" "$batch" "$seq" "$micro" "$pp" "$ep" "${policies[@]}" << 'EOF'
import json, re, statistics, sys
tmp, out, config, batch, seq, micro, pp, ep = sys.argv[1:9]
rows = []
for p in sys.argv[9:]:
    steps = [json.loads(l) for l in open(f"{tmp}/{p}/metrics.jsonl") if '"kind":"train"' in l]
    step_ms = statistics.median(s["step_ms"] for s in steps[1:]) if len(steps) > 1 else None
    peaks = [int(m) for m in re.findall(r"peak_kb (\d+)", open(f"{tmp}/{p}.log").read())]
    summ = json.load(open(f"{tmp}/{p}.summary.json"))
    pred = open(f"{tmp}/{p}.predicted").read()
    ratio = re.search(r"predicted makespan ([0-9.]+) ms = ([0-9.]+) x measured", pred)
    span = re.search(r"scheduled tasks span ([0-9.]+) ms per step", pred)
    stages, ranks = summ.get("stages", []), summ.get("ranks", [])
    between = [(float(m.group(2)), float(m.group(3)), float(m.group(4)))
               for m in re.finditer(r"^measured rank (\d+): slots [0-9.e+-]+ ms, other tasks "
                                    r"([0-9.e+-]+) ms, bubble ([0-9.e+-]+) ms per step; predicted "
                                    r"bubble ([0-9.e+-]+) ms", pred, re.M)]
    rows.append({"policy": p, "step_ms": step_ms, "loss_last": steps[-1]["loss"],
                 "peak_mb_per_rank": [k / 1024 for k in peaks],
                 "bubble_share": [s["bubble_us"] / s["span_us"] for s in stages],
                 "other_tasks_ms": [b[0] for b in between],
                 "bubble_between_slots_ms": [b[1] for b in between],
                 "predicted_bubble_ms": [b[2] for b in between],
                 "exposed_share": [r["exposed_us"] / r["communication_us"] for r in ranks],
                 "predicted_ms": float(ratio.group(1)) if ratio else None,
                 "measured_span_ms": float(span.group(1)) if span else None,
                 "predicted_over_measured": float(ratio.group(2)) if ratio else None})
json.dump({"config": config, "batch": int(batch), "seq": int(seq), "micro": int(micro),
           "pp": int(pp), "ep": int(ep), "rows": rows}, open(out, "w"), indent=1)
print(f"{config}, batch {batch} x {seq}, {micro} micro-batches, pp {pp} x ep {ep} ranks "
      "(1 worker each)")
print("| policy | step ms | last loss | peak MB, max per rank (all) | idle per MPI rank |"
      " bubble ms per pipeline rank, measured:predicted (other tasks) |"
      " comm exposed per MPI rank | predicted / measured span |")
print("|---|---:|---|---|---|---|---|---:|")
fmt = lambda v: f"{100 * v:.0f}%"
for r in rows:
    bub = " / ".join(f"{m:.0f}:{p:.0f} ({o:.0f})" for m, p, o in
                     zip(r["bubble_between_slots_ms"], r["predicted_bubble_ms"],
                         r["other_tasks_ms"]))
    print(f"| {r['policy']} | {r['step_ms']:.0f} | {r['loss_last']:.6f} | "
          f"{max(r['peak_mb_per_rank']):.0f} ({sum(r['peak_mb_per_rank']):.0f}) | "
          f"{' / '.join(fmt(b) for b in r['bubble_share'])} | {bub} | "
          f"{' / '.join(fmt(e) for e in r['exposed_share'])} | "
          f"{r['predicted_over_measured'] if r['predicted_over_measured'] else '-'} |")
print(f"-> {out}")
EOF
