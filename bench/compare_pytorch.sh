#!/usr/bin/env bash
# starmoe vs PyTorch eager, same model, same machine, interleaved.
#
#   bash bench/compare_pytorch.sh [CONFIG] [B] [T] [ROUNDS]     (configs/bench-6m.json 8 128 5)
#
# Each round runs, one after the other (so that machine noise hits both alike):
#   starmoe bench --config CONFIG --batch B --seq T --micro 2 --train --format json --reps 5
#   the same without --train (forward + backward, no optimizer: for the time breakdown only)
#   bench/pytorch_dsv3.py ... --reps 5 --warmup 1 for (ATen threads, OpenBLAS threads) in
#   (1,1) (1,2) (2,1) (2,2)
# with the order reversed every other round. The table gives, per implementation/setting, the
# median over rounds of each run's median step (tokens/s), and the ratio starmoe / PyTorch's best
# setting (the one with the highest median), for the training step and for forward only; also
# the ratio of the fastest single steps, and where the time goes (forward, backward, optimizer).
# Memory: each run is its own process; its peak resident set (getrusage's ru_maxrss, reported by
# both benchmarks as peak_rss_bytes) is taken per run, the median over rounds is tabled, with the
# ratio starmoe / PyTorch's best setting's peak and / the lowest PyTorch peak (goal: <= 0.6).
# Results (every run's JSON, the summary, machine, load) go to bench/results/compare-<date>.json.
#
# Before each run it waits (at most QUIET_MAX=120 s) until the CPUs are at most QUIET_PCT=15 %
# busy with other work; after it, it reports the share of the CPUs other processes took during
# the run (runs over 10 % are marked DISTURBED).
# Environment: STARMOE=path to a starmoe binary (default: a snapshot of build/, so a rebuild by
# someone else during the run does not mix two engines), PYTHON (default /usr/bin/python3, the
# one with Debian's python3-torch), SETTINGS="1,1 1,2 2,1 2,2", REPS=5.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
CONFIG=${1:-$ROOT/configs/bench-6m.json}
B=${2:-8}
T=${3:-128}
ROUNDS=${4:-5}
REPS=${REPS:-5}
PYTHON=${PYTHON:-/usr/bin/python3}
SETTINGS=${SETTINGS:-"1,1 1,2 2,1 2,2"}

