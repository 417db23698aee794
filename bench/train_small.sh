#!/usr/bin/env bash
# Train the SMALL model (examples/small.json: 46 M parameters, 8 layers, 32 experts top-4,
# batch 8 x 512) on the default corpus (Debian's fortunes, /usr/share/games/fortunes) for about
# MINUTES minutes of wall time, then report the final validation bits per byte and tokens/s.
#
#   bash bench/train_small.sh [MINUTES]          (default 30)
#
# 1. Probe: `starmoe train` for PROBE_STEPS (20) steps; gives the step time (median of steps
#    4.., the first ones calibrate), the start-up time, the time of one evaluation and of the
#    final checkpoint (from time stamps on the console lines), and the BPE tokenizer trained on
#    the corpus, which the real run then loads instead of training it again.
# 2. Run: N steps that fit MINUTES minutes including start-up, evaluations and the final
#    checkpoint, with the LR schedule set to that length: --set train.steps=N (cosine decay to
#    min_lr at step N), train.warmup_steps = min(the config's, N/10), evaluation at step 0,
#    about 10 times during the run (fewer if they would take over 10% of the budget) and at the
#    end, one checkpoint at the end (checkpoint.every=0).
# 3. Report from metrics.jsonl: the final val_bpb and val_loss, tokens/s (median over steps and
#    overall = tokens / time in steps), wall time against the budget. Summary and the run's small
#    files (metrics.jsonl, loss.svg, run.json, console log) go to bench/results/train-small-<date>/.
#
# Environment: RUN_DIR (default ${TMPDIR:-/tmp}/starmoe-train-small-<date>; the final checkpoint,
# ~530 MB, stays there), CONFIG (default examples/small.json), DATA (corpus path; default: the
# engine's default corpus), PROBE_STEPS (20), STARMOE (a binary to use instead of a snapshot of
# build/), PYTHON (any python3, for the summary).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
MINUTES=${1:-30}
CONFIG=${CONFIG:-$ROOT/examples/small.json}
PROBE_STEPS=${PROBE_STEPS:-20}
PYTHON=${PYTHON:-python3}
STAMP=$(date +%Y-%m-%d-%H%M%S)
RUN_DIR=${RUN_DIR:-${TMPDIR:-/tmp}/starmoe-train-small-$STAMP}
RESULTS="$HERE/results/train-small-$STAMP"

case "$MINUTES" in '' | *[!0-9.]*) echo "usage: train_small.sh [MINUTES]" >&2; exit 2 ;; esac
[ -r "$CONFIG" ] || { echo "train_small.sh: $CONFIG not found" >&2; exit 2; }
DATA_ARGS=()
[ -n "${DATA:-}" ] && DATA_ARGS=(--data "$DATA")

