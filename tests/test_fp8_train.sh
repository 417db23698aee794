#!/usr/bin/env bash
# FP8 training end to end (train.precision=fp8, examples/tiny.json): the casts and FP8 GEMMs are
# tasks the trace summary lists by op; the losses stay near the float32 run's; --resume is bit
# for bit; schedulers and the in-process zbh1 pipeline give the same losses in deterministic
# mode; expert parallelism on 2 ranks stays near one rank's.
. "$(dirname "$0")/tap.sh"
src=${STARMOE_SRCDIR:-..}
mkdir -p "$TMP/corpus"
cp "$src"/model/*.c "$src"/io/*.c "$TMP/corpus/"
run=(--set train.batch_size=4 --set train.seq_len=32 --set train.micro_batches=2
     --set train.steps=12 --set train.warmup_steps=2 --set eval.every=0 --set checkpoint.every=6
     --set log.every=1 --set data.val_fraction=0.1 --set data.doc_separator=\"\"
     --set engine.deterministic=true)
train() { "$STARMOE" train --config "$src/examples/tiny.json" --data "$TMP/corpus" "${run[@]}" "$@"; }
# mean_loss RUN: the mean of the last 6 train losses
mean_loss() { losses "$1" | tail -6 | awk '{ s += $1 } END { printf "%.6f", s / NR }'; }

train --out "$TMP/f32" > /dev/null 2>&1
train --out "$TMP/fp8" --set train.precision=fp8 --trace "$TMP/fp8.json" > "$TMP/fp8.log" 2>&1
ok $? "12 FP8 training steps run ($(grep -m1 '^optimizer' "$TMP/fp8.log"))"
"$STARMOE" trace summary "$TMP/fp8.json" > "$TMP/summary" 2>&1
n=0
for op in fp8_quant_tiles fp8_quant_blocks fp8_transpose_blocks fp8_quant_tiles_t fp8_requant_t \
          fp8_gemm fp8_gemm_wgrad swiglu_act swiglu_grad; do
  grep -qE "^$op +[0-9]" "$TMP/summary" && n=$((n + 1))
done
[ $n -eq 9 ] && ! grep -qE "^(ffn|expert)_(fwd|bwd) " "$TMP/summary"
ok $? "the trace summary lists the 9 FP8 ops ($n found) and no float32 FFN or expert task"
a=$(mean_loss "$TMP/f32") b=$(mean_loss "$TMP/fp8")
awk -v a="$a" -v b="$b" 'BEGIN { d = (b - a) / a; if (d < 0) d = -d; exit !(d < 0.02) }'
ok $? "mean loss of steps 7-12: FP8 $b vs float32 $a, within 2%"

train --out "$TMP/r" --set train.precision=fp8 --steps 6 > /dev/null 2>&1 &&
  train --out "$TMP/r" --set train.precision=fp8 --resume > /dev/null 2>&1 &&
  [ "$(losses "$TMP/fp8")" = "$(losses "$TMP/r")" ] &&
  cmp -s "$TMP/fp8/step-000012/model.safetensors" "$TMP/r/step-000012/model.safetensors"
ok $? "FP8: 6 steps, then --resume to 12: the losses and weights of one run bit for bit"
for s in eager "zbh1 --set engine.pp=2"; do
  train --out "$TMP/s" --set train.precision=fp8 --set engine.sched=$s > "$TMP/s.log" 2>&1 &&
    [ "$(losses "$TMP/fp8")" = "$(losses "$TMP/s")" ]
  ok $? "FP8 under ${s%% *}: the losses of the lws run bit for bit ($(grep -m1 -i error "$TMP/s.log"))"
  rm -rf "$TMP/s"
done
if command -v mpirun > /dev/null; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  timeout -k 5 240 mpirun --oversubscribe --bind-to none -np 2 "$STARMOE" train \
    --config "$src/examples/tiny.json" --data "$TMP/corpus" "${run[@]}" \
    --set train.precision=fp8 --set parallel.ep=2 --set train.micro_batches=1 \
    --out "$TMP/ep" > "$TMP/ep.log" 2>&1
  c=$(mean_loss "$TMP/ep")
  awk -v a="$b" -v b="$c" 'BEGIN { d = (b - a) / a; if (d < 0) d = -d; exit !(d < 0.01) }'
  ok $? "FP8 with ep 2 on 2 ranks: mean loss $c vs one rank's $b, within 1% ($(grep -m1 -i error "$TMP/ep.log"))"
fi
tap_done
