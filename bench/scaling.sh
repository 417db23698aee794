#!/usr/bin/env bash
# Scaling over MPI ranks: `starmoe bench --train` of each config in each launch layout (one
# rank; expert parallelism ep2, ep4; data parallelism dp2, dp4; ep2 x dp2), one table.
#
#   bash bench/scaling.sh                      # bench-6m and SMALL, all six layouts
#   CONFIGS=bench-6m LAYOUTS="1 ep2 dp2" REPS=2 WARMUP=0 bash bench/scaling.sh   # a quick run
#
# Per config and layout: tokens/s of the global batch and the step time (medians over REPS
# timed steps after WARMUP, rank 0's), the loss of the first and the last training step (they
# must equal the one-rank run's: checked, a difference is flagged), rank 0's expert-parallel
# traffic (rows and bytes sent per token over all MoE layers; ranks a token's experts sit on
# per MoE layer, with the routing's group limit and without it), and each rank's peak
# resident memory (GNU time's maximum RSS around every rank; the table gives the largest and
# the sum). Every step is traced (each rank its own file); "comm exposed" is the share of the
# ranks' communication time during which none of their tasks ran (`starmoe trace summary` of
# the merged traces).
# Every layout runs the same micro-batch size (MICRO_SEQS sequences, default 2), so a rank
# runs batch / ranks / MICRO_SEQS micro-batches: the losses are then comparable bit for bit.
#
# Environment:
#   CONFIGS   "bench-6m small" (bench-6m: configs/bench-6m.json, batch 8 x 128; small:
#             configs/small.json, batch 8 x 512); or NAME=PATH:BATCH:SEQ entries
#   LAYOUTS   "1 ep2 dp2 ep4 ep2xdp2 dp4" (epE, dpD, epExdpD)
#   REPS (3), WARMUP (1), MICRO_SEQS (2), LOSS_TOL (1e-6, relative; 0 asks for equality)
#   DETERMINISTIC=1  runs --deterministic and asks for equal losses
#   STARMOE   a starmoe binary (default: a snapshot of build/, bench/engine_snapshot.sh)
#   MPIRUN    (mpirun), PYTHON (python3), TIMEOUT (900 s per run)
#   QUIET_MAX (120 s), QUIET_PCT (15): before each run, wait at most QUIET_MAX s until other
#             processes take at most QUIET_PCT % of the CPUs; after it, the share they took
#             (over 10 %: DISTURBED)
# Every run's JSON, with the machine and its load, goes to bench/results/scaling-<date>.json.
#
# Several ranks on one host share its cores: the engine gives each rank (cores / local ranks
# - 1, at least 1) workers, and StarPU-MPI's own thread runs beside them; a machine with fewer
# cores than ranks x 2 is oversubscribed (the table marks layouts with more workers than
# cores), and the figures measure the engine's overheads, not the speed-up of more machines.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
CONFIGS=${CONFIGS:-"bench-6m small"}
LAYOUTS=${LAYOUTS:-"1 ep2 dp2 ep4 ep2xdp2 dp4"}
REPS=${REPS:-3}
WARMUP=${WARMUP:-1}
MICRO_SEQS=${MICRO_SEQS:-2}
LOSS_TOL=${LOSS_TOL:-1e-6}
DETERMINISTIC=${DETERMINISTIC:-0}
MPIRUN=${MPIRUN:-mpirun}
PYTHON=${PYTHON:-python3}
TIMEOUT=${TIMEOUT:-900}
QUIET_MAX=${QUIET_MAX:-120}
QUIET_PCT=${QUIET_PCT:-15}
[ "$DETERMINISTIC" = 1 ] && LOSS_TOL=0

command -v "$MPIRUN" >/dev/null || { echo "scaling.sh: $MPIRUN not found (apt-get install openmpi-bin)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "scaling.sh: /usr/bin/time not found (apt-get install time)" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/starmoe-scaling.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
. "$HERE/engine_snapshot.sh"
snapshot_engine "$WORK/engine" "$ROOT" || exit 2

# OpenMPI refuses to run as root without these; ranks share one host here.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 STARPU_SILENT=1

# config NAME -> "PATH BATCH SEQ"
config_of() {
    case $1 in
    bench-6m) echo "$ROOT/configs/bench-6m.json 8 128" ;;
    small) echo "$ROOT/configs/small.json 8 512" ;;
    *=*:*:*) local v=${1#*=}; echo "${v%%:*} $(echo "${v#*:}" | tr : ' ')" ;;
    *) echo "scaling.sh: unknown config '$1' (bench-6m, small, or NAME=PATH:BATCH:SEQ)" >&2
       return 2 ;;
    esac
}

