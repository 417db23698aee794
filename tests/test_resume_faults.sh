#!/usr/bin/env bash
# Faults around a run folder, end to end on the tiny config: kill -9 at random points with
# checkpoint.keep 1 to 3, then resume, several times over: the run finishes with the losses and
# weights of an uninterrupted run. A second trainer on a run folder in use fails fast naming the
# holder; a resume asking for other model or train settings or another seed is refused naming
# the field and both values, one changing other settings says so. Forged checkpoints whose
# CRCs match but whose state disagrees are refused; a CRC mismatch names the file and both
# values; generate says which checkpoint it skipped and which it uses; eval without targets has
# no loss; a failed set-up removes the folders it created, and only those.
. "$(dirname "$0")/tap.sh"
src=${STARMOE_SRCDIR:-..}
RESEAL=${RESEAL:-./tests/ckpt_reseal}
mkdir -p "$TMP/corpus"
cp "$src"/model/*.c "$src"/tasks/*.c "$src"/io/*.c "$TMP/corpus/"
small=(--config "$src/examples/tiny.json" --data "$TMP/corpus"
       --set train.batch_size=4 --set train.seq_len=32 --set train.micro_batches=2
       --set train.steps=12 --set train.warmup_steps=2 --set eval.every=0 --set eval.batches=1
       --set log.every=1 --set data.val_fraction=0.1 --set data.doc_separator=\"\")
train() { timeout 120 "$STARMOE" train "${small[@]}" "$@"; }
# the newest step-* folder's step, 0 when none
newest() {
  local s; s=$(ls "$1" 2>/dev/null | grep '^step-' | sort | tail -1); s=${s#step-}
  echo $((10#${s:-0}))
}

train --out "$TMP/ref" > "$TMP/ref.log" 2>&1
ok $? "an uninterrupted run of 12 steps"

# ---- kill -9 at random points, resume, again: keep 1, 2, 3 in turn ----
k=$TMP/k round=0
while [ "$(newest "$k")" -lt 5 ] && [ $round -lt 8 ]; do
  start=$(newest "$k") resume=()
  [ $round -gt 0 ] && resume=(--resume)
  setsid timeout 120 "$STARMOE" train "${small[@]}" --out "$k" --set checkpoint.every=1 \
    --set checkpoint.keep=$((round % 3 + 1)) "${resume[@]}" > "$TMP/k$round.log" 2>&1 &
  pid=$!
  # round 1 may die while starting up; the others once they saved a newer checkpoint
  for i in $(seq 1 200); do
    [ $round -eq 1 ] && [ $i -gt $((RANDOM % 20)) ] && break
    [ "$(newest "$k")" -gt "$start" ] || ! kill -0 $pid 2>/dev/null && break
    sleep 0.05
  done
  sleep 0.$((RANDOM % 4))$((RANDOM % 10))
  kill -9 -- -$pid 2>/dev/null; wait $pid 2>/dev/null
  # a killed trainer holds the run folder's lock until the kernel has torn it down, which takes
  # a while on a loaded machine: wait (at most 30 s) until the lock is free
  [ -e "$k/.lock" ] && timeout 30 flock -x "$k/.lock" true
  round=$((round + 1))
done
from=$(newest "$k")
train --out "$k" --set checkpoint.every=1 --set checkpoint.keep=1 --resume > "$TMP/kend.log" 2>&1
rc=$? why=$(grep -v starpu "$TMP/kend.log" | grep -i 'error\|cannot' | head -2)
ok $rc "after $round kill -9 rounds the run resumes from step $from with keep 1 and finishes $why"
diff <(losses "$TMP/ref") <(losses "$k") > /dev/null
ok $? "its $(losses "$k" | wc -l) losses, one a step, are bitwise those of the uninterrupted run"
cmp -s "$TMP/ref/step-000012/model.safetensors" "$k/step-000012/model.safetensors"
ok $? "and so are its final weights"
[ "$(ls "$k" | grep -c '^step-')" -eq 1 ] && ! ls -A "$k" | grep -q '^\.tmp-'
ok $? "one checkpoint kept, no temporary folder left ($(ls -A "$k" | tr '\n' ' '))"
grep -hq "resume: checkpoint.keep is [0-9] (the run had [0-9])" "$TMP"/k*.log
ok $? "a resume with another checkpoint.keep says so"

# ---- one trainer per run folder ----
l=$TMP/l
timeout 120 "$STARMOE" train "${small[@]}" --out "$l" --set checkpoint.every=1 --steps 6 \
  > "$TMP/l1.log" 2>&1 &
apid=$!
for i in $(seq 1 200); do [ -s "$l/.lock" ] && break; sleep 0.05; done
holder=$(cat "$l/.lock")
[ "$(awk '{print $4}' "/proc/$holder/stat" 2>/dev/null)" = "$apid" ]
ok $? "the lock file names the trainer holding it (pid $holder, started by $apid)"
t0=$(date +%s%N)
expect_error "a second trainer on a run folder in use fails, naming the folder and the holder" \
  "$l: run folder in use by another process \(pid $holder\)" train --out "$l"
ms=$((($(date +%s%N) - t0) / 1000000))
[ $ms -lt 3000 ]; ok $? "and fails fast ($ms ms)"
expect_error "so does a second resume" "in use by another process \(pid $holder\)" \
  train --out "$l" --resume
wait $apid; ok $? "the first trainer finishes undisturbed"
[ "$(losses "$l" | wc -l)" -eq 6 ]; ok $? "with one metrics line per step"

# ---- resume with other settings ----
expect_error "a resume with another train.lr is refused, naming both values" \
  "train.lr is 0.001 here but 0.003 in the run" train --out "$l" --resume --set train.lr=0.001
expect_error "a resume with another seed is refused" "train.seed is 99 here but 1234 in the run" \
  train --out "$l" --resume --seed 99
expect_error "a resume with another model is refused" \
  "model.num_hidden_layers is 2 here but 3 in the run" \
  train --out "$l" --resume --set model.num_hidden_layers=2

# ---- checkpoints whose CRCs match but whose state disagrees (forged, resealed) ----
forge() { # name, sed expression on state.json of step 6 (none: copy only)
  rm -rf "$TMP/$1"; cp -r "$l" "$TMP/$1"
  [ -z "$2" ] || sed -i -E "$2" "$TMP/$1/step-000006/state.json"
  "$RESEAL" "$TMP/$1/step-000006" 6
}
forge cursor 's/"cursor": "[0-9]+"/"cursor": "99999999"/'
expect_error "a data cursor beyond the corpus is refused" \
  "data cursor 99999999 is beyond the corpus" train --out "$TMP/cursor" --resume
forge epoch 's/"epoch": "[0-9]+"/"epoch": "7"/'
expect_error "a data position that does not match the step is refused" \
  "data position epoch 7 cursor [0-9]+, but 6 steps of 4 sequences" \
  train --out "$TMP/epoch" --resume
forge step 's/^  "step": 6,/  "step": 5,/'
expect_error "a state step that is not the folder's is refused" \
  "field 'step' is 5, but the folder is the checkpoint of step 6" train --out "$TMP/step" --resume
forge tok
t=$TMP/tok/step-000006/tokenizer.bpe
{ echo "starmoe-bpe 1 357"; sed -n '2,101p' "$t"; } > "$t.small" && mv "$t.small" "$t"
"$RESEAL" "$TMP/tok/step-000006" 6
expect_error "a tokenizer smaller than the run's vocabulary is refused" \
  "tokenizer.bpe: 357 tokens, but the run trained with a tokenizer of 512" \
  train --out "$TMP/tok" --resume
[ -d "$TMP/tok/step-000006" ] && [ -d "$TMP/tok/step-000005" ]
ok $? "a refused resume leaves the run folder as it was"

# ---- corrupted checkpoints ----
c=$TMP/crc; rm -rf "$c"; cp -r "$l" "$c"
printf 'X' | dd of="$c/step-000006/model.safetensors" bs=1 seek=100 conv=notrunc 2>/dev/null
out=$(timeout 60 "$STARMOE" generate --ckpt "$c" --tokens 4 2>&1)
ok $? "generate falls back to an older checkpoint"
echo "$out" |
  grep -qE "skipped .*step-000006/model.safetensors: CRC-32C mismatch.*; using .*step-000005"
ok $? "and says which it skipped, why, and which it uses"
expect_error "generate on a corrupted checkpoint folder names the CRC mismatch" \
  "step-000006/model.safetensors: CRC-32C mismatch" \
  "$STARMOE" generate --ckpt "$c/step-000006" --tokens 4
for s in 4 5; do
  printf 'X' | dd of="$c/step-00000$s/model.safetensors" bs=1 seek=100 conv=notrunc 2>/dev/null
done
expect_error "no complete checkpoint, with each file and its expected and found CRC" \
  "no complete checkpoint.*step-000006/model.safetensors: CRC-32C mismatch: \
the manifest expects [0-9a-f]{8}, the file has [0-9a-f]{8}" \
  train --out "$c" --resume

# ---- eval without targets ----
h='{"input_ids":{"dtype":"I32","shape":[1,4],"data_offsets":[0,16]}}'
while [ $((${#h} % 8)) -ne 0 ]; do h="$h "; done
{ printf "\\x$(printf %02x ${#h})\\x00\\x00\\x00\\x00\\x00\\x00\\x00%s" "$h"
  printf '\x01\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x04\x00\x00\x00'
} > "$TMP/ids.safetensors"
out=$(timeout 60 "$STARMOE" eval --model "$l/step-000006" --inputs "$TMP/ids.safetensors" \
  --forward-only 2>&1)
echo "$out" | grep -q "^no loss (no targets given)  tasks" && ! echo "$out" | grep -q "^loss"
ok $? "eval without targets says there is no loss ($(echo "$out" | grep -v starpu | head -1))"

# ---- the run goes on once the folder is free ----
timeout 120 "$STARMOE" train --out "$l" --resume --set eval.every=3 > "$TMP/l3.log" 2>&1
ok $? "after the first trainer ended, a resume (the run's own settings) continues to step 12"
grep -q "resume: eval.every is 3 (the run had 0)" "$TMP/l3.log"
ok $? "saying which setting changed"
diff <(losses "$TMP/ref") <(losses "$l") > /dev/null
ok $? "with the losses of the uninterrupted run, no metrics line twice"

# ---- a failed set-up removes what it created, and only that ----
expect_error "a missing corpus" "nope.*not found" train --out "$TMP/new/deep/run" --data "$TMP/nope"
[ ! -e "$TMP/new" ]; ok $? "leaves no run folder, nor the parents it made"
mkdir -p "$TMP/empty" "$TMP/pre"; echo notes > "$TMP/pre/notes"
expect_error "an empty corpus" "empty|no text" train --out "$TMP/pre" --data "$TMP/empty"
[ "$(ls -A "$TMP/pre")" = notes ]
ok $? "leaves a folder that was there as it was ($(ls -A "$TMP/pre" | tr '\n' ' '))"
expect_error "a resume without checkpoints" "no complete checkpoint" \
  train --out "$TMP/none" --resume
[ ! -e "$TMP/none" ]; ok $? "leaves no folder"
tap_done