[ -r "$CONFIG" ] || { echo "compare_pytorch.sh: config $CONFIG not found" >&2; exit 2; }
"$PYTHON" -c 'import torch' 2>/dev/null ||
    { echo "compare_pytorch.sh: $PYTHON cannot import torch (apt-get install python3-torch)" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/starmoe-compare.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# A private copy of the engine: the libtool wrapper build/starmoe runs build/.libs/starmoe
# against build/.libs/libstarmoe.so, which a concurrent `make` may replace mid-run.
. "$HERE/engine_snapshot.sh"
snapshot_engine "$WORK/engine" "$ROOT" || exit 2

# OpenBLAS overrides that some machines of this workplace set (older OpenBLAS builds need them
# on some processors); they slow a current OpenBLAS. Both sides use the same OpenBLAS, so if they
# are set they are unset for BOTH sides alike.
BLAS_ENV_NOTE="OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE: not set on this machine (nothing unset)"
if [ -n "${OPENBLAS_CORETYPE+x}" ] || [ -n "${OPENBLAS_L2_SIZE+x}" ]; then
    BLAS_ENV_NOTE="OPENBLAS_CORETYPE='${OPENBLAS_CORETYPE-}' OPENBLAS_L2_SIZE='${OPENBLAS_L2_SIZE-}' were set: unset for both starmoe and PyTorch"
    unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
fi
unset OPENBLAS_NUM_THREADS OMP_NUM_THREADS  # each side sets its own
CORENAME=$("$PYTHON" -c 'import ctypes; l = ctypes.CDLL("libopenblas.so.0"); l.openblas_get_corename.restype = ctypes.c_char_p; l.openblas_get_config.restype = ctypes.c_char_p; print(l.openblas_get_corename().decode(), "|", l.openblas_get_config().decode().strip())' 2>/dev/null || echo "?")

RUNS="$WORK/runs.jsonl"
: >"$RUNS"
load() { cut -d' ' -f1 /proc/loadavg; }
# busy share of all CPUs over 1 s, from /proc/stat (user+nice+system+irq+softirq+steal)
cpu_busy() {
    local a b
    a=($(head -n1 /proc/stat)); sleep 1; b=($(head -n1 /proc/stat))
    local busy=$(((b[1] + b[2] + b[3] + b[6] + b[7] + b[8]) - (a[1] + a[2] + a[3] + a[6] + a[7] + a[8])))
    local idle=$(((b[4] + b[5]) - (a[4] + a[5])))
    echo $((100 * busy / (busy + idle + 1)))
}
# Other work on the machine distorts a 2-core benchmark: before each run wait (up to QUIET_MAX
# seconds, default 120) until the CPUs are at most QUIET_PCT percent busy (default 15).
QUIET_MAX=${QUIET_MAX:-120}
QUIET_PCT=${QUIET_PCT:-15}
wait_quiet() {
    local t0=$SECONDS b
    while b=$(cpu_busy); ((b > QUIET_PCT && SECONDS - t0 < QUIET_MAX)); do sleep 2; done
    BUSY=$b
    WAITED=$((SECONDS - t0))
}

busy_jiffies() { local a; a=($(head -n1 /proc/stat)); echo $((a[1] + a[2] + a[3] + a[6] + a[7] + a[8])); }
HZ=$(getconf CLK_TCK)
NPROC=$(nproc)

# run_one ROUND NAME TAGS-JSON CMD...: runs CMD, appends {round, name, ..., result} to $RUNS.
# others_pct: the share of the machine's CPU time during the run that went to other processes
# (all CPU time from /proc/stat less the run's own user+sys time); over 10 % is flagged.
run_one() {
    local round=$1 name=$2 tags=$3; shift 3
    local l0 out rc=0 j0 j1 tm others
    wait_quiet
    l0=$(load)
    j0=$(busy_jiffies)
    local TIMEFORMAT='%R %U %S'
    { time timeout 900 "$@" >"$WORK/out" 2>>"$WORK/stderr.log"; } 2>"$WORK/time" || rc=$?
    j1=$(busy_jiffies)
    out=$(tail -n 1 "$WORK/out")
    if [ $rc -ne 0 ] || [ "${out:0:1}" != "{" ]; then
        echo "  round $round $name: FAILED (exit $rc); stderr tail:" >&2
        tail -n 5 "$WORK/stderr.log" >&2
        exit 1
    fi
    tm=($(tail -n 1 "$WORK/time"))
    others=$(awk -v j="$((j1 - j0))" -v hz="$HZ" -v r="${tm[0]}" -v u="${tm[1]}" -v s="${tm[2]}" \
        -v n="$NPROC" 'BEGIN { o = (j / hz - u - s) / (r * n) * 100; printf "%.0f", o < 0 ? 0 : o }')
    printf '{"round":%d,"name":"%s",%s,"cpu_busy_before_pct":%d,"waited_s":%d,"others_pct":%d,"load_before":%s,"load_after":%s,"result":%s}\n' \
        "$round" "$name" "$tags" "$BUSY" "$WAITED" "$others" "$l0" "$(load)" "$out" >>"$RUNS"
    "$PYTHON" -c 'import json,sys; r=json.loads(sys.argv[1]); print("  round %s %-16s %7.0f tok/s  step %7.1f ms  fwd %7.1f ms  peak %6.0f MiB   (others used %s%% of the CPUs during the run%s)" % (sys.argv[2], sys.argv[3], r["tokens_per_s"], 1e3*r["step_s_median"], 1e3*r["fwd_s_median"], r["peak_rss_bytes"] / 2**20, sys.argv[4], ": DISTURBED" if int(sys.argv[4]) > 10 else ""))' "$out" "$round" "$name" "$others"
}

echo "starmoe vs PyTorch eager: $(basename "$CONFIG"), batch $B x seq $T, $ROUNDS rounds, $REPS reps per run"
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -n1); load now $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$BLAS_ENV_NOTE"
echo "OpenBLAS (both sides link the same libopenblas.so.0): $CORENAME"
echo "engine: $ENGINE_DESC"