# layout NAME -> "EP DP"
layout_of() {
    case $1 in
    1) echo "1 1" ;;
    ep[0-9]*x*dp[0-9]*) local e=${1#ep}; echo "${e%%x*} ${1##*dp}" ;;
    ep[0-9]*) echo "${1#ep} 1" ;;
    dp[0-9]*) echo "1 ${1#dp}" ;;
    *) echo "scaling.sh: unknown layout '$1' (1, epE, dpD, epExdpD)" >&2; return 2 ;;
    esac
}

busy_jiffies() { local a; a=($(head -n1 /proc/stat)); echo $((a[1] + a[2] + a[3] + a[6] + a[7] + a[8])); }
all_jiffies() { local a; a=($(head -n1 /proc/stat)); echo $((a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7] + a[8])); }
# Before each run: wait (at most QUIET_MAX s) until other work takes at most QUIET_PCT % of the
# CPUs over a second; on 2 cores one test suite elsewhere halves a run, or worse for a rank's
# polling workers. Sets WAITED and BUSY (the last second's share).
wait_quiet() {
    local t0=$SECONDS b0 a0
    while b0=$(busy_jiffies) a0=$(all_jiffies) && sleep 1 &&
        BUSY=$((100 * ($(busy_jiffies) - b0) / ($(all_jiffies) - a0 + 1))) &&
        ((BUSY > QUIET_PCT && SECONDS - t0 < QUIET_MAX)); do :; done
    WAITED=$((SECONDS - t0))
}

# Each rank's peak RSS, CPU time and wall time: GNU time around the rank, into DIR/rank.N
# (one rank runs without mpirun: the engine's one-rank path).
RANK_TIME='%M %U %S %e'
run_ranks() {
    local n=$1 dir=$2; shift 2
    if [ "$n" = 1 ]; then
        /usr/bin/time -f "$RANK_TIME" -o "$dir/rank.0" "$@"
    else
        "$MPIRUN" --oversubscribe --bind-to none -np "$n" sh -c \
            'd=$1; shift; exec /usr/bin/time -f "$0" -o "$d/rank.$OMPI_COMM_WORLD_RANK" "$@"' \
            "$RANK_TIME" "$dir" "$@"
    fi
}

RUNS="$WORK/runs.jsonl"
: >"$RUNS"
NPROC=$(nproc)
HZ=$(getconf CLK_TCK)
det=()
[ "$DETERMINISTIC" = 1 ] && det=(--deterministic)

echo "starmoe scaling over ranks: configs $CONFIGS; layouts $LAYOUTS; $REPS timed steps after" \
     "$WARMUP warm-up, micro-batches of $MICRO_SEQS sequences${det:+, deterministic}"
echo "machine: $NPROC cores, $(lscpu | sed -n 's/^Model name: *//p' | head -n1);" \
     "$(free -g | awk '/^Mem:/ { print $2 }') GiB; load now $(cut -d' ' -f1-3 /proc/loadavg)"
