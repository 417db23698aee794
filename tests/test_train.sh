#!/usr/bin/env bash
# starmoe train end to end on a small corpus made from the project's own sources: the same
# seed gives the same losses; 4 steps + --resume to 8 gives bit for bit the losses of 8 steps in
# one run; a kill -9 during training leaves a checkpoint that resumes; corrupted checkpoints,
# malformed configs, bad corpora get clear errors; generate samples text from a checkpoint.
. "$(dirname "$0")/tap.sh"
src=${STARMOE_SRCDIR:-..}
mkdir -p "$TMP/corpus"
cp "$src"/model/*.c "$src"/tasks/*.c "$src"/io/*.c "$TMP/corpus/"
small=(--set train.batch_size=4 --set train.seq_len=32 --set train.micro_batches=2
       --set train.steps=8 --set train.warmup_steps=2 --set eval.every=4 --set eval.batches=2
       --set checkpoint.every=2 --set log.every=1 --set data.val_fraction=0.1
       --set data.doc_separator=\"\")
train() { "$STARMOE" train --config "$src/examples/tiny.json" --data "$TMP/corpus" "${small[@]}" "$@"; }

train --out "$TMP/a" > "$TMP/a.log" 2>&1
ok $? "8 training steps run ($(grep -c '^step' "$TMP/a.log") step lines)"
[ "$(losses "$TMP/a" | wc -l)" -eq 8 ]; ok $? "metrics.jsonl has a train line per step"
grep -q '"kind":"eval".*"val_loss".*"val_bpb"' "$TMP/a/metrics.jsonl"; ok $? "eval lines carry val_loss and val_bpb"
grep -q '"step":0,"kind":"eval"' "$TMP/a/metrics.jsonl"; ok $? "evaluation at step 0"
for k in loss lr grad_norm tokens_per_s; do
  grep '"kind":"train"' "$TMP/a/metrics.jsonl" | head -1 | grep -q "\"$k\":"; ok $? "train lines carry $k"
done
[ -s "$TMP/a/loss.svg" ] && grep -q '<svg' "$TMP/a/loss.svg"; ok $? "loss.svg written"
ls "$TMP/a" | grep -c '^step-' | grep -q '^3$'; ok $? "only the newest 3 checkpoints are kept"

train --out "$TMP/nest/ed/b" > "$TMP/b.log" 2>&1
ok $? "a run folder whose parents do not exist yet is created"
diff <(losses "$TMP/a") <(losses "$TMP/nest/ed/b") > /dev/null; ok $? "same seed, same losses"
train --out "$TMP/s" --seed 99 > /dev/null 2>&1
! diff <(losses "$TMP/a") <(losses "$TMP/s") > /dev/null; ok $? "another seed, other losses"

train --out "$TMP/r" --steps 4 > /dev/null 2>&1 && train --out "$TMP/r" --steps 8 --resume > "$TMP/r.log" 2>&1
ok $? "4 steps, then --resume to step 8"
grep -q "resumed from .*step-000004 at step 4" "$TMP/r.log"; ok $? "resume starts after step 4"
diff <(losses "$TMP/a") <(losses "$TMP/r") > /dev/null; ok $? "resumed run's losses are bitwise those of one run"
cmp -s "$TMP/a/step-000008/model.safetensors" "$TMP/r/step-000008/model.safetensors"; ok $? "and so are the final weights"

"$STARMOE" eval --model "$TMP/a/step-000008" --inputs "$FIXTURE/inputs.safetensors" --forward-only > "$TMP/e.log" 2>&1
ok $? "a checkpoint is a Hugging Face folder starmoe eval loads"
out=$("$STARMOE" generate --ckpt "$TMP/a" --prompt "static int" --tokens 20 --seed 1 2>&1)
ok $? "generate samples from the run's newest checkpoint"
echo "$out" | grep -q '^static int'; ok $? "the sample starts with the prompt"

# kill -9 while training (checkpoint every step), then resume from what survived
setsid "$STARMOE" train --config "$src/examples/tiny.json" --data "$TMP/corpus" "${small[@]}" \
  --out "$TMP/k" --set checkpoint.every=1 --set train.steps=400 > /dev/null 2>&1 &
pid=$!
for i in $(seq 1 100); do sleep 0.1; [ -d "$TMP/k/step-000003" ] && break; done
sleep 0.$((RANDOM % 9 + 1)); kill -9 -- -$pid 2>/dev/null; wait $pid 2>/dev/null
train --out "$TMP/k" --set checkpoint.every=1 --set train.steps=400 --steps 6 --resume > "$TMP/k.log" 2>&1
ok $? "after kill -9 the run resumes from its newest complete checkpoint ($(grep -o "resumed from [^ ]*" "$TMP/k.log"; grep -i error "$TMP/k.log" | head -2))"

# corrupted newest checkpoint: resume falls back to the previous one
cp -r "$TMP/a" "$TMP/c"
printf 'X' | dd of="$TMP/c/step-000008/model.safetensors" bs=1 seek=100 conv=notrunc 2>/dev/null
train --out "$TMP/c" --resume > "$TMP/c.log" 2>&1
grep -q "resumed from .*step-000006" "$TMP/c.log" && grep -qi "step-000008.*model.safetensors" "$TMP/c.log"
ok $? "a corrupted checkpoint is reported and the previous one is used"

expect_error "fresh run into a run folder with checkpoints" "already holds checkpoints" train --out "$TMP/a"
expect_error "resume without checkpoints" "no complete checkpoint" train --out "$TMP/none" --resume
expect_error "unknown config key" "train.leraning_rate" train --out "$TMP/x" --set train.leraning_rate=1
expect_error "wrong value type" "train.lr" train --out "$TMP/x" --set train.lr=fast
mkdir -p "$TMP/empty"
expect_error "empty corpus" "empty|no text" "$STARMOE" train --config "$src/examples/tiny.json" --data "$TMP/empty" --out "$TMP/x2"
printf 'tiny\n' > "$TMP/little.txt"
expect_error "corpus too small for one batch" "too small" "$STARMOE" train --config "$src/examples/tiny.json" --data "$TMP/little.txt" --out "$TMP/x3"
expect_error "missing corpus" "nope.*not found" "$STARMOE" train --config "$src/examples/tiny.json" --data "$TMP/nope" --out "$TMP/x4"
expect_error "--steps beyond the schedule" "beyond" train --out "$TMP/x5" --steps 9
tap_done
