#!/usr/bin/env bash
# Launching under mpirun (issue 10): every rank checks the launch layout and all exit with the
# error, each naming its rank (ep x dp against the ranks, ep against the routed experts, the
# batch against the ranks); ranks running another config are caught by the start-up hash; one
# failing rank stops them all promptly; bench and the fixture eval over 2 expert-parallel ranks
# report what one rank does (eval's dump bit for bit); train with data parallelism (dp 2) and expert parallelism (ep 2, ep 4, ep 2 x dp 2)
# gives the losses of one rank (bit for bit with engine.deterministic, whatever the layout),
# rank 0 alone printing, the expert shards written by their ranks into one checkpoint that
# resumes on any layout and loads in one process; without mpirun, or with one rank, nothing
# changes. Every mpirun is bounded by a timeout.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/mpi.sh"
# one worker per rank on a machine of few cores (the engine's default under mpirun, or
# engine.workers=1 for train)
CKPT_SAME=$(dirname "$STARMOE")/tests/ckpt_same
CONFIG=${STARMOE_SRCDIR:-..}/examples/tiny.json MODEL=${STARMOE_SRCDIR:-..}/configs/tiny.json
TRAIN=("$STARMOE" train --config "$CONFIG" --set engine.workers=1 --out "$TMP/run" --steps 1
       --set eval.batches=1)

# run_ranks COMMAND...: runs it, keeping the output and the exit status in $TMP/out, $rc
run_ranks() { "$@" > "$TMP/out" 2>&1; rc=$?; }
# every_rank N PATTERN: each of ranks 0..N-1 printed "rank R: starmoe ...: ...PATTERN"
every_rank() {
  local r
  for ((r = 0; r < $1; r++)); do
    grep -qE "^rank $r: starmoe [a-z]+: .*$2" "$TMP/out" || return 1
  done
}
# check_ranks NAME N PATTERN: all N ranks failed (not by the timeout) with the pattern, and no
# sanitizer complained (under --enable-sanitizers)
check_ranks() {
  if [ "$rc" -ne 0 ] && [ "$rc" -lt 124 ] && every_rank "$2" "$3" &&
     ! grep -qE "ERROR: (Leak|Address|UndefinedBehavior)Sanitizer|runtime error:" "$TMP/out"
  then ok 0 "$1"
  else ok 1 "$1 (exit $rc: $(grep -v '^\[starpu\]' "$TMP/out" | head -c 600))"; fi
}

run_ranks "${MPIRUN[@]}" -np 2 "${TRAIN[@]}"
check_ranks "2 ranks for ep 1 x dp 1: every rank names both fields and the count" 2 \
  "parallel.ep 1 x parallel.dp 1 = 1 rank, but 2 ranks were launched"

run_ranks "${MPIRUN[@]}" -np 3 "${TRAIN[@]}" --set parallel.ep=3
check_ranks "ep 3 not dividing the 16 routed experts names model.n_routed_experts" 3 \
  "parallel.ep 3 does not divide model.n_routed_experts 16"

run_ranks "${MPIRUN[@]}" -np 2 "${TRAIN[@]}" --set parallel.dp=2 --set train.batch_size=3 \
  --set train.micro_batches=1
check_ranks "a batch of 3 over dp 2 names train.batch_size" 2 \
  "train.batch_size 3 does not split over the 2 ranks of parallel.ep 1 x parallel.dp 2"

# expert-parallel ranks run their own sequences too: the batch splits over ep x dp
run_ranks "${MPIRUN[@]}" -np 4 "${TRAIN[@]}" --set parallel.ep=2 --set parallel.dp=2 \
  --set train.batch_size=6 --set train.micro_batches=1
check_ranks "a batch of 6 over ep 2 x dp 2 names train.batch_size and the 4 ranks" 4 \
  "train.batch_size 6 does not split over the 4 ranks of parallel.ep 2 x parallel.dp 2"
[ ! -e "$TMP/run" ] && ! grep -q "^step" "$TMP/out"
ok $? "no rank wrote a run folder or printed a step line"

# MPMD: rank 1 runs another config; the hash exchanged at start-up names it on every rank
run_ranks "${MPIRUN[@]}" -np 1 "${TRAIN[@]}" --set parallel.dp=2 : \
  -np 1 "${TRAIN[@]}" --set parallel.dp=2 --set train.lr=1e-3
