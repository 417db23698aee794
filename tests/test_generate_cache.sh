#!/usr/bin/env bash
# starmoe generate over MLA's latent cache, end to end on a checkpoint of a short TINY training
# run: greedy (and seeded sampled) text with the cache is the text of --no-cache (which re-runs
# the window for every token), stderr says what the cache holds per token against full K/V and
# how fast prefill and decode went, and a prompt plus new tokens past max_position_embeddings
# is a clear error with the cache (--no-cache slides its window instead).
. "$(dirname "$0")/tap.sh"
src=${STARMOE_SRCDIR:-..}
mkdir -p "$TMP/corpus"
cp "$src"/model/*.c "$TMP/corpus/"
timeout 300 "$STARMOE" train --config "$src/examples/tiny.json" --data "$TMP/corpus" \
  --set train.batch_size=2 --set train.seq_len=32 --set train.micro_batches=1 \
  --set train.steps=8 --set train.warmup_steps=1 --set eval.every=0 --set checkpoint.every=8 \
  --set log.every=1 --set data.val_fraction=0.1 --out "$TMP/run" > "$TMP/train.log" 2>&1
ok $? "an 8-step TINY run writes a checkpoint ($(tail -1 "$TMP/train.log"))"

gen() { timeout 120 "$STARMOE" generate --ckpt "$TMP/run" --prompt "static int" --temperature 0 \
          --workers 1 "$@"; }
gen --tokens 20 > "$TMP/cached.txt" 2> "$TMP/cached.err"
ok $? "generate with the cache runs"
gen --tokens 20 --no-cache > "$TMP/plain.txt" 2> "$TMP/plain.err"
ok $? "generate --no-cache runs"
text() { head -c 80 "$1" | tr -c '[:print:]' ' '; }
cmp -s "$TMP/cached.txt" "$TMP/plain.txt" && grep -q '^static int' "$TMP/cached.txt"
ok $? "greedy text with the cache is the text without ($(text "$TMP/cached.txt"))"
gen --tokens 20 --temperature 1 --seed 3 > "$TMP/cached_t1.txt" 2> /dev/null &&
  gen --tokens 20 --temperature 1 --seed 3 --no-cache > "$TMP/plain_t1.txt" 2> /dev/null &&
  cmp -s "$TMP/cached_t1.txt" "$TMP/plain_t1.txt"
ok $? "so is sampled text with one seed ($(text "$TMP/cached_t1.txt"))"
line=$(grep '^kv cache:' "$TMP/cached.err")
want='^kv cache: 576 B/token \(48 floats x 3 layers, float32\) vs 3840 B/token for full K/V: '
echo "$line" | grep -qE "${want}6\.7x smaller\$"
ok $? "the cache line: $line"
speeds='^prefill: [0-9]+ tokens in .* tokens/s\); decode: 19 tokens in .* tokens/s\)$'
grep -qE "$speeds" "$TMP/cached.err"
ok $? "prefill and decode speeds: $(grep '^prefill' "$TMP/cached.err")"
grep -q '^kv cache: none' "$TMP/plain.err"; ok $? "--no-cache says it keeps no cache"

expect_error "a context past max_position_embeddings is a clear error with the cache" \
  "make [0-9]+ positions, past max_position_embeddings 64" gen --tokens 70
gen --tokens 70 --no-cache > /dev/null 2>&1; ok $? "--no-cache slides its window past it"
tap_done
