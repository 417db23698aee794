#!/usr/bin/env bash
# Bad input to the CLI gets a clear error naming the file and the field, never a crash or a
# silent result: each case must exit 1 or 2 and print the expected words.
. "$(dirname "$0")/tap.sh"
expect_error() { # name, pattern, command...
  local name=$1 pattern=$2; shift 2
  "$@" > "$TMP/out" 2>&1
  local rc=$?
  if [ $rc -ge 1 ] && [ $rc -le 2 ] && grep -qiE "$pattern" "$TMP/out"; then ok 0 "$name"
  else ok 1 "$name (exit $rc: $(head -c 300 "$TMP/out"))"; fi
}
in="$FIXTURE/inputs.safetensors"
expect_error "unknown command" "unknown command" "$STARMOE" frobnicate
expect_error "eval without --model" "usage" "$STARMOE" eval --inputs "$in"
expect_error "eval unknown flag" "usage" "$STARMOE" eval --model "$FIXTURE" --inputs "$in" --bogus
expect_error "missing model folder" "nonexistent.*config.json" "$STARMOE" eval --model "$TMP/nonexistent" --inputs "$in"
expect_error "missing inputs file" "nope.safetensors" "$STARMOE" eval --model "$FIXTURE" --inputs "$TMP/nope.safetensors"
expect_error "bad --workers" "workers.*integer" "$STARMOE" eval --model "$FIXTURE" --inputs "$in" --workers 0
expect_error "bad --micro value" "micro.*integer" "$STARMOE" eval --model "$FIXTURE" --inputs "$in" --micro x
expect_error "micro not dividing batch" "micro-batches" "$STARMOE" eval --model "$FIXTURE" --inputs "$in" --micro 3
expect_error "unknown scheduler" "sched|policy" "$STARMOE" eval --model "$FIXTURE" --inputs "$in" --sched nosuch
# a model folder whose config has a typo
mkdir -p "$TMP/typo" && sed 's/"hidden_size"/"hiden_size"/' "$FIXTURE/config.json" > "$TMP/typo/config.json"
cp "$FIXTURE/model.safetensors" "$TMP/typo/"
expect_error "config typo names the field" "config.json.*hiden_size" "$STARMOE" eval --model "$TMP/typo" --inputs "$in"
# a model folder missing a tensor: weights from a smaller vocabulary
mkdir -p "$TMP/vocab" && sed 's/"vocab_size": 256/"vocab_size": 300/' "$FIXTURE/config.json" > "$TMP/vocab/config.json"
cp "$FIXTURE/model.safetensors" "$TMP/vocab/"
expect_error "weight of the wrong shape names the tensor" "embed_tokens.*300" "$STARMOE" eval --model "$TMP/vocab" --inputs "$in"
# truncated weights
mkdir -p "$TMP/trunc" && cp "$FIXTURE/config.json" "$TMP/trunc/"
head -c 5000 "$FIXTURE/model.safetensors" > "$TMP/trunc/model.safetensors"
expect_error "truncated weights" "model.safetensors" "$STARMOE" eval --model "$TMP/trunc" --inputs "$in"
# token ids outside the vocabulary (written by hand: header + I32 data)
python_free_tokens() { # file, value
  local hdr='{"input_ids":{"dtype":"I32","shape":[1,2],"data_offsets":[0,8]},"targets":{"dtype":"I32","shape":[1,2],"data_offsets":[8,16]}}'
  { printf "$(printf '\\x%02x' ${#hdr} 0 0 0 0 0 0 0)"; printf '%s' "$hdr"
    printf '\x01\x00\x00\x00'; printf "$2"; printf '\x01\x00\x00\x00\x02\x00\x00\x00'; } > "$1"
}
python_free_tokens "$TMP/bad_ids.safetensors" '\x00\x10\x00\x00'
expect_error "token id outside the vocabulary" "input_ids.*4096.*vocabulary" "$STARMOE" eval --model "$FIXTURE" --inputs "$TMP/bad_ids.safetensors"
python_free_tokens "$TMP/neg_ids.safetensors" '\xff\xff\xff\xff'
expect_error "negative token id" "input_ids.*-1" "$STARMOE" eval --model "$FIXTURE" --inputs "$TMP/neg_ids.safetensors"
expect_error "bench needs config or model" "usage" "$STARMOE" bench --batch 1 --seq 8
expect_error "bench bad batch" "batch.*integer" "$STARMOE" bench --config "$FIXTURE/config.json" --batch -3 --seq 8
expect_error "bench seq beyond max positions" "max_position_embeddings" "$STARMOE" bench --config "$FIXTURE/config.json" --batch 1 --seq 100000
expect_error "graph needs --dot" "usage" "$STARMOE" graph --config "$FIXTURE/config.json"
tap_done