check_ranks "another run config on rank 1 is named by both ranks" 2 \
  "rank 1 runs another build or another run config than rank 0"

# a rank that fails on its own (its config file is missing) stops the others promptly
start=$(date +%s)
run_ranks "${MPIRUN[@]}" -np 1 "${TRAIN[@]}" --set parallel.dp=2 : \
  -np 1 "$STARMOE" train --config "$TMP/missing.json" --set parallel.dp=2 --out "$TMP/run"
took=$(($(date +%s) - start))
[ "$rc" -ne 0 ] && [ "$rc" -lt 124 ] && [ "$took" -lt 60 ] &&
  grep -qE "^rank 1: starmoe train: .*missing.json" "$TMP/out"
ok $? "a rank failing alone stops every rank within 60 s (took ${took} s, exit $rc)"

# a peer that joins MPI but never answers: rank 0 gives up after parallel.timeout_s, naming it
start=$(date +%s)
run_ranks "${MPIRUN[@]}" -np 1 "${TRAIN[@]}" --set parallel.dp=2 --set parallel.timeout_s=3 : \
  -np 1 tests/mpi_idle 100
took=$(($(date +%s) - start))
[ "$rc" -ne 0 ] && [ "$rc" -lt 124 ] && [ "$took" -lt 60 ] && grep -qE "^rank 0: starmoe train: \
start-up: rank 1 did not send its layout check within parallel.timeout_s 3 s" "$TMP/out"
ok $? "a silent peer: rank 0 names it after parallel.timeout_s 3 s (took ${took} s, exit $rc)"

# bench and eval take --ep/--dp and check the layout the same way
run_ranks "${MPIRUN[@]}" -np 2 "$STARMOE" bench --config "$MODEL" --batch 3 --seq 8 --reps 1 \
  --warmup 0 --dp 2
check_ranks "bench --dp 2 with --batch 3 names --batch" 2 \
  "--batch 3 does not split over the 2 ranks of parallel.ep 1 x parallel.dp 2"
# bench over 2 expert-parallel ranks: rank 0 alone reports, with the first and last losses of
# one rank, the expert-parallel traffic (a token's experts on at most topk_group ranks) and the
# peak resident memory (rank 0's, and at least as much for the largest of the ranks)
"$STARMOE" bench --config "$MODEL" --batch 4 --seq 16 --reps 2 --warmup 1 --train \
  --micro 2 > "$TMP/out1" 2>&1
rc1=$?
run_ranks "${MPIRUN[@]}" -np 2 "$STARMOE" bench --config "$MODEL" --batch 4 --seq 16 --reps 2 \
  --warmup 1 --train --ep 2 --format json
topk_group=$(grep -o '"topk_group": *[0-9]*' "$MODEL" | grep -o '[0-9]*$')
[ $rc1 -eq 0 ] && [ $rc -eq 0 ] && [ "$(grep -c '"ep_rows_per_token"' "$TMP/out")" -eq 1 ] &&
  python3 - "$TMP/out" "$TMP/out1" "$topk_group" << 'EOF'
import json, re, sys
j = json.loads([l for l in open(sys.argv[1]) if l.startswith('{')][0])
one = re.search(r'first step ([0-9.]+), last ([0-9.]+)', open(sys.argv[2]).read())
assert j['ranks'] == 2 and j['ep'] == 2
assert '%.8f' % j['loss_first'] == one.group(1) and '%.8f' % j['loss_last'] == one.group(2)
assert j['ep_rows_per_token'] > 0 and j['ep_bytes_per_token'] > 0
assert 1 <= j['ep_ranks_per_token'] <= j['ep_ranks_max'] <= min(2, int(sys.argv[3]))
assert 1 << 20 < j['peak_rss_bytes'] <= j['peak_rss_max_bytes'] < 1 << 40
assert re.search(r'memory +peak resident [0-9.]+ MiB', open(sys.argv[2]).read())
EOF
ok $? "bench --ep 2 on 2 ranks: one report, losses, traffic, peak memory (exit $rc1, $rc: \
$(grep -v '^\[starpu' "$TMP/out" | head -c 300))"

