#!/usr/bin/env bash
# Faults of a run over ranks (issue 10, item 8), for real: a rank killed with SIGKILL mid-run
# makes the other rank exit with an error naming the lost rank, and the last complete
# checkpoint resumes on the same layout, continuing as an uninterrupted run would (bit for bit,
# deterministic); a rank stopped with SIGSTOP makes the other give up after parallel.timeout_s,
# naming the step and the rank it waits for. Every mpirun is bounded by a timeout.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/mpi.sh"
MPIRUN+=(-np 2)
CONFIG=${STARMOE_SRCDIR:-..}/examples/tiny.json
TRAIN=("$STARMOE" train --config "$CONFIG" --set engine.workers=1 --set eval.every=0
       --set eval.batches=1 --set log.every=1 --set parallel.ep=2
       --set engine.deterministic=true --set checkpoint.every=4 --set checkpoint.keep=1000)

# the run to compare with: 12 steps, uninterrupted
"${MPIRUN[@]}" "${TRAIN[@]}" --steps 12 --out "$TMP/whole" > "$TMP/out" 2>&1
ok $? "an uninterrupted run of 12 steps over ep 2"

# SIGKILL of rank 1 once the step-4 checkpoint is complete, mid-run
"${MPIRUN[@]}" "${TRAIN[@]}" --steps 1000 --out "$TMP/run" > "$TMP/killed" 2>&1 &
job=$!
wait_for "$TMP/run/step-000004" 60
sleep 0.3
victim=$(rank_pid "$job" 1)
killed_at=$(date +%s)
[ -n "$victim" ] && kill -9 "$victim"
wait $job
rc=$?
took=$(($(date +%s) - killed_at))
[ -n "$victim" ] && [ $rc -ne 0 ] && [ "$took" -le 30 ] &&
  grep -qE "^rank 0: starmoe: rank 1 \(pid $victim\) was lost" "$TMP/killed"
ok $? "rank 1 killed (pid $victim): rank 0 names it and the job ends within 30 s (took ${took} s, \
exit $rc: $(grep '^rank' "$TMP/killed" | head -c 300))"

# the last complete checkpoint resumes on both ranks and the run goes on as if never stopped
last=$(ls -d "$TMP/run"/step-* | sort | tail -1)
"${MPIRUN[@]}" "$STARMOE" train --resume --out "$TMP/run" --steps 12 > "$TMP/out" 2>&1
rc=$?
paste <(losses "$TMP/whole") <(losses "$TMP/run") > "$TMP/both"
[ $rc -eq 0 ] && grep -q "^resumed from $last" "$TMP/out" &&
  [ "$(losses "$TMP/run" | wc -l)" -eq 12 ] && [ "$(losses "$TMP/whole" | wc -l)" -eq 12 ] &&
  awk '$1 != $2 { bad++ } END { exit bad > 0 }' "$TMP/both" &&
  "$(dirname "$STARMOE")/tests/ckpt_same" "$TMP/whole/step-000012" "$TMP/run/step-000012"
ok $? "resumed from ${last##*/} on both ranks: the 12 losses and the weights of the \
uninterrupted run bit for bit, moments too (exit $rc)"

# SIGSTOP of rank 1 mid-run: rank 0 gives up after parallel.timeout_s 3 s naming the step and
# rank 1 (mpirun then stops the job)
"${MPIRUN[@]}" "${TRAIN[@]}" --steps 1000 --out "$TMP/stopped" --set parallel.timeout_s=3 \
  > "$TMP/out" 2>&1 &
job=$!
wait_for "$TMP/stopped/step-000004" 60
victim=$(rank_pid "$job" 1)
stopped_at=$(date +%s)
[ -n "$victim" ] && kill -STOP "$victim"
wait $job
rc=$?
took=$(($(date +%s) - stopped_at))
[ -n "$victim" ] && kill -CONT "$victim" 2> /dev/null
[ -n "$victim" ] && [ $rc -ne 0 ] && [ $rc -lt 124 ] && [ "$took" -le 30 ] &&
  grep -qE "^rank 0: starmoe train: (train|eval) step [0-9]+: no task finished for \
parallel.timeout_s 3 s; waiting for messages from rank 1" "$TMP/out"
ok $? "rank 1 stopped: rank 0 names the step and rank 1 after 3 s (took ${took} s, exit $rc: \
$(grep '^rank' "$TMP/out" | head -c 300))"
tap_done
