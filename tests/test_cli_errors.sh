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

# ---- hostile input files: a FIFO never blocks (each run under timeout, so a hang fails), a folder,
# a symbolic link loop and an all-whitespace trace are each named for what they are
tiny=${STARMOE_SRCDIR:-..}/examples/tiny.json
mkfifo "$TMP/fifo"
ln -s loop "$TMP/loop"
mkdir -p "$TMP/fifomodel" && cp "$FIXTURE/config.json" "$TMP/fifomodel/" && mkfifo "$TMP/fifomodel/model.safetensors"
printf 'one line of text\nanother line of text\n' > "$TMP/corpus.txt"
not_regular="cannot open: not a regular file \(a FIFO\)"; fifo_msg="fifo: $not_regular"
expect_error "inputs that are a FIFO" "$fifo_msg" timeout 10 "$STARMOE" eval --model "$FIXTURE" --inputs "$TMP/fifo"
expect_error "weights that are a FIFO" "model.safetensors: $not_regular" timeout 10 "$STARMOE" eval --model "$TMP/fifomodel" --inputs "$in"
expect_error "config that is a FIFO" "$fifo_msg" timeout 10 "$STARMOE" bench --config "$TMP/fifo" --batch 1 --seq 8
expect_error "run config that is a FIFO" "$fifo_msg" timeout 10 "$STARMOE" train --config "$TMP/fifo" --out "$TMP/run-fifo-cfg"
expect_error "corpus that is a FIFO" "$fifo_msg" timeout 10 "$STARMOE" train --config "$tiny" --data "$TMP/fifo" --out "$TMP/run-fifo-data"
expect_error "tokenizer that is a FIFO" "$fifo_msg" timeout 10 "$STARMOE" train --config "$tiny" --data "$TMP/corpus.txt" --set "data.tokenizer=\"$TMP/fifo\"" --out "$TMP/run-fifo-tok"
expect_error "policy library that is a FIFO" "sched-lib .*$fifo_msg" timeout 10 "$STARMOE" eval --model "$FIXTURE" --inputs "$in" --sched-lib "$TMP/fifo" --sched x
expect_error "trace that is a FIFO" "$fifo_msg" timeout 10 "$STARMOE" trace summary "$TMP/fifo"
expect_error "config that is a folder" "cannot open: is a folder, expected a file" timeout 10 "$STARMOE" bench --config "$TMP" --batch 1 --seq 8
expect_error "config that is a symbolic link loop" "loop: cannot open: a symbolic link loop" timeout 10 "$STARMOE" bench --config "$TMP/loop" --batch 1 --seq 8
expect_error "corpus that is a symbolic link loop" "loop: a symbolic link loop" timeout 10 "$STARMOE" train --config "$tiny" --data "$TMP/loop" --out "$TMP/run-loop"
printf ' \n\t\n  \n' > "$TMP/blank.json"
expect_error "an all-whitespace trace" "blank.json: only whitespace, no JSON: not a trace" timeout 10 "$STARMOE" trace summary "$TMP/blank.json"
# a --data path longer than the run config holds is refused, not cut to its parent folder
long="$TMP/$(printf 'x%.0s' $(seq 200))/$(printf 'y%.0s' $(seq 200))/$(printf 'z%.0s' $(seq 200))/$(printf 'w%.0s' $(seq 200))/$(printf 'v%.0s' $(seq 200))/corpus.txt"
expect_error "a --data path too long" "train: --data: path too long \([0-9]+ bytes, at most 1023\): .*/corpus.txt" timeout 10 "$STARMOE" train --config "$tiny" --data "$long" --out "$TMP/run-long"
# StarPU variables it would abort on are refused before it starts, naming the variable
for bad in STARPU_NCPU=-1 STARPU_NCPU=abc STARPU_NCUDA=-1 STARPU_CALIBRATE=-5; do
  expect_error "$bad is refused before StarPU starts" "environment variable ${bad%%=*}='${bad#*=}': expected a whole number" timeout 60 env "$bad" "$STARMOE" eval --model "$FIXTURE" --inputs "$in"
done
tap_done