# the fixture eval under expert parallelism (each rank one of the two sequences, the experts
# split over the ranks): rank 0 dumps the logits, loss, hidden states, routing and gradients
# of one rank bit for bit (one rank with the same micro-batches, deterministic)
"$STARMOE" eval --model "$FIXTURE" --inputs "$FIXTURE/inputs.safetensors" --micro 2 \
  --deterministic --dump "$TMP/eval1.safetensors" > "$TMP/out1" 2>&1
rc1=$?
run_ranks "${MPIRUN[@]}" -np 2 "$STARMOE" eval --model "$FIXTURE" \
  --inputs "$FIXTURE/inputs.safetensors" --ep 2 --dump "$TMP/eval2.safetensors"
[ $rc1 -eq 0 ] && [ $rc -eq 0 ] && cmp -s "$TMP/eval1.safetensors" "$TMP/eval2.safetensors" &&
  [ "$(grep -c '^loss' "$TMP/out")" -eq 1 ] &&
  [ "$(grep -o 'loss [0-9.]*' "$TMP/out")" = "$(grep -o 'loss [0-9.]*' "$TMP/out1")" ]
ok $? "eval --ep 2 on 2 ranks: the dump of one rank bit for bit, one report line (exit $rc1, \
$rc: $(grep -v '^\[starpu' "$TMP/out" | head -c 300))"

# without mpirun: the layout is checked against one rank, keys are checked as ever
expect_error "--set parallel.ep=2 on one rank names the fields" \
  "parallel.ep 2 x parallel.dp 1 = 2 ranks, but 1 rank was launched" "${TRAIN[@]}" \
  --set parallel.ep=2
expect_error "an unknown parallel key is an error" "unknown field 'parallel.epp'" \
  "${TRAIN[@]}" --set parallel.epp=2
expect_error "parallel.timeout_s must be positive" "parallel.timeout_s.*> 0" "${TRAIN[@]}" \
  --set parallel.timeout_s=0
expect_error "bench --ep 2 on one rank" "parallel.ep 2 x parallel.dp 1 = 2 ranks" \
  "$STARMOE" bench --config "$MODEL" --batch 2 --seq 8 --reps 1 --warmup 0 --ep 2
[ ! -e "$TMP/run" ]
ok $? "refused runs leave no run folder"

# one rank under mpirun trains exactly as without it (no MPI at all): same losses
"${MPIRUN[@]}" -np 1 "${TRAIN[@]}" --out "$TMP/one-mpi" > "$TMP/out" 2>&1
rc=$?
"${TRAIN[@]}" --out "$TMP/one" > "$TMP/out2" 2>&1
[ $rc -eq 0 ] && [ $? -eq 0 ] && [ -s "$TMP/one/metrics.jsonl" ] &&
  [ "$(losses "$TMP/one-mpi")" = "$(losses "$TMP/one")" ] && ! grep -q "^rank" "$TMP/out"
ok $? "mpirun -np 1 trains as without mpirun: the same losses, no rank prefix"

# data parallelism: 20 steps of examples/tiny.json on 1 and on 2 ranks (each its half of every
# global batch; stopped at step 10 and resumed, every rank reading the checkpoint) give the
# same losses within 1e-6 relative, and only rank 0 prints and writes
STEPS=(--steps 20 --set log.every=1 --set eval.every=0)
# same_losses A B TOLERANCE: the same number of train losses, each within the relative tolerance
same_losses() {
  paste <(losses "$1") <(losses "$2") | awk -v tol="$3" '
    { n++; d = $1 - $2; if (d < 0) d = -d; if ($2 == "" || d > tol * ($1 < 0 ? -$1 : $1)) bad++ }
    END { exit !(n > 0 && !bad) }'
}
"${TRAIN[@]}" "${STEPS[@]}" --out "$TMP/dp1" > "$TMP/out" 2>&1
rc1=$?
run_ranks "${MPIRUN[@]}" -np 2 "${TRAIN[@]}" "${STEPS[@]}" --out "$TMP/dp2" --set parallel.dp=2 \
  --steps 10
[ $rc -eq 0 ] && [ "$(grep -c '^step ' "$TMP/out")" -eq 10 ] && ! grep -q '^rank' "$TMP/out" &&
  [ -d "$TMP/dp2/step-000010" ] && [ "$(grep -c '"kind":"train"' "$TMP/dp2/metrics.jsonl")" -eq 10 ]