START=$(date +%s)
for ((r = 1; r <= ROUNDS; r++)); do
    order=("starmoe" "starmoe-fb")
    for s in $SETTINGS; do order+=("torch-$s"); done
    if ((r % 2 == 0)); then  # reverse every other round
        rev=(); for ((i = ${#order[@]} - 1; i >= 0; i--)); do rev+=("${order[i]}"); done
        order=("${rev[@]}")
    fi
    for job in "${order[@]}"; do
        if [ "$job" = starmoe ]; then
            run_one "$r" starmoe '"impl":"starmoe"' \
                "${SM[@]}" bench --config "$CONFIG" --batch "$B" --seq "$T" --micro 2 --train \
                --format json --reps "$REPS"
        elif [ "$job" = starmoe-fb ]; then  # the same without the optimizer: for the breakdown
            run_one "$r" starmoe-fwdbwd '"impl":"starmoe","train":false' \
                "${SM[@]}" bench --config "$CONFIG" --batch "$B" --seq "$T" --micro 2 \
                --format json --reps "$REPS"
        else
            s=${job#torch-}; a=${s%,*}; k=${s#*,}
            run_one "$r" "pytorch($a,$k)" "\"impl\":\"pytorch\",\"threads\":$a,\"blas_threads\":$k" \
                "$PYTHON" "$HERE/pytorch_dsv3.py" --config "$CONFIG" --batch "$B" --seq "$T" \
                --reps "$REPS" --warmup 1 --threads "$a" --blas-threads "$k" --format json
        fi
    done
done
ELAPSED=$(($(date +%s) - START))

mkdir -p "$HERE/results"
OUT="$HERE/results/compare-$(date +%Y-%m-%d-%H%M%S).json"
GITREV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
GITDIRTY=$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | awk '{print $2}' | tr '\n' ' ')

export QUIET_MAX QUIET_PCT CONFIG B T ROUNDS REPS ELAPSED BLAS_ENV_NOTE CORENAME ENGINE_DESC GITREV GITDIRTY
export NPROC=$(nproc) CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -n1) DATE=$(date -u +%FT%TZ)
"$PYTHON" - "$RUNS" "$OUT" <<'EOF'
import json, os, statistics, sys
E = os.environ
ROUNDS, REPS = int(E["ROUNDS"]), int(E["REPS"])
runs = [json.loads(l) for l in open(sys.argv[1])]
med = statistics.median
groups = {}
for r in runs:
    groups.setdefault(r["name"], []).append(r)
def summ(name):
    rs = groups[name]
    tps = [r["result"]["tokens_per_s"] for r in rs]
    ftps = [r["result"]["fwd_tokens_per_s"] for r in rs]
    return {"name": name, "rounds": len(rs), "tokens_per_s_median": med(tps),
            "tokens_per_s_min": min(tps), "tokens_per_s_max": max(tps),
            "fwd_tokens_per_s_median": med(ftps), "fwd_tokens_per_s_min": min(ftps),
            "fwd_tokens_per_s_max": max(ftps),
            "step_s_median": med([r["result"]["step_s_median"] for r in rs]),
            "fwd_s_median": med([r["result"]["fwd_s_median"] for r in rs]),
            "step_s_min": min(r["result"]["step_s_min"] for r in rs),
            "fwd_s_min": min(r["result"]["fwd_s_min"] for r in rs),
            "peak_rss_bytes_median": med([r["result"]["peak_rss_bytes"] for r in rs]),
            "peak_rss_bytes_max": max(r["result"]["peak_rss_bytes"] for r in rs)}
S = {n: summ(n) for n in groups}
sm = S["starmoe"]
torch_names = [n for n in S if not n.startswith("starmoe")]
best = max(torch_names, key=lambda n: S[n]["tokens_per_s_median"])
best_f = max(torch_names, key=lambda n: S[n]["fwd_tokens_per_s_median"])
least_mem = min(torch_names, key=lambda n: S[n]["peak_rss_bytes_median"])
# paired per-round ratios (each round's starmoe run against the same round's PyTorch run)
def paired(key, tname):
    by_round = {}
    for r in runs:
        by_round.setdefault(r["round"], {})[r["name"]] = r["result"][key]
    return [v["starmoe"] / v[tname] for v in by_round.values() if "starmoe" in v and tname in v]
summary = {
    "starmoe": sm, "pytorch": {n: S[n] for n in torch_names},
    "pytorch_best_train": best, "pytorch_best_fwd": best_f,
    "ratio_train": sm["tokens_per_s_median"] / S[best]["tokens_per_s_median"],
    "ratio_train_paired_median": med(paired("tokens_per_s", best)),
    "ratio_fwd": sm["fwd_tokens_per_s_median"] / S[best_f]["fwd_tokens_per_s_median"],
    "ratio_fwd_paired_median": med(paired("fwd_tokens_per_s", best_f)),
    # fastest single step of all rounds, each side (least sensitive to other load)
    "pytorch_fastest_train": min(torch_names, key=lambda n: S[n]["step_s_min"]),
    "pytorch_fastest_fwd": min(torch_names, key=lambda n: S[n]["fwd_s_min"]),
    "goal_ratio": 2.0,
    # peak resident memory of the training run (medians over rounds): starmoe / PyTorch
    "pytorch_least_memory": least_mem,
    "ratio_peak_rss": sm["peak_rss_bytes_median"] / S[best]["peak_rss_bytes_median"],
    "ratio_peak_rss_least": sm["peak_rss_bytes_median"] / S[least_mem]["peak_rss_bytes_median"],
    "goal_ratio_peak_rss": 0.6,
}
t0 = next(r["result"] for r in runs if r["name"] == best)
sm0 = next(r["result"] for r in runs if r["name"] == "starmoe")
meta = {"date": E["DATE"], "config": E["CONFIG"], "batch": int(E["B"]), "seq": int(E["T"]),
        "rounds": ROUNDS, "reps": REPS, "elapsed_s": int(E["ELAPSED"]),
        "nproc": int(E["NPROC"]), "cpu": E["CPU"], "blas_env": E["BLAS_ENV_NOTE"],
        "openblas": E["CORENAME"], "engine": E["ENGINE_DESC"], "git": E["GITREV"],
        "git_modified": E["GITDIRTY"].split(), "torch": t0.get("torch"),
        "torch_blas_info": t0.get("torch_blas_info"),
        "starmoe_workers": sm0.get("workers"), "starmoe_scheduler": sm0.get("scheduler"),
        "loadavg_runs": [r["load_before"] for r in runs],
        "cpu_busy_before_pct": [r["cpu_busy_before_pct"] for r in runs],
        "others_pct": [r["others_pct"] for r in runs],
        "quiet": {"max_wait_s": int(E["QUIET_MAX"]), "busy_pct": int(E["QUIET_PCT"])}}
json.dump({"meta": meta, "summary": summary, "runs": runs}, open(sys.argv[2], "w"), indent=1)

print()
print("medians over %d rounds (each run: median of %d steps after 1 warmup); tokens/s, min-max in ()"
      % (ROUNDS, REPS))
print("and the run's peak resident memory, MiB")
print("%-16s %22s %22s %9s" % ("", "train step", "forward only", "peak MiB"))
def row(n, label=None):
    s = S[n]
    print("%-16s %8.0f (%5.0f-%5.0f) %8.0f (%5.0f-%5.0f) %9.0f" % (label or n,
          s["tokens_per_s_median"], s["tokens_per_s_min"], s["tokens_per_s_max"],
          s["fwd_tokens_per_s_median"], s["fwd_tokens_per_s_min"], s["fwd_tokens_per_s_max"],
          s["peak_rss_bytes_median"] / 2**20))
row("starmoe", "starmoe (w=%s)" % meta["starmoe_workers"])
if "starmoe-fwdbwd" in S:
    row("starmoe-fwdbwd", "starmoe no-optim")
for n in sorted(torch_names):
    row(n)
print()
print("| | starmoe tok/s | PyTorch best tok/s (ATen,BLAS threads) | ratio | paired ratio |")
print("|---|---:|---:|---:|---:|")
print("| train step | %.0f | %.0f %s | %.2f | %.2f |" % (sm["tokens_per_s_median"],
      S[best]["tokens_per_s_median"], best.replace("pytorch", ""), summary["ratio_train"],
      summary["ratio_train_paired_median"]))
print("| forward only | %.0f | %.0f %s | %.2f | %.2f |" % (sm["fwd_tokens_per_s_median"],
      S[best_f]["fwd_tokens_per_s_median"], best_f.replace("pytorch", ""), summary["ratio_fwd"],
      summary["ratio_fwd_paired_median"]))
ft, ff = summary["pytorch_fastest_train"], summary["pytorch_fastest_fwd"]
summary["ratio_train_fastest_step"] = S[ft]["step_s_min"] / sm["step_s_min"]
summary["ratio_fwd_fastest_step"] = S[ff]["fwd_s_min"] / sm["fwd_s_min"]
json.dump({"meta": meta, "summary": summary, "runs": runs}, open(sys.argv[2], "w"), indent=1)
ntok = meta["batch"] * meta["seq"]
print("| train step, fastest single step | %.0f | %.0f %s | %.2f | |" % (ntok / sm["step_s_min"],
      ntok / S[ft]["step_s_min"], ft.replace("pytorch", ""), summary["ratio_train_fastest_step"]))
print("| forward only, fastest single pass | %.0f | %.0f %s | %.2f | |" % (ntok / sm["fwd_s_min"],
      ntok / S[ff]["fwd_s_min"], ff.replace("pytorch", ""), summary["ratio_fwd_fastest_step"]))
print()
print("| peak resident memory of the training run, MiB (median of rounds) | starmoe | PyTorch | "
      "starmoe / PyTorch |")
print("|---|---:|---:|---:|")
for label, n, key in (("against the best setting", best, "ratio_peak_rss"),
                      ("against the least memory", least_mem, "ratio_peak_rss_least")):
    print("| %s %s | %.0f | %.0f | %.2f |" % (label, n.replace("pytorch", ""),
          sm["peak_rss_bytes_median"] / 2**20, S[n]["peak_rss_bytes_median"] / 2**20,
          summary[key]))
if "starmoe-fwdbwd" in S:
    tb = S[best]
    tfb = med([r["result"]["fwdbwd_s_median"] for r in groups[best]])
    tup = med([r["result"]["update_s_median"] for r in groups[best]])
    sfb = S["starmoe-fwdbwd"]["step_s_median"]
    summary["breakdown_ms"] = {
        "starmoe": {"forward": 1e3 * sm["fwd_s_median"], "fwd_bwd": 1e3 * sfb,
                    "backward": 1e3 * (sfb - sm["fwd_s_median"]),
                    "optimizer": 1e3 * (sm["step_s_median"] - sfb), "step": 1e3 * sm["step_s_median"]},
        best: {"forward": 1e3 * tb["fwd_s_median"], "fwd_bwd": 1e3 * tfb,
               "backward": 1e3 * (tfb - tb["fwd_s_median"]), "optimizer": 1e3 * tup,
               "step": 1e3 * tb["step_s_median"]}}
    json.dump({"meta": meta, "summary": summary, "runs": runs}, open(sys.argv[2], "w"), indent=1)
    print()
    print("where the time goes (ms, medians over rounds): starmoe fwd+bwd from a run without the")
    print("optimizer; PyTorch's forward is under no_grad, its fwd+bwd and update timed inside each step")
    print("| | forward | fwd+bwd | backward (diff) | clip+AdamW+bias | step |")
    print("|---|---:|---:|---:|---:|---:|")
    for n, b in summary["breakdown_ms"].items():
        print("| %s | %.1f | %.1f | %.1f | %.1f | %.1f |" % (n, b["forward"], b["fwd_bwd"],
              b["backward"], b["optimizer"], b["step"]))
print()
print("goal: starmoe >= 2x PyTorch's best training throughput -> %s (%.2fx)" %
      ("met" if summary["ratio_train"] >= 2 else "NOT met", summary["ratio_train"]))
print("goal: starmoe's peak memory <= 0.6 x PyTorch's (best setting's) -> %s (%.2f; %.2f of the "
      "least)" % ("met" if summary["ratio_peak_rss"] <= 0.6 else "NOT met",
                  summary["ratio_peak_rss"], summary["ratio_peak_rss_least"]))
print("other processes' share of the CPUs during each run, %%: %s%s" %
      (" ".join(str(x) for x in meta["others_pct"]),
       "  (runs over 10% were disturbed: rerun on a quieter machine)"
       if max(meta["others_pct"]) > 10 else ""))
print("results: %s" % sys.argv[2])
EOF