echo "engine: $ENGINE_DESC"
START=$(date +%s)
for c in $CONFIGS; do
    read -r cpath batch seq <<<"$(config_of "$c")"
    for lay in $LAYOUTS; do
        read -r ep dp <<<"$(layout_of "$lay")"
        n=$((ep * dp))
        if ((batch % (n * MICRO_SEQS))); then
            echo "  $c $lay: skipped (batch $batch does not split into $n ranks x" \
                 "micro-batches of $MICRO_SEQS)" >&2
            continue
        fi
        d="$WORK/$c.$lay"
        mkdir -p "$d"
        wait_quiet
        l0=$(cut -d' ' -f1 /proc/loadavg)
        j0=$(busy_jiffies)
        t0=$(date +%s.%N)
        rc=0
        run_ranks "$n" "$d" timeout "$TIMEOUT" "${SM[@]}" bench --config "$cpath" \
            --batch "$batch" --seq "$seq" --micro $((batch / n / MICRO_SEQS)) --train \
            --reps "$REPS" --warmup "$WARMUP" --ep "$ep" --dp "$dp" "${det[@]}" \
            --trace "$d/trace.json" --format json >"$d/out" 2>"$d/err" || rc=$?
        wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
        j1=$(busy_jiffies)
        out=$(grep '^{' "$d/out" | tail -n 1 || true)
        if [ $rc -ne 0 ] || [ -z "$out" ]; then
            echo "  $c $lay: FAILED (exit $rc); stderr tail:" >&2
            grep -v '^\[starpu' "$d/err" | tail -n 8 >&2
            exit 1
        fi
        ranks=$(cat "$d"/rank.* | awk '{ printf "%s[%s,%s,%s,%s]", (NR > 1 ? "," : ""), $1, $2, $3, $4 }')
        # communication against computation: the ranks' traces merged (in rank order), summed
        comm=null
        if [ "$n" -gt 1 ]; then
            traces=("$d/trace.json")
            for ((q = 1; q < n; q++)); do traces+=("$d/trace.rank$q.json"); done
            "${SM[@]}" trace merge "${traces[@]}" -o "$d/merged.json" >/dev/null 2>&1 &&
                comm=$("${SM[@]}" trace summary "$d/merged.json" --format json 2>/dev/null |
                    "$PYTHON" -c 'import json,sys; r=json.load(sys.stdin).get("ranks") or []; c=sum(x["communication_us"] for x in r); e=sum(x["exposed_us"] for x in r); print(json.dumps({"communication_us": c, "exposed_us": e}) if r else "null")' ||
                    echo null)
        fi
        printf '{"config":"%s","config_path":"%s","layout":"%s","ranks":%d,"ep":%d,"dp":%d,"wall_s":%s,"busy_s":%s,"load_before":%s,"cpu_busy_before_pct":%d,"waited_s":%d,"rank_rss_kb_user_sys_wall":[%s],"comm":%s,"result":%s}\n' \
            "$c" "${cpath#"$ROOT"/}" "$lay" "$n" "$ep" "$dp" "$wall" \
            "$(awk -v j=$((j1 - j0)) -v hz="$HZ" 'BEGIN { printf "%.3f", j / hz }')" "$l0" "$BUSY" \
            "$WAITED" "$ranks" "$comm" "$out" >>"$RUNS"
        others=$(cat "$d"/rank.* | awk -v j=$((j1 - j0)) -v hz="$HZ" -v w="$wall" -v n="$NPROC" \
            '{ own += $2 + $3 } END { o = (j / hz - own) / (w * n) * 100; printf "%.0f", o < 0 ? 0 : o }')
        "$PYTHON" -c 'import json,sys; r=json.loads(sys.argv[1]); print("  %-9s %-8s %7.0f tok/s  step %8.1f ms  loss %.8f -> %.8f  (%.0f s; others took %s%% of the CPUs)" % (sys.argv[2], sys.argv[3], r["tokens_per_s"], 1e3 * r["step_s_median"], r["loss_first"], r["loss_last"], float(sys.argv[4]), sys.argv[5]))' \
            "$out" "$c" "$lay" "$wall" "$others"
    done
done
ELAPSED=$(($(date +%s) - START))

mkdir -p "$HERE/results"
OUT="$HERE/results/scaling-$(date -u +%Y-%m-%d-%H%M%S).json"
export NPROC REPS WARMUP MICRO_SEQS LOSS_TOL DETERMINISTIC ELAPSED ENGINE_DESC
export CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -n1) DATE=$(date -u +%FT%TZ)
export GITREV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
"$PYTHON" - "$RUNS" "$OUT" <<'EOF'
import json, os, sys

runs = [json.loads(l) for l in open(sys.argv[1])]
nproc, tol = int(os.environ["NPROC"]), float(os.environ["LOSS_TOL"])

def loss_check(run, ref):
    """'=' equal to the one-rank run's losses, '~' within LOSS_TOL, else MISMATCH."""
    if ref is None:
        return "no 1-rank run"
    a, b = run["result"], ref["result"]
    pairs = [(a["loss_first"], b["loss_first"]), (a["loss_last"], b["loss_last"])]
    if all(x == y for x, y in pairs):
        return "="
    if all(abs(x - y) <= tol * abs(y) for x, y in pairs):
        return "~"
    return "MISMATCH"

rows, mismatches = [], 0
for run in runs:
    r = run["result"]
    ref = next((x for x in runs if x["config"] == run["config"] and x["ranks"] == 1), None)
    rss = [x[0] for x in run["rank_rss_kb_user_sys_wall"]]
    own = sum(x[1] + x[2] for x in run["rank_rss_kb_user_sys_wall"])
    others = max(0.0, (run["busy_s"] - own) / (run["wall_s"] * nproc))
    check = loss_check(run, ref)
    mismatches += check == "MISMATCH"
    rows.append(dict(
        config=run["config"], layout=run["layout"], ranks=run["ranks"], ep=run["ep"],
        dp=run["dp"], workers_per_rank=r["workers"],
        oversubscribed=run["ranks"] * r["workers"] > nproc,
        tokens_per_s=r["tokens_per_s"], step_ms=1e3 * r["step_s_median"],
        vs_one_rank=r["tokens_per_s"] / ref["result"]["tokens_per_s"] if ref else None,
        loss_first=r["loss_first"], loss_last=r["loss_last"], loss_check=check,
        ep_rows_per_token=r["ep_rows_per_token"], ep_bytes_per_token=r["ep_bytes_per_token"],
        ep_ranks_per_token=r["ep_ranks_per_token"], ep_ranks_max=r["ep_ranks_max"],
        ep_ranks_unlimited=r["ep_ranks_unlimited"],
        ep_ranks_unlimited_max=r["ep_ranks_unlimited_max"],
        peak_rss_mb_max=max(rss) / 1024, peak_rss_mb_sum=sum(rss) / 1024,
        others_cpu_share=others,
        comm_ms=run["comm"]["communication_us"] / 1e3 if run.get("comm") else None,
        comm_exposed=run["comm"]["exposed_us"] / run["comm"]["communication_us"]
        if run.get("comm") and run["comm"]["communication_us"] > 0 else None))