st=$?
ok $st "dp 2: one console line per step (rank 0's), one metrics line per step, the checkpoint"
[ $st -eq 0 ] || { echo "# exit $rc, output:"; grep -v '^step ' "$TMP/out" | head -20 | sed 's/^/#   /'; }
run_ranks "${MPIRUN[@]}" -np 2 "$STARMOE" train --resume --out "$TMP/dp2" --steps 20
[ $rc1 -eq 0 ] && [ $rc -eq 0 ] && grep -q "^resumed from .*step-000010 at step 10" "$TMP/out" &&
  [ "$(losses "$TMP/dp1" | wc -l)" -eq 20 ] && same_losses "$TMP/dp1" "$TMP/dp2" 1e-6
ok $? "dp 2, resumed at step 10 on both ranks: the 20 losses of one rank within 1e-6 relative \
(exit $rc1, $rc: $(paste <(losses "$TMP/dp1") <(losses "$TMP/dp2") 2>&1 | sed -n 20p))"

# expert parallelism: 20 steps of examples/tiny.json over ep 2 (2 ranks; stopped at step 10 and
# resumed), ep 4 and ep 2 x dp 2 (4 ranks) give the losses of one rank within 1e-6 relative
run_ranks "${MPIRUN[@]}" -np 2 "${TRAIN[@]}" "${STEPS[@]}" --out "$TMP/ep2" --set parallel.ep=2 \
  --steps 10
rc_a=$rc
run_ranks "${MPIRUN[@]}" -np 2 "$STARMOE" train --resume --out "$TMP/ep2" --steps 20
[ $rc_a -eq 0 ] && [ $rc -eq 0 ] && grep -q "^resumed from .*step-000010 at step 10" "$TMP/out" &&
  [ "$(losses "$TMP/ep2" | wc -l)" -eq 20 ] && same_losses "$TMP/dp1" "$TMP/ep2" 1e-6 &&
  ! grep -q '^rank' "$TMP/out"
ok $? "ep 2, resumed at step 10: the 20 losses of one rank within 1e-6 relative (exit $rc_a, \
$rc: $(paste <(losses "$TMP/dp1") <(losses "$TMP/ep2") 2>&1 | sed -n 20p))"
# another layout resumes a checkpoint (parameters and optimizer state are read whole by every
# rank): the ep 2 run's step-10 checkpoint continues on one rank, and a one-rank checkpoint on
# ep 4 x 4 ranks; their losses stay within 1e-5 of the uninterrupted runs (micro-batches of
# another size sum in another order)
rm -rf "$TMP/ep2-on-1" "$TMP/one-on-4"
mkdir -p "$TMP/ep2-on-1" "$TMP/one-on-4"
cp -r "$TMP/ep2/run.json" "$TMP/ep2/tokenizer.bpe" "$TMP/ep2/step-000010" "$TMP/ep2-on-1/"
grep -E '"step":([1-9]|10),' "$TMP/ep2/metrics.jsonl" > "$TMP/ep2-on-1/metrics.jsonl"
"$STARMOE" train --resume --out "$TMP/ep2-on-1" --steps 20 --set parallel.ep=1 > "$TMP/out" 2>&1
rc_a=$?
cp -r "$TMP/dp1/run.json" "$TMP/dp1/tokenizer.bpe" "$TMP/one-on-4/"
"${TRAIN[@]}" "${STEPS[@]}" --steps 10 --out "$TMP/one-on-4" > /dev/null 2>&1
run_ranks "${MPIRUN[@]}" -np 4 "$STARMOE" train --resume --out "$TMP/one-on-4" --steps 20 \
  --set parallel.ep=4
[ $rc_a -eq 0 ] && [ $rc -eq 0 ] && grep -q "^resumed from .*step-000010 at step 10" "$TMP/out" &&
  [ "$(losses "$TMP/ep2-on-1" | wc -l)" -eq 20 ] && same_losses "$TMP/ep2" "$TMP/ep2-on-1" 1e-5 &&
  [ "$(losses "$TMP/one-on-4" | wc -l)" -eq 20 ] && same_losses "$TMP/dp1" "$TMP/one-on-4" 1e-5
ok $? "an ep 2 checkpoint resumed on one rank and a one-rank checkpoint on ep 4: 20 losses each \
within 1e-5 of the uninterrupted runs (exit $rc_a, $rc: \
$(paste <(losses "$TMP/ep2") <(losses "$TMP/ep2-on-1") 2>&1 | sed -n 20p))"

