#!/usr/bin/env bash
# Multi-Token Prediction end to end (examples/tiny.json with num_nextn_predict_layers 1): the
# step line and metrics.jsonl report the main and MTP losses and loss = main + lambda x mtp
# (train.mtp_lambda); validation stays the main model's; checkpoints hold the module under its
# Hugging Face names with the copies of the embedding and the head, resume bit for bit, and
# load in eval; a copy that differs is refused; a folder without MTP tensors loads with a
# warning; schedulers, micro-batches and in-process pipelines give the same numbers; data and
# expert parallelism on 2 ranks give one rank's losses bit for bit; pipeline ranks are refused.
. "$(dirname "$0")/tap.sh"
src=${STARMOE_SRCDIR:-..}
mkdir -p "$TMP/corpus"
cp "$src"/model/*.c "$src"/io/*.c "$TMP/corpus/"
small=(--set train.batch_size=4 --set train.seq_len=32 --set train.micro_batches=2
       --set train.steps=4 --set train.warmup_steps=2 --set eval.every=2 --set eval.batches=2
       --set checkpoint.every=2 --set log.every=1 --set data.val_fraction=0.1
       --set data.doc_separator=\"\" --set model.num_nextn_predict_layers=1)
train() { "$STARMOE" train --config "$src/examples/tiny.json" --data "$TMP/corpus" "${small[@]}" "$@"; }
# field RUN KEY: KEY of every train line of RUN's metrics.jsonl as exact doubles, one a line
field() {
  grep '"kind":"train"' "$1/metrics.jsonl" | sed "s/.*\"$2\":\([^,}]*\).*/\1/" |
    awk '{printf "%.17g\n", $1}'
}
# total_is RUN LAMBDA: every train line's loss is loss_main + LAMBDA x loss_mtp (within 1e-5)
total_is() {
  paste <(field "$1" loss) <(field "$1" loss_main) <(field "$1" loss_mtp) | awk -v l="$2" '
    { n++; d = $1 - ($2 + l * $3); if (d < 0) d = -d; if (NF != 3 || d > 1e-5 * $1) bad++ }
    END { exit !(n > 0 && !bad) }'
}
# header FILE: the tensor names of a safetensors file
header() { python3 -c 'import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]
print("\n".join(k for k in json.loads(f.read(n)) if k != "__metadata__"))' "$1"; }

train --out "$TMP/a" > "$TMP/a.log" 2>&1
ok $? "4 training steps with one MTP module run"
[ "$(grep -cE '^step .*\| loss [0-9.]+ \(main [0-9.]+, mtp [0-9.]+\) \|' "$TMP/a.log")" -eq 4 ]
ok $? "each step line reports the main and the MTP loss ($(grep -m1 '^step' "$TMP/a.log" | cut -c1-60))"
total_is "$TMP/a" 0.3; ok $? "metrics.jsonl: loss = loss_main + 0.3 x loss_mtp on every train line"
! grep '"kind":"eval"' "$TMP/a/metrics.jsonl" | grep -q mtp; ok $? "validation lines stay the main model's"
train --out "$TMP/l" --set train.mtp_lambda=0.5 --steps 2 > /dev/null 2>&1 && total_is "$TMP/l" 0.5
ok $? "train.mtp_lambda 0.5: loss = loss_main + 0.5 x loss_mtp"

names=$(header "$TMP/a/step-000004/model.safetensors")
n=0
for t in enorm hnorm eh_proj shared_head.norm embed_tokens shared_head.head input_layernorm \
         self_attn.kv_b_proj mlp.gate mlp.experts.15.down_proj; do
  echo "$names" | grep -qx "model.layers.3.$t.weight" && n=$((n + 1))
done
[ $n -eq 10 ]; ok $? "the checkpoint holds the module under layer 3's Hugging Face names, copies included ($n of 10)"
python3 - "$TMP/a/step-000004/model.safetensors" > "$TMP/copies" <<'EOF'
import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
data = f.read()
def raw(k): b, e = h[k]["data_offsets"]; return data[b:e]
print(raw("model.layers.3.embed_tokens.weight") == raw("model.embed_tokens.weight") and
      raw("model.layers.3.shared_head.head.weight") == raw("lm_head.weight"))
EOF
grep -qx True "$TMP/copies"; ok $? "the copies repeat the embedding and the head bit for bit"

train --out "$TMP/r" --steps 2 > /dev/null 2>&1 && train --out "$TMP/r" --resume > "$TMP/r.log" 2>&1
[ $? -eq 0 ] && [ "$(losses "$TMP/a")" = "$(losses "$TMP/r")" ] &&
  [ "$(field "$TMP/a" loss_mtp)" = "$(field "$TMP/r" loss_mtp)" ] &&
  cmp -s "$TMP/a/step-000004/model.safetensors" "$TMP/r/step-000004/model.safetensors"
ok $? "2 steps, then --resume to 4: the losses and final weights of one run bit for bit"

# the MTP depth may change on resume: a run without modules gains one (freshly initialised, with
# a warning), a run with one drops it
train --out "$TMP/add" --steps 2 --set model.num_nextn_predict_layers=0 > /dev/null 2>&1 &&
  train --out "$TMP/add" --resume > "$TMP/add.log" 2>&1 &&
  grep -q "resume: model.num_nextn_predict_layers is 1 (the run had 0)" "$TMP/add.log" &&
  grep -q "resume: warning: .* has no tensors for [0-9]* of the MTP modules' parameters" "$TMP/add.log" &&
  [ "$(grep -c '"loss_mtp"' "$TMP/add/metrics.jsonl")" -eq 2 ]
ok $? "a run without MTP resumed with one: a warning, then 2 steps with MTP losses"
train --out "$TMP/drop" --steps 2 > /dev/null 2>&1 &&
  train --out "$TMP/drop" --resume --set model.num_nextn_predict_layers=0 > "$TMP/drop.log" 2>&1 &&
  grep -q "resume: model.num_nextn_predict_layers is 0 (the run had 1)" "$TMP/drop.log" &&
  ! header "$TMP/drop/step-000004/model.safetensors" | grep -q "model.layers.3" &&
  [ "$(losses "$TMP/drop" | wc -l)" -eq 4 ]
ok $? "a run with MTP resumed with num_nextn_predict_layers 0 drops the module"

out=$("$STARMOE" eval --model "$TMP/a/step-000004" --inputs "$FIXTURE/inputs.safetensors" 2>&1)
echo "$out" | grep -qE '^loss [0-9.]+  \(main [0-9.]+, mtp [0-9.]+\)'
ok $? "eval of the checkpoint reports the main and MTP losses ($out)"
out1=$("$STARMOE" eval --model "$TMP/a/step-000004" --inputs "$FIXTURE/inputs.safetensors" --mtp-lambda 1 2>&1)
echo "$out1" | awk '{ gsub(/[(),]/, ""); d = $2 - ($4 + $6); exit !(d < 1e-5 && d > -1e-5) }'
ok $? "eval --mtp-lambda 1: loss = main + mtp ($out1)"

cp -r "$TMP/a/step-000004" "$TMP/bad"
python3 - "$TMP/bad/model.safetensors" <<'EOF'
import json, struct, sys
p = sys.argv[1]; f = open(p, "r+b"); n = struct.unpack("<Q", f.read(8))[0]
h = json.loads(f.read(n)); b = h["model.layers.3.shared_head.head.weight"]["data_offsets"][0]
f.seek(8 + n + b + 4 * 7); f.write(struct.pack("<f", 0.125))
EOF
expect_error "a copy of the head that differs is refused, naming both tensors" \
  "model.layers.3.shared_head.head.weight differs from lm_head.weight at element 7" \
  "$STARMOE" eval --model "$TMP/bad" --inputs "$FIXTURE/inputs.safetensors"

cp -r "$FIXTURE" "$TMP/nomtp"
python3 - "$TMP/nomtp/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1])); c["num_nextn_predict_layers"] = 1
json.dump(c, open(sys.argv[1], "w"))
EOF
"$STARMOE" eval --model "$TMP/nomtp" --inputs "$FIXTURE/inputs.safetensors" > "$TMP/out" 2>&1
[ $? -eq 0 ] && grep -q "warning: .*nomtp has no MTP tensors: its 1 MTP module(s) start freshly initialised" "$TMP/out" &&
  grep -qE '^loss .*\(main .*, mtp ' "$TMP/out"
ok $? "a folder without MTP tensors loads with a warning and fresh modules ($(head -c 300 "$TMP/out"))"

# the same numbers whatever the scheduler, micro-batches or in-process pipeline
MTP=$src/tests/fixtures/mtp-d1
for s in lws eager dmda; do
  "$STARMOE" eval --model "$MTP" --inputs "$MTP/inputs.safetensors" --deterministic --micro 2 \
    --sched $s --workers 2 --dump "$TMP/$s.safetensors" > /dev/null 2>&1 || echo "$s failed"
done > "$TMP/fails"
[ ! -s "$TMP/fails" ] && cmp -s "$TMP/lws.safetensors" "$TMP/eager.safetensors" &&
  cmp -s "$TMP/lws.safetensors" "$TMP/dmda.safetensors"
ok $? "eval of the MTP fixture: lws, eager and dmda dump the same bytes ($(cat "$TMP/fails"))"
det=(--set engine.deterministic=true --set train.micro_batches=4 --steps 3 --set eval.every=0)
train --out "$TMP/d" "${det[@]}" > /dev/null 2>&1
for p in 1f1b zbh1 dualpipe; do
  train --out "$TMP/$p" "${det[@]}" --set engine.sched=$p --set engine.pp=2 > "$TMP/$p.log" 2>&1 &&
    [ "$(losses "$TMP/d")" = "$(losses "$TMP/$p")" ] &&
    [ "$(field "$TMP/d" loss_mtp)" = "$(field "$TMP/$p" loss_mtp)" ]
  ok $? "$p over 2 in-process pipeline ranks: the losses of the plain run bit for bit \
($(grep -m1 -i error "$TMP/$p.log") $(losses "$TMP/d" | tr '\n' ' ') vs $(losses "$TMP/$p" | tr '\n' ' '))"
done

if command -v mpirun > /dev/null; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  MPIRUN=(timeout -k 5 240 mpirun --oversubscribe --bind-to none -np 2)
  for p in dp ep; do
    "${MPIRUN[@]}" "$STARMOE" train --config "$src/examples/tiny.json" --data "$TMP/corpus" \
      "${small[@]}" "${det[@]}" --set train.micro_batches=2 --set parallel.$p=2 \
      --out "$TMP/$p" > "$TMP/$p.log" 2>&1 &&
      [ "$(losses "$TMP/d")" = "$(losses "$TMP/$p")" ] &&
      [ "$(field "$TMP/d" loss_mtp)" = "$(field "$TMP/$p" loss_mtp)" ]
    ok $? "$p 2 on 2 ranks (2 micro-batches each): the main and MTP losses of one rank (4) bit \
for bit ($(grep -m1 -i error "$TMP/$p.log"))"
  done
  expect_error "pipeline ranks with MTP are refused with the way out" \
    "Multi-Token Prediction .* is not built: train with parallel.pp 1" \
    "${MPIRUN[@]}" "$STARMOE" train --config "$src/examples/tiny.json" --data "$TMP/corpus" \
    "${small[@]}" --set parallel.pp=2 --set engine.sched=1f1b --out "$TMP/pp"
fi
tap_done
