#!/usr/bin/env bash
# BF16 AdamW moments end to end (train.optimizer_state_dtype=bf16, examples/tiny.json, 8 steps):
# the start-up line reports half the moments' bytes; the losses follow the float32-moment run's
# (steps 1-2 bitwise: the first update reads float32 moments; then within 1e-3 relative: a BF16
# moment is off by at most 2^-9 of itself, so each update by about as little of its own size);
# the checkpoint's optimizer tensors are BF16 (weights F32); 4 steps + --resume to 8 gives the
# losses bit for bit; a checkpoint resumed in the other dtype says it converts; expert
# parallelism on 2 ranks gives one rank's losses; bad values of train.optimizer_state_dtype and
# train.precision, and of bench's flags, are clear errors.
. "$(dirname "$0")/tap.sh"
src=${STARMOE_SRCDIR:-..}
mkdir -p "$TMP/corpus"
cp "$src"/model/*.c "$src"/io/*.c "$TMP/corpus/"
small=(--set train.batch_size=4 --set train.seq_len=32 --set train.micro_batches=2
       --set train.steps=8 --set train.warmup_steps=2 --set eval.every=4 --set eval.batches=2
       --set checkpoint.every=2 --set log.every=1 --set data.val_fraction=0.1
       --set data.doc_separator=\"\")
train() { timeout 300 "$STARMOE" train --config "$src/examples/tiny.json" --data "$TMP/corpus" "${small[@]}" "$@"; }
bf16=(--set train.optimizer_state_dtype=bf16)
# dtypes FILE: the set of dtypes of a safetensors file's tensors, one a line
dtypes() { python3 -c 'import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]
print("\n".join(sorted({v["dtype"] for k, v in json.loads(f.read(n)).items() if k != "__metadata__"})))' "$1"; }
# mib LOG: the moments' MiB of the start-up line
mib() { sed -n 's/^optimizer: AdamW, moments [a-z0-9]* (\([0-9.]*\) MiB).*/\1/p' "$1"; }

train --out "$TMP/a" > "$TMP/a.log" 2>&1
ok $? "8 steps with float32 moments"
train --out "$TMP/b" "${bf16[@]}" > "$TMP/b.log" 2>&1
ok $? "8 steps with train.optimizer_state_dtype=bf16"
grep -q '^optimizer: AdamW, moments f32 .*precision f32' "$TMP/a.log" &&
  grep -q '^optimizer: AdamW, moments bf16 ' "$TMP/b.log"
ok $? "the start-up line names the moments' dtype ($(grep '^optimizer' "$TMP/b.log"))"
awk -v a="$(mib "$TMP/a.log")" -v b="$(mib "$TMP/b.log")" 'BEGIN { exit !(a > 0 && b * 2 - a < 0.02 && a - b * 2 < 0.02) }'
ok $? "BF16 moments take half the bytes ($(mib "$TMP/b.log") MiB against $(mib "$TMP/a.log"))"

paste <(losses "$TMP/a") <(losses "$TMP/b") > "$TMP/ab"
awk 'NR <= 2 && $1 != $2 { bad++ } END { exit !(NR == 8 && !bad) }' "$TMP/ab"
ok $? "steps 1-2: the same losses bit for bit"
awk '{ d = ($1 - $2) / $1; if (d < 0) d = -d; if (d > m) m = d } END { printf "%.2g\n", m; exit !(m < 1e-3 && m > 0) }' "$TMP/ab" > "$TMP/dev"
ok $? "later losses within 1e-3 relative of the float32-moment run's, not all equal (max $(cat "$TMP/dev"))"

[ "$(dtypes "$TMP/b/step-000008/optimizer.safetensors")" = BF16 ] &&
  [ "$(dtypes "$TMP/b/step-000008/model.safetensors")" = F32 ] &&
  [ "$(dtypes "$TMP/a/step-000008/optimizer.safetensors")" = F32 ]
ok $? "the checkpoint holds BF16 moments and F32 weights (float32 moments stay F32)"

train --out "$TMP/r" "${bf16[@]}" --steps 4 > /dev/null 2>&1 &&
  train --out "$TMP/r" "${bf16[@]}" --resume > "$TMP/r.log" 2>&1
ok $? "BF16 moments: 4 steps, then --resume to step 8"
diff <(losses "$TMP/b") <(losses "$TMP/r") > /dev/null; ok $? "resumed run's losses are bitwise those of one run"
! grep -q "warning.*moments" "$TMP/r.log"; ok $? "a resume in the same dtype converts nothing"

# a float32-moment checkpoint resumed with BF16 moments, and the reverse
train --out "$TMP/c" --steps 4 > /dev/null 2>&1 &&
  train --out "$TMP/c" "${bf16[@]}" --resume > "$TMP/c.log" 2>&1
