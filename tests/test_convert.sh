#!/usr/bin/env bash
# starmoe convert: the fixture to FP8 (linear weights F8_E4M3 with 128x128 _scale_inv, the rest
# kept, quantization_config) and back to F32 and BF16; every converted folder evaluates, the FP8
# logits stay close to the original's, F32 of FP8 gives its logits bit for bit, F32 -> FP8
# gives the codes back; a sharded source keeps its shards; bad scales and a non-empty output
# folder are refused with errors naming file and tensor.
. "$(dirname "$0")/tap.sh"
# st.py: a minimal safetensors reader and writer for the checks below
cat > "$TMP/st.py" <<'EOF'
import json, math, struct, sys
def load(p):
    f = open(p, "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
    h.pop("__metadata__", None); data = f.read()
    return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in h.items()}
def save(p, t):
    h, off, blobs = {}, 0, []
    for k in sorted(t):
        d, s, b = t[k]; h[k] = {"dtype": d, "shape": s, "data_offsets": [off, off + len(b)]}
        off += len(b); blobs.append(b)
    j = json.dumps(h).encode(); j += b" " * (-len(j) % 8)
    open(p, "wb").write(struct.pack("<Q", len(j)) + j + b"".join(blobs))
def floats(b): return struct.unpack("<%df" % (len(b) // 4), b)
LINEAR = ("q_a_proj", "q_b_proj", "q_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj",
          "gate_proj", "up_proj", "down_proj")
def linear(k): return k.endswith(".weight") and k.split(".")[-2] in LINEAR
EOF
st() { PYTHONPATH=$TMP python3 - "$@"; }
convert() { "$STARMOE" convert --model "$1" --to "$2" -o "$3" > "$TMP/convert.log" 2>&1; }
evaluate() { # FOLDER DUMP
  "$STARMOE" eval --model "$1" --inputs "$FIXTURE/inputs.safetensors" --forward-only \
    --dump "$2" > "$TMP/eval.log" 2>&1
}

convert "$FIXTURE" fp8 "$TMP/fp8"
ok $? "the fixture converts to fp8 ($(head -c 200 "$TMP/convert.log"))"
st "$FIXTURE/model.safetensors" "$TMP/fp8/model.safetensors" > "$TMP/layout" <<'EOF'
import sys; from st import *
src, out = load(sys.argv[1]), load(sys.argv[2]); n = 0; bad = []
for k, (d, s, b) in src.items():
    if linear(k) and len(s) == 2:
        n += 1; sd, ss, sb = out.get(k + "_scale_inv", (None, None, None))
        grid = [(s[0] + 127) // 128, (s[1] + 127) // 128]
        if out[k][0] != "F8_E4M3" or out[k][1] != s or sd != "F32" or ss != grid: bad.append(k)
    elif out.get(k) != (d, s, b) or k + "_scale_inv" in out: bad.append(k)
extra = set(out) - set(src) - {k + "_scale_inv" for k in src}
print(n, len(bad) + len(extra), " ".join(bad[:3] + sorted(extra)[:3]))
EOF
read -r nlin nbad what < "$TMP/layout"
[ "${nlin:-0}" -gt 20 ] && [ "$nbad" = 0 ]
ok $? "$nlin linear weights are F8_E4M3 with F32 _scale_inv [ceil(r/128), ceil(c/128)], the rest
  unchanged ($nbad wrong: $what)"
grep -q '"quant_method": "fp8"' "$TMP/fp8/config.json" &&
  grep -A3 '"weight_block_size"' "$TMP/fp8/config.json" | grep -q 128
ok $? "config.json gains quantization_config fp8, weight_block_size [128, 128]"

evaluate "$FIXTURE" "$TMP/ref.st"; ok $? "eval of the original folder runs"
evaluate "$TMP/fp8" "$TMP/fp8.st"
ok $? "eval of the fp8 folder runs ($(head -c 100 "$TMP/eval.log"))"
# E4M3 keeps 3 mantissa bits: rounding moves each weight by at most 2^-4 of itself (about 2.5%
# rms), and the logits, sums over many such weights, by less: their relative (Frobenius) error
# must stay below 2^-4 (measured 4.3% on the fixture, routing changes included).
st "$TMP/ref.st" "$TMP/fp8.st" > "$TMP/close" <<'EOF'
import math, sys; from st import *
a, b = floats(load(sys.argv[1])["logits"][2]), floats(load(sys.argv[2])["logits"][2])
d = [x - y for x, y in zip(a, b)]
print(max(map(abs, d)), max(map(abs, a)), math.sqrt(sum(x * x for x in d) / sum(x * x for x in a)))
EOF
read -r diff scale rel < "$TMP/close"
awk -v r="$rel" 'BEGIN { exit !(r != "" && r <= 0.0625) }'
ok $? "fp8 logits close to the original's: relative error $rel <= 2^-4 (max |diff| $diff,
  max |logit| $scale)"

convert "$TMP/fp8" f32 "$TMP/f32"; ok $? "fp8 converts back to f32"
evaluate "$TMP/f32" "$TMP/f32.st"; ok $? "eval of the f32 folder runs"
st "$TMP/f32/model.safetensors" "$TMP/fp8.st" "$TMP/f32.st" > "$TMP/f32chk" <<'EOF'
import sys; from st import *
t = load(sys.argv[1])
print(all(d == "F32" for d, s, b in t.values()), not any(k.endswith("_scale_inv") for k in t),
      load(sys.argv[2])["logits"] == load(sys.argv[3])["logits"])
EOF
[ "$(cat "$TMP/f32chk")" = "True True True" ] &&
  ! grep -q quantization_config "$TMP/f32/config.json"
ok $? "f32: every tensor F32, no scales, no quantization_config, logits bitwise the fp8
  folder's ($(cat "$TMP/f32chk"))"
convert "$TMP/fp8" bf16 "$TMP/bf16" && evaluate "$TMP/bf16" "$TMP/bf16.st"
ok $? "fp8 converts to bf16 and evaluates"
st "$TMP/bf16/model.safetensors" > "$TMP/bf16chk" <<'EOF'
import sys; from st import *
print(all(d == "BF16" for d, s, b in load(sys.argv[1]).values()))
EOF
grep -qx True "$TMP/bf16chk" && grep -q '"torch_dtype": "bfloat16"' "$TMP/bf16/config.json"
ok $? "bf16: every tensor BF16, torch_dtype bfloat16"

# fp8 -> f32 -> fp8: dequantised weights quantise to the same codes; a scale s comes back as
# fl(fl(448 s) / 448), which is s or a neighbour of it (about 1 in 10 float significands)
convert "$TMP/f32" fp8 "$TMP/fp8b"; ok $? "f32 converts to fp8 again"
st "$TMP/fp8/model.safetensors" "$TMP/fp8b/model.safetensors" > "$TMP/idem" <<'EOF'
import sys, struct; from st import *
a, b = load(sys.argv[1]), load(sys.argv[2]); codes = ulp = same = 0
for k in a:
    if a[k][0] == "F8_E4M3": codes += a[k] != b[k]
    elif k.endswith("_scale_inv"):
        n = len(a[k][2]) // 4
        ia, ib = struct.unpack("<%di" % n, a[k][2]), struct.unpack("<%di" % n, b[k][2])
        same += ia == ib; ulp += sum(abs(x - y) > 1 for x, y in zip(ia, ib))
print(codes, ulp, same, a.keys() == b.keys())
EOF
read -r codes ulp same samekeys < "$TMP/idem"
[ "$codes" = 0 ] && [ "$ulp" = 0 ] && [ "$samekeys" = True ]
ok $? "fp8 -> f32 -> fp8: identical codes ($codes differ), scales within 1 ulp
  ($same of $nlin identical)"
convert "$TMP/fp8" fp8 "$TMP/fp8c" &&
  cmp -s "$TMP/fp8/model.safetensors" "$TMP/fp8c/model.safetensors"
ok $? "fp8 -> fp8 copies the codes and scales: the same file"

# a sharded source keeps its shards and gives the same model
mkdir -p "$TMP/sharded"
cp "$FIXTURE/config.json" "$TMP/sharded/"
st "$FIXTURE/model.safetensors" "$TMP/sharded" <<'EOF'
import json, sys; from st import *
t = load(sys.argv[1]); names = sorted(t); half = len(names) // 2; wm = {}
for i, part in enumerate((names[:half], names[half:])):
    f = "model-%05d-of-00002.safetensors" % (i + 1)
    save(sys.argv[2] + "/" + f, {k: t[k] for k in part})
    wm.update({k: f for k in part})
json.dump({"metadata": {}, "weight_map": wm},
          open(sys.argv[2] + "/model.safetensors.index.json", "w"))
EOF
echo '{"tokenizer": "stand-in"}' > "$TMP/sharded/tokenizer.json"
convert "$TMP/sharded" fp8 "$TMP/sfp8" && evaluate "$TMP/sfp8" "$TMP/sfp8.st"
ok $? "a sharded folder converts to fp8 and evaluates"
[ -f "$TMP/sfp8/model-00001-of-00002.safetensors" ] &&
  [ -f "$TMP/sfp8/model-00002-of-00002.safetensors" ] &&
  grep -q '"model-00002-of-00002.safetensors"' "$TMP/sfp8/model.safetensors.index.json" &&
  cmp -s "$TMP/sharded/tokenizer.json" "$TMP/sfp8/tokenizer.json"
ok $? "its shards keep their names, with an index, and the tokenizer file is copied"
st "$TMP/fp8.st" "$TMP/sfp8.st" > "$TMP/shardchk" <<'EOF'
import sys; from st import *
print(load(sys.argv[1])["logits"] == load(sys.argv[2])["logits"])
EOF
grep -qx True "$TMP/shardchk"; ok $? "sharded and single-file fp8 conversions give the same logits"

# errors
expect_error "a non-empty output folder is refused" "fp8: exists and is not empty" \
  "$STARMOE" convert --model "$FIXTURE" --to fp8 -o "$TMP/fp8"
expect_error "an unknown target is refused" "target 'fp16': expected fp8, bf16 or f32" \
  "$STARMOE" convert --model "$FIXTURE" --to fp16 -o "$TMP/x"
o=model.layers.0.self_attn.o_proj.weight
bad() { # NAME PYTHON-EDIT PATTERN: the edited fp8 folder does not convert to f32
  rm -rf "$TMP/bad" "$TMP/badout"; cp -r "$TMP/fp8" "$TMP/bad"
  st "$TMP/bad/model.safetensors" <<EOF
import struct, sys; from st import *
t = load(sys.argv[1]); k = "model.layers.0.self_attn.o_proj.weight_scale_inv"
$2
save(sys.argv[1], t)
EOF
  expect_error "$1" "$3" "$STARMOE" convert --model "$TMP/bad" --to f32 -o "$TMP/badout"
  [ ! -e "$TMP/badout" ] && ! ls -d "$TMP"/badout.tmp.* > /dev/null 2>&1
  ok $? "$1: no output folder left, not even a temporary one"
}
bad "an FP8 weight without its scale is refused" "del t[k]" \
  "model.safetensors: tensor '$o': F8_E4M3 weight without its scale '${o}_scale_inv'"
bad "a scale of the wrong shape is refused" 't[k] = ("F32", [1, 2], t[k][2] * 2)' \
  "model.safetensors: tensor '${o}_scale_inv'.*shape"
bad "a non-finite scale is refused" 't[k] = ("F32", [1, 1], struct.pack("<f", float("inf")))' \
  "model.safetensors: tensor '${o}_scale_inv': scale \[0, 0\] is inf, expected a finite number"
tap_done