print()
print("| config | layout | ranks | workers/rank | tok/s | vs 1 rank | step ms | loss first -> last |"
      " = 1 rank | EP rows/tok | EP KB/tok | ranks/tok (max) | no group limit (max) |"
      " peak RSS MB, max/rank (all) | others' CPU | comm exposed |")
print("|---|---|---:|---:|---:|---:|---:|---|:-:|---:|---:|---:|---:|---:|---:|---|")
for w in rows:
    ep = w["ep"] > 1
    print("| %s | %s%s | %d | %d | %.0f | %s | %.1f | %.8f -> %.8f | %s | %s | %s | %s | %s | %.0f (%.0f) | %.0f%% | %s |" % (
        w["config"], w["layout"], " (oversubscribed)" if w["oversubscribed"] else "", w["ranks"],
        w["workers_per_rank"], w["tokens_per_s"],
        "%.2f" % w["vs_one_rank"] if w["vs_one_rank"] else "",
        w["step_ms"], w["loss_first"], w["loss_last"], w["loss_check"],
        "%.2f" % w["ep_rows_per_token"] if ep else "-",
        "%.1f" % (w["ep_bytes_per_token"] / 1024) if ep else "-",
        "%.2f (%d)" % (w["ep_ranks_per_token"], w["ep_ranks_max"]) if ep else "-",
        "%.2f (%d)" % (w["ep_ranks_unlimited"], w["ep_ranks_unlimited_max"]) if ep else "-",
        w["peak_rss_mb_max"], w["peak_rss_mb_sum"], 100 * w["others_cpu_share"],
        "%.0f%% of %.0f ms" % (100 * w["comm_exposed"], w["comm_ms"])
        if w["comm_exposed"] is not None else "-"))
print()
print("= / ~ / MISMATCH: first and last loss equal to the one-rank run's / within %g relative /"
      " not." % tol)
print("EP columns: rank 0's tokens, all MoE layers: a token and its output gradient go once to"
      " each other rank holding one of its experts, an expert's output and input gradient come"
      " back per (token, expert) (bytes: rows x hidden_size x 4, plus index and weights).")
print("others' CPU: the share of the machine's CPU time other processes took during the run.")
print("comm exposed: over every rank's traced steps (warm-up included), the share of its"
      " communication time (the union of its message slices) during which none of its tasks ran,"
      " of the total communication time (`starmoe trace summary` of the merged rank traces).")
over = [w for w in rows if w["oversubscribed"]]
if over:
    print("OVERSUBSCRIBED: %s run more workers (ranks x workers per rank) than the %d cores,"
          " each rank also runs StarPU-MPI's thread: tokens/s there measures overheads, not a"
          " speed-up." %
          (", ".join(sorted({w["layout"] for w in over})), nproc))
busy = [w for w in rows if w["others_cpu_share"] > 0.10]
if busy:
    print("DISTURBED (other processes took over 10%% of the CPUs): %s" %
          ", ".join("%s %s %.0f%%" % (w["config"], w["layout"], 100 * w["others_cpu_share"])
                    for w in busy))
keys = ["NPROC", "CPU", "DATE", "GITREV", "ENGINE_DESC", "REPS", "WARMUP", "MICRO_SEQS",
        "LOSS_TOL", "DETERMINISTIC", "ELAPSED"]
json.dump({"machine": {k.lower(): os.environ[k] for k in keys}, "rows": rows, "runs": runs},
          open(sys.argv[2], "w"), indent=1)
print("-> %s (%s s)" % (sys.argv[2], os.environ["ELAPSED"]))
if mismatches:
    print("LOSS MISMATCH in %d run(s): a layout does not train as one rank does" % mismatches)
    sys.exit(1)
EOF