ok $? "a float32-moment checkpoint resumes with BF16 moments"
grep -q 'resume: train.optimizer_state_dtype is "bf16"' "$TMP/c.log" &&
  grep -q "resume: warning: .* keeps the AdamW moments as F32, this run as BF16 .*: rounded to BF16" "$TMP/c.log"
ok $? "it says the setting changed and that the moments are rounded"
[ "$(dtypes "$TMP/c/step-000008/optimizer.safetensors")" = BF16 ]
ok $? "its next checkpoints hold BF16 moments"
train --out "$TMP/d" "${bf16[@]}" --steps 4 > /dev/null 2>&1 &&
  train --out "$TMP/d" --set train.optimizer_state_dtype=f32 --resume > "$TMP/w.log" 2>&1 &&
  grep -q "resume: warning: .* keeps the AdamW moments as BF16, this run as F32 .*: widened exactly" "$TMP/w.log"
ok $? "a BF16-moment checkpoint resumed with float32 moments says they are widened"

expect_error "train.optimizer_state_dtype fp16" \
  "--set: field 'train.optimizer_state_dtype': expected \"auto\", \"f32\" or \"bf16\", got \"fp16\"" \
  train --out "$TMP/e1" --set train.optimizer_state_dtype=fp16
expect_error "train.precision bf16" "--set: field 'train.precision': expected \"f32\" or \"fp8\", got \"bf16\"" \
  train --out "$TMP/e2" --set train.precision=bf16
python3 - "$src/examples/tiny.json" "$TMP/bad.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1])); c["train"]["optimizer_state_dtype"] = "F32"
json.dump(c, open(sys.argv[2], "w"))
EOF
expect_error "a config file's bad train.optimizer_state_dtype" \
  "bad.json: field 'train.optimizer_state_dtype': expected .*got \"F32\"" \
  timeout 60 "$STARMOE" train --config "$TMP/bad.json" --data "$TMP/corpus" --out "$TMP/e3"
# train.precision=fp8: refused until the FP8 graphs are built; once they are, auto moments are BF16
train --out "$TMP/f" --set train.precision=fp8 --steps 1 > "$TMP/f.log" 2>&1
rc=$?
{ [ $rc -ne 0 ] && grep -q "FP8 training .* is not built yet" "$TMP/f.log"; } ||
  { [ $rc -eq 0 ] && grep -q '^optimizer: AdamW, moments bf16 .*precision fp8' "$TMP/f.log"; }
ok $? "train.precision=fp8: BF16 moments by default, or refused as not built yet (exit $rc)"

# expert parallelism over 2 ranks: one rank's losses bit for bit (deterministic reduction), each
# rank's optimizer shard BF16
if command -v mpirun > /dev/null; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  det=(--set engine.deterministic=true --steps 4 --set eval.every=0 "${bf16[@]}")
  train --out "$TMP/d1" "${det[@]}" --set train.micro_batches=4 > /dev/null 2>&1 &&
    timeout -k 5 240 mpirun --oversubscribe --bind-to none -np 2 "$STARMOE" train \
      --config "$src/examples/tiny.json" --data "$TMP/corpus" "${small[@]}" "${det[@]}" \
      --set train.micro_batches=2 --set parallel.ep=2 --out "$TMP/ep" > "$TMP/ep.log" 2>&1 &&
    [ "$(losses "$TMP/d1")" = "$(losses "$TMP/ep")" ] &&
    [ "$(dtypes "$TMP/ep/step-000004/optimizer-00001-of-00002.safetensors")" = BF16 ] &&
    [ "$(dtypes "$TMP/ep/step-000004/optimizer-00002-of-00002.safetensors")" = BF16 ]
  ok $? "ep 2 on 2 ranks with BF16 moments: one rank's losses bit for bit, BF16 optimizer shards \
($(grep -m1 -i error "$TMP/ep.log"))"
fi

bench() { timeout 120 "$STARMOE" bench --config "$FIXTURE/config.json" --batch 2 --seq 16 --reps 2 --workers 1 --train "$@"; }
expect_error "bench --precision fp16" "--precision 'fp16': expected f32 or fp8" bench --precision fp16
expect_error "bench --optimizer-state-dtype x" "--optimizer-state-dtype 'x': expected auto, f32 or bf16" \
  bench --optimizer-state-dtype x
bench --optimizer-state-dtype bf16 > "$TMP/bb.log" 2>&1 && bench > "$TMP/ba.log" 2>&1 &&
  [ "$(grep -o 'first step [0-9.]*' "$TMP/bb.log")" = "$(grep -o 'first step [0-9.]*' "$TMP/ba.log")" ]
ok $? "bench --train --optimizer-state-dtype bf16 runs (first loss that of float32 moments)"

tap_done
