#!/usr/bin/env bash
# Pipeline schedules side by side on one model: the training step (forward, backward,
# optimizer) under lws without pipelining and under each pipeline policy with PP ranks
# (default 2), run in interleaved rounds (ROUNDS, default 2) so that machine noise hits every
# policy alike. Prints per policy the median step time, tokens/s, the workers' idle share
# (1 - busy share, measured in-process) and the ratio to lws; one traced step per pipeline
# policy gives each stage's bubble (`starmoe trace summary`: the share of the span of the rank's
# scheduled tasks that its lane did not spend on them). Writes the table as JSON to
# bench/results/pipeline-DATE.json.
#   STARMOE=build/starmoe CONFIG=configs/small.json BATCH=8 SEQ=256 MICRO=4 PP=2 \
#     bash bench/pipeline_policies.sh
# POLICIES (default "lws gpipe 1f1b zbh1 dualpipe dualpipev") may name any policy `--sched help`
# lists, e.g. POLICIES="lws eager dmda 1f1b"; the first is the reference of the ratio column, and
# only the pipeline schedules get --pp.
set -euo pipefail
cd "$(dirname "$0")/.."
starmoe=${STARMOE:-build/starmoe}
config=${CONFIG:-configs/small.json}
batch=${BATCH:-8} seq=${SEQ:-256} micro=${MICRO:-4} pp=${PP:-2} rounds=${ROUNDS:-2}
reps=${REPS:-3}
read -r -a policies <<< "${POLICIES:-lws gpipe 1f1b zbh1 dualpipe dualpipev}"
is_pipeline() { case $1 in gpipe|1f1b|zbh1|dualpipe|dualpipev) return 0;; esac; return 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export STARPU_SILENT=1
args=(bench --config "$config" --batch "$batch" --seq "$seq" --micro "$micro" --train
      --reps "$reps" --warmup 1 --workers "$(nproc)" --format json)
for _ in $(seq 1 "$rounds"); do
  for p in "${policies[@]}"; do
    extra=()
    if is_pipeline "$p"; then extra=(--pp "$pp"); fi
    "$starmoe" "${args[@]}" --sched "$p" "${extra[@]}" | grep '^{' >> "$tmp/$p.jsonl"
  done
done
for p in "${policies[@]}"; do
  is_pipeline "$p" || continue
  "$starmoe" "${args[@]}" --reps 1 --sched "$p" --pp "$pp" --trace "$tmp/$p.trace.json" \
    --trace-steps 4:4 > /dev/null
  "$starmoe" trace summary "$tmp/$p.trace.json" --format json > "$tmp/$p.summary.json"
done
python3 - "$tmp" "$config" "$batch" "$seq" "$micro" "$pp" "$rounds" "${policies[@]}" <<'PY'
import json, os, statistics, sys, time
tmp, config, batch, seq, micro, pp, rounds, *policies = sys.argv[1:]
rows = []
for p in policies:
    runs = [json.loads(l) for l in open(os.path.join(tmp, p + ".jsonl"))]
    step = statistics.median(r["step_s_median"] for r in runs)
    busy = statistics.median(r["worker_busy_share"] for r in runs)
    row = {"policy": p, "pp": runs[0].get("pp", 1), "step_s_median": step,
           "tokens_per_s": int(batch) * int(seq) / step, "idle_share": 1 - busy,
           "tasks_step": runs[0]["tasks_step"], "runs": len(runs)}
    summary = os.path.join(tmp, p + ".summary.json")
    if os.path.exists(summary):
        stages = json.load(open(summary))["stages"]
        share = {str(st["stage"]): st["bubble_us"] / (st["bubble_us"] + st["busy_us"])
                 for st in stages if st["bubble_us"] + st["busy_us"] > 0}
        row["stage_bubble_share"] = share
    rows.append(row)
base = rows[0]["step_s_median"]
print("config %s, batch %s x seq %s, %s micro-batches, PP %s, %s rounds" % (config, batch, seq, micro, pp, rounds))
print("%-10s %4s %12s %10s %8s %8s  %s" % ("policy", "pp", "step ms", "tok/s", "idle", "vs " + rows[0]["policy"], "bubble per stage (traced step)"))
for r in rows:
    bub = " ".join("s%s %.0f%%" % (k, 100 * v) for k, v in sorted(r.get("stage_bubble_share", {}).items()))
    print("%-10s %4d %12.1f %10.0f %7.1f%% %8.3f  %s" % (r["policy"], r["pp"], r["step_s_median"] * 1e3,
          r["tokens_per_s"], 100 * r["idle_share"], r["step_s_median"] / base, bub))
os.makedirs("bench/results", exist_ok=True)
out = "bench/results/pipeline-%s.json" % time.strftime("%Y-%m-%d-%H%M%S")
json.dump({"config": config, "batch": int(batch), "seq": int(seq), "micro": int(micro), "pp": int(pp),
           "rounds": int(rounds), "rows": rows}, open(out, "w"), indent=1)
print("written", out)
PY