WORK=$(mktemp -d "${TMPDIR:-/tmp}/starmoe-train-small.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
. "$HERE/engine_snapshot.sh"
snapshot_engine "$WORK/engine" "$ROOT" || exit 2

busy_jiffies() { local a; a=($(head -n1 /proc/stat)); echo $((a[1] + a[2] + a[3] + a[6] + a[7] + a[8])); }
# others_pct JIFFIES TIMEFILE: the share (%) of all CPUs' time, during a command timed into
# TIMEFILE ("wall user sys"), that went to other processes
others_pct() {
    local w u s
    read -r w u s <"$2"
    awk -v j="$1" -v hz="$(getconf CLK_TCK)" -v r="$w" -v u="$u" -v s="$s" -v n="$(nproc)" \
        'BEGIN { o = (j / hz - u - s) / (r * n) * 100; printf "%.0f", o < 0 ? 0 : o }'
}

# stamp LOG CMD...: runs CMD, writing each console line to LOG prefixed with the wall time
# (seconds since the epoch) and echoing the interesting ones (every 10th step line); LOG.time
# gets its wall, user and system seconds.
stamp() {
    local log=$1 rc; shift
    : >"$log"
    local buf=()
    command -v stdbuf >/dev/null && buf=(stdbuf -oL)  # line-buffered console, for the stamps
    local TIMEFORMAT='%R %U %S'
    { rc=0; { time "${buf[@]}" "$@" 2>"$log.stderr"; } 2>"$log.time" || rc=$?; echo "EXIT $rc"; } | while IFS= read -r line; do
        printf '%s %s\n' "$EPOCHREALTIME" "$line" >>"$log"
        if [[ $line =~ ^step\ +([0-9]+)/ ]]; then
            ((BASH_REMATCH[1] % 10 == 0 || BASH_REMATCH[1] <= 2)) && printf '  %s\n' "$line"
        elif [[ $line != EXIT* ]]; then
            printf '  %s\n' "$line"
        fi
    done
    rc=$(sed -n 's/^[0-9.]* EXIT //p' "$log" | tail -n 1)
    if [ "$rc" != 0 ]; then
        echo "train_small.sh: starmoe train failed (exit $rc); stderr:" >&2
        grep -v '^\[starpu\]' "$log.stderr" | tail -n 20 >&2
        return 1
    fi
}

echo "train_small.sh: $MINUTES min on $(basename "$CONFIG"); $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -n1)"
echo "engine: $ENGINE_DESC"
mkdir -p "$RUN_DIR"

# The tokenizer, trained once here (what `starmoe train` would do at start-up) so that the
# probe's start-up time is the real run's.
read -r VOCAB SEP TOKCFG <<<"$("$PYTHON" -c '
import json, sys
c = json.load(open(sys.argv[1])); d = c.get("data") or {}
print(d.get("vocab_size") or c.get("model", {}).get("vocab_size"), repr(d.get("doc_separator", "%")), d.get("tokenizer") or "-")
' "$CONFIG")"
if [ "$TOKCFG" != - ]; then
    TOK=$TOKCFG
else
    TOK="$RUN_DIR/tokenizer.bpe"
    SEP=$("$PYTHON" -c 'import ast, sys; print(ast.literal_eval(sys.argv[1]) or "")' "$SEP")
    echo "== tokenizer: vocabulary $VOCAB, documents separated by '$SEP'"
    TK0=$EPOCHREALTIME
    TOK_DATA=()
    [ -n "${DATA:-}" ] && TOK_DATA=(--data "$DATA")
    "${SM[@]}" tokenizer train "${TOK_DATA[@]}" --vocab "$VOCAB" --doc-sep "$SEP" -o "$TOK" |
        sed 's/^/  /'
    echo "  $(awk -v a="$TK0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s -> $TOK"
fi

echo "== probe: $PROBE_STEPS steps"
PROBE="$WORK/probe"
T0=$EPOCHREALTIME
J0=$(busy_jiffies)
stamp "$WORK/probe.log" "${SM[@]}" train --config "$CONFIG" "${DATA_ARGS[@]}" --out "$PROBE" \
    --steps "$PROBE_STEPS" --set eval.every=0 --set checkpoint.every=0 --set checkpoint.keep=1 \
    --set "data.tokenizer=$TOK"
T1=$EPOCHREALTIME
J1=$(busy_jiffies)
cp "$PROBE/metrics.jsonl" "$WORK/probe-metrics.jsonl"
rm -rf "$PROBE"  # its final checkpoint is ~530 MB

# Plan the run from the probe's time stamps.
PLAN=$("$PYTHON" - "$WORK/probe.log" "$WORK/probe-metrics.jsonl" "$T0" "$T1" "$MINUTES" "$CONFIG" <<'EOF'
import json, math, re, statistics, sys
log, metrics, t0, t1, minutes, cfgpath = sys.argv[1:7]
t0, t1, budget = float(t0), float(t1), float(minutes) * 60
lines = [l.rstrip("\n").split(" ", 1) + [""] for l in open(log)]
lines = [(float(x[0]), x[1]) for x in lines]
# step and eval lines are flushed when printed (other console lines may sit in a buffer):
# eval 0 ends the start-up; the final eval runs right after the last step line; the
# checkpoint and the exit follow it
first_eval = next(t for t, s in lines if s.startswith("eval "))
last_step = [t for t, s in lines if s.startswith("step ")][-1]
last_eval = [t for t, s in lines if s.startswith("eval ")][-1]
rows = [json.loads(l) for l in open(metrics)]
tr = [r for r in rows if r["kind"] == "train"]
ms = [r["step_ms"] for r in tr[3:]] or [r["step_ms"] for r in tr]
step_s = statistics.median(ms) / 1e3
eval_s = last_eval - last_step
ckpt_s = t1 - last_eval                      # final checkpoint + exit
startup_s = first_eval - t0 - eval_s
first_extra = max(tr[0]["step_ms"] / 1e3 - step_s, 0.0)  # the first step calibrates
cfg = json.load(open(cfgpath))
warm_cfg = cfg.get("train", {}).get("warmup_steps", 0)
fixed = startup_s + first_extra + ckpt_s
# about 10 evaluations between step 0 and the end, fewer when they would take over 10% of it
k = min(10, int(0.1 * budget / eval_s)) if eval_s > 0 else 10
n = max(1, int((budget - fixed - (k + 2) * eval_s) / step_s))
every = max(1, n // k) if k > 0 else 0
warm = min(warm_cfg, max(1, n // 10))
print(n, every, warm, "%.3f" % step_s, "%.2f" % eval_s, "%.2f" % ckpt_s, "%.2f" % startup_s,
      "%.0f" % (tr[-1]["tokens"] / sum(r["step_ms"] for r in tr) * 1e3))
EOF
)
read -r N EVERY WARM STEP_S EVAL_S CKPT_S STARTUP_S PROBE_TPS <<<"$PLAN"
PROBE_OTHERS=$(others_pct "$((J1 - J0))" "$WORK/probe.log.time")
echo "probe: ${STEP_S} s/step, eval ${EVAL_S} s, checkpoint+exit ${CKPT_S} s, start-up ${STARTUP_S} s; ${PROBE_TPS} tok/s overall; other processes took ${PROBE_OTHERS}% of the CPUs"
echo "== run: $N steps (train.steps=$N, warmup $WARM, eval every $EVERY) in $MINUTES min -> $RUN_DIR"

T2=$EPOCHREALTIME
J2=$(busy_jiffies)
stamp "$WORK/run.log" "${SM[@]}" train --config "$CONFIG" "${DATA_ARGS[@]}" --out "$RUN_DIR" \
    --set "train.steps=$N" --set "train.warmup_steps=$WARM" --set "eval.every=$EVERY" \
    --set checkpoint.every=0 --set checkpoint.keep=1 --set "data.tokenizer=$TOK"
T3=$EPOCHREALTIME
J3=$(busy_jiffies)
# the share of the machine's CPU time that other processes took during the run
OTHERS=$(others_pct "$((J3 - J2))" "$WORK/run.log.time")

mkdir -p "$RESULTS"
cp "$RUN_DIR/metrics.jsonl" "$RUN_DIR/run.json" "$RESULTS/"
[ -r "$RUN_DIR/loss.svg" ] && cp "$RUN_DIR/loss.svg" "$RESULTS/"
cut -d' ' -f2- "$WORK/run.log" >"$RESULTS/console.log"
export PROBE_OTHERS OTHERS MINUTES N EVERY WARM STEP_S EVAL_S CKPT_S PROBE_TPS RUN_DIR ENGINE_DESC CONFIG
export NPROC=$(nproc) CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -n1) DATE=$(date -u +%FT%TZ)
"$PYTHON" - "$RUN_DIR/metrics.jsonl" "$T2" "$T3" "$RESULTS/summary.json" <<'EOF'
import json, os, statistics, sys
E = os.environ
rows = [json.loads(l) for l in open(sys.argv[1])]
wall = float(sys.argv[3]) - float(sys.argv[2])
tr = [r for r in rows if r["kind"] == "train"]
ev = [r for r in rows if r["kind"] == "eval"]
tps = [r["tokens_per_s"] for r in tr[1:]] or [r["tokens_per_s"] for r in tr]
train_s = sum(r["step_ms"] for r in tr) / 1e3
s = {"date": E["DATE"], "config": E["CONFIG"], "minutes": float(E["MINUTES"]),
     "nproc": int(E["NPROC"]), "cpu": E["CPU"], "engine": E["ENGINE_DESC"],
     "run_dir": E["RUN_DIR"], "steps": tr[-1]["step"] if tr else 0, "planned_steps": int(E["N"]),
     "warmup_steps": int(E["WARM"]), "eval_every": int(E["EVERY"]),
     "wall_s": wall, "train_s": train_s, "tokens": tr[-1]["tokens"] if tr else 0,
     "tokens_per_s_median": statistics.median(tps), "tokens_per_s_overall":
     (tr[-1]["tokens"] / train_s) if tr else 0, "mfu_median": statistics.median(
     [r["mfu"] for r in tr[1:]] or [0]),
     "first_loss": tr[0]["loss"] if tr else None, "final_loss": tr[-1]["loss"] if tr else None,
     "val_bpb_start": ev[0]["val_bpb"] if ev else None,
     "final_val_bpb": ev[-1]["val_bpb"] if ev else None,
     "final_val_loss": ev[-1]["val_loss"] if ev else None,
     "final_eval_step": ev[-1]["step"] if ev else None,
     "others_cpu_pct": int(E["OTHERS"]),
     "probe": {"step_s": float(E["STEP_S"]), "eval_s": float(E["EVAL_S"]),
               "checkpoint_s": float(E["CKPT_S"]), "tokens_per_s": float(E["PROBE_TPS"]),
               "others_cpu_pct": int(E["PROBE_OTHERS"])}}
json.dump(s, open(sys.argv[4], "w"), indent=1)
print()
print("SMALL, %d steps of %d tokens in %.1f min (budget %s min; %.1f min in steps)" %
      (s["steps"], tr[0]["tokens"] if tr else 0, wall / 60, E["MINUTES"], train_s / 60))
print("final validation: val_bpb %.4f, val_loss %.4f at step %s (start: val_bpb %.4f)" %
      (s["final_val_bpb"], s["final_val_loss"], s["final_eval_step"], s["val_bpb_start"]))
print("train loss %.4f -> %.4f" % (s["first_loss"], s["final_loss"]))
print("other processes used %d%% of the CPUs during the run%s" % (s["others_cpu_pct"],
      " (the step count was planned at the probe's speed)" if s["others_cpu_pct"] > 10 else ""))
print("tokens/s: median %.0f, overall %.0f (MFU median %.0f%%)" %
      (s["tokens_per_s_median"], s["tokens_per_s_overall"], 100 * s["mfu_median"]))
print("summary: %s" % sys.argv[4])
EOF
