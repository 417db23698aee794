# What the pipeline-rank tests share (sourced after tap.sh and mpi.sh): the training command on
# tiny.json (one worker, 4 steps), the deterministic flag, and comparing two runs bit for bit
# by their metrics and last checkpoint (tests/ckpt_same: weights and AdamW moments).
CKPT_SAME=$(dirname "$STARMOE")/tests/ckpt_same
TRAIN=("$STARMOE" train --config "${STARMOE_SRCDIR:-..}/examples/tiny.json" --set engine.workers=1
       --set eval.batches=1 --set log.every=1 --steps 4)
DET=(--set engine.deterministic=true)

# step_numbers RUN [KINDS]: its metrics of kinds KINDS (train|eval) without the timings, one
# number a line
step_numbers() {
  grep -E "\"kind\":\"(${2:-train|eval})\"" "$1/metrics.jsonl" |
    sed 's/"tokens_per_s":[^,]*,"step_ms":[^,]*,"mfu":[^,]*,//' | tr ',{}' '\n\n\n' |
    awk -F: '$2 ~ /^[-0-9]/ { printf "%s %.17g\n", $1, $2 }'
}
# same RUN1 RUN2 [KINDS]: the step numbers and the last checkpoint's tensors bit for bit
same() {
  [ "$(step_numbers "$1" "$3" | wc -l)" -gt 0 ] &&
    [ "$(step_numbers "$1" "$3")" = "$(step_numbers "$2" "$3")" ] &&
    "$CKPT_SAME" "$1/step-000004" "$2/step-000004"
}