for layout in "ep=4 dp=1" "ep=2 dp=2"; do
  set -- $layout
  run_ranks "${MPIRUN[@]}" -np 4 "${TRAIN[@]}" "${STEPS[@]}" --out "$TMP/$1$2" \
    --set "parallel.$1" --set "parallel.$2"
  [ $rc -eq 0 ] && [ "$(losses "$TMP/$1$2" | wc -l)" -eq 20 ] &&
    same_losses "$TMP/dp1" "$TMP/$1$2" 1e-6
  ok $? "$1 x $2 on 4 ranks: the 20 losses of one rank within 1e-6 relative (exit $rc: \
$(paste <(losses "$TMP/dp1") <(losses "$TMP/$1$2") 2>&1 | sed -n 20p))"
done

# bit for bit with engine.deterministic, whatever the layout, with micro-batches of the same
# size: one rank with 4 micro-batches (its 4 gradient copies summed in order) and 2 or 4 ranks
# (the chain adding each rank's micro-batches in rank order) give the same step numbers and
# the same weights
DET=(--set engine.deterministic=true --steps 5)
# step_numbers RUN: its train metrics without the timings, one number a line
step_numbers() {
  grep '"kind":"train"' "$1/metrics.jsonl" |
    sed 's/"tokens_per_s":[^,]*,"step_ms":[^,]*,"mfu":[^,]*,//' | tr ',{}' '\n\n\n' |
    awk -F: '$2 ~ /^[-0-9]/ { printf "%s %.17g\n", $1, $2 }'
}
"${TRAIN[@]}" "${STEPS[@]}" "${DET[@]}" --set train.micro_batches=4 --out "$TMP/det1" \
  > "$TMP/out" 2>&1
rc1=$?
for layout in "2 dp=2 2" "4 dp=4 1" "2 ep=2 2" "4 ep=4 1" "4 ep=2,dp=2 1"; do
  set -- $layout
  sets=()
  for kv in ${2//,/ }; do sets+=(--set "parallel.$kv"); done
  run_ranks "${MPIRUN[@]}" -np "$1" "${TRAIN[@]}" "${STEPS[@]}" "${DET[@]}" "${sets[@]}" \
    --set train.micro_batches="$3" --out "$TMP/det-$2"
  [ $rc1 -eq 0 ] && [ $rc -eq 0 ] && [ "$(losses "$TMP/det-$2" | wc -l)" -eq 5 ] &&
    [ "$(step_numbers "$TMP/det-$2")" = "$(step_numbers "$TMP/det1")" ] &&
    "$CKPT_SAME" "$TMP/det1/step-000005" "$TMP/det-$2/step-000005"
  ok $? "${2/,/ x } on $1 ranks, $3 micro-batches each, deterministic: loss, balance loss, \
gradient norm, load, weights and moments of one rank bit for bit after 5 steps (exit $rc1, $rc\
$([ $rc -eq 0 ] || grep -v '^\[starpu' "$TMP/out" | grep -iE 'error|rank [0-9]+:' | head -3))"
done

# an ep 2 checkpoint (two shards and an index) loads whole in one process: generate continues a
# prompt as from the one-rank checkpoint
gen() { "$STARMOE" generate --ckpt "$1" --prompt "the" --tokens 12 --temperature 0 --workers 1; }
ls "$TMP/det-ep=2/step-000005" > "$TMP/ls"
gen "$TMP/det1/step-000005" > "$TMP/gen1" 2> "$TMP/gen.err" &&
  gen "$TMP/det-ep=2/step-000005" > "$TMP/gen2" 2>> "$TMP/gen.err" &&
  grep -q "^model-00002-of-00002.safetensors" "$TMP/ls" && grep -q "^model.safetensors.index.json" "$TMP/ls" &&
  grep -q "^optimizer-00001-of-00002.safetensors" "$TMP/ls" && [ -s "$TMP/gen1" ] &&
  cmp -s "$TMP/gen1" "$TMP/gen2"
ok $? "an ep 2 checkpoint ($(tr '\n' ' ' < "$TMP/ls")) loads in one process: generate gives the \
one-rank checkpoint's text"
tap_done
