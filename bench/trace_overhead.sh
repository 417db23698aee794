#!/usr/bin/env bash
# What --trace costs a training step: runs
#   starmoe bench --config configs/bench-6m.json --batch 8 --seq 128 --micro 2 --train
# without and with --trace, alternating, ROUNDS times each (default 5), and prints the median
# step time of both (median over the runs of each run's median), their ratio, and the time
# bench measured in-process for writing each step's trace (the part of a step the trace adds).
# Extra arguments go to every bench run (e.g. --reps 10, --trace-deps).
#   STARMOE=build/starmoe ROUNDS=5 bash bench/trace_overhead.sh
set -euo pipefail
cd "$(dirname "$0")/.."
starmoe=${STARMOE:-build/starmoe}
rounds=${ROUNDS:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export STARPU_SILENT=1
args=(bench --config configs/bench-6m.json --batch 8 --seq 128 --micro 2 --train --format json)
for _ in $(seq 1 "$rounds"); do
  "$starmoe" "${args[@]}" "$@" | grep '^{' >> "$tmp/off.jsonl"
  "$starmoe" "${args[@]}" "$@" --trace "$tmp/trace.json" | grep '^{' >> "$tmp/on.jsonl"
done
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" "$2"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
off=$(field step_s_median "$tmp/off.jsonl" | median)
on=$(field step_s_median "$tmp/on.jsonl" | median)
write=$(field trace_s_median "$tmp/on.jsonl" | median)
tasks=$(field tasks_step "$tmp/on.jsonl" | head -1)
size=$(wc -c < "$tmp/trace.json")
awk -v off="$off" -v on="$on" -v w="$write" -v n="$tasks" -v r="$rounds" -v sz="$size" 'BEGIN {
  printf "train step, median of %d runs: without --trace %.2f ms, with --trace %.2f ms\n", r, off * 1e3, on * 1e3
  printf "ratio with/without: %.4f (%+.2f%%)\n", on / off, 100 * (on / off - 1)
  printf "trace writing measured in-process: %.3f ms per step of %d tasks = %.2f%% of a traced step\n", w * 1e3, n, 100 * w / on
  printf "trace file of one run: %.1f MB\n", sz / 1e6
}'
