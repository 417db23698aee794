#!/usr/bin/env bash
# starmoe generate --speculative end to end: TINY with one and with two MTP modules, trained on
# a corpus that repeats seven words (so the drafts are mostly right): greedy text identical to
# plain decoding's, most drafts kept, more than one token per main-model step, and the report
# of acceptance per depth and of the speed against plain decoding; sampling runs too; a model
# without MTP modules and --no-cache are refused with a clear error.
. "$(dirname "$0")/tap.sh"
src=${STARMOE_SRCDIR:-..}
mkdir -p "$TMP/corpus"
for i in $(seq 1 3000); do printf 'alpha beta gamma delta epsilon zeta eta '; done > "$TMP/corpus/a.txt"
run=(--set train.batch_size=8 --set train.seq_len=32 --set train.micro_batches=1
     --set train.steps=60 --set train.warmup_steps=5 --set train.lr=0.01 --set eval.every=0
     --set checkpoint.every=0 --set log.every=60 --set data.val_fraction=0.1)
train() { "$STARMOE" train --config "$src/examples/tiny.json" --data "$TMP/corpus" "${run[@]}" "$@"; }
gen() { "$STARMOE" generate --prompt "gamma delta" --tokens 40 "$@"; }

for D in 1 2; do
  train --out "$TMP/d$D" --set model.num_nextn_predict_layers=$D > "$TMP/train$D.log" 2>&1
  ok $? "TINY with $D MTP module(s) trains 60 steps on the repeating corpus"
  gen --ckpt "$TMP/d$D" --temperature 0 > "$TMP/plain$D" 2> /dev/null
  gen --ckpt "$TMP/d$D" --temperature 0 --speculative > "$TMP/spec$D" 2> "$TMP/report$D"
  [ $? -eq 0 ] && [ -s "$TMP/plain$D" ] && cmp -s "$TMP/plain$D" "$TMP/spec$D" &&
    grep -q "the text is plain decoding's" "$TMP/report$D"
  ok $? "D=$D greedy: the speculative text is plain decoding's ($(head -c 60 "$TMP/spec$D"))"
  line=$(grep "^speculative: depth 1 kept" "$TMP/report$D")
  echo "$line" | awk -v D=$D '{
      for (i = 1; i <= NF; i++) if ($i == "kept") { k = $(i + 1); c = $(i + 3); break }
      for (i = 1; i <= NF; i++) if ($i == "tokens" && $(i + 1) == "per") t = $(i - 1)
      exit !(c > 0 && k >= 0.8 * c && t > 1.5 && (D == 1 || $0 ~ /depth 2 kept [1-9]/)) }'
  ok $? "D=$D: most drafts kept, more than 1.5 tokens per main-model step ($line)"
  grep -qE "^speculative: decode [0-9.]+ tokens/s vs [0-9.]+ plain on the same prompt: [0-9.]+x" "$TMP/report$D"
  ok $? "D=$D: the speed against plain decoding is reported ($(grep 'tokens/s vs' "$TMP/report$D"))"
done
gen --ckpt "$TMP/d1" --temperature 0.8 --seed 7 --speculative > "$TMP/sampled" 2> "$TMP/report"
[ $? -eq 0 ] && grep -q '^gamma delta' "$TMP/sampled" && grep -q "^speculative: depth 1 kept" "$TMP/report"
ok $? "sampling at temperature 0.8 runs speculatively ($(grep 'depth 1 kept' "$TMP/report"))"

train --out "$TMP/none" --set train.steps=2 > /dev/null 2>&1
expect_error "a model without MTP modules cannot draft" \
  "no Multi-Token Prediction module .*to draft with" gen --ckpt "$TMP/none" --speculative
expect_error "--speculative with --no-cache is refused" "cannot go with no_cache" \
  gen --ckpt "$TMP/d1" --speculative --no-cache
tap_done
