#!/usr/bin/env bash
# Fresh Debian 12 to a trained model: install the packages, build, train the TINY DeepSeek-V3
# model on the default corpus (Debian's fortunes and fortunes-zh) for a few minutes, then print
# generated samples. The run folder is runs/tiny (metrics.jsonl, loss.svg, checkpoints).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
export STARPU_SILENT=1
out=${STARMOE_OUT:-runs/tiny}
rm -rf "$out"
build/starmoe train --config examples/tiny.json --out "$out"
echo "== samples from $out"
build/starmoe generate --ckpt "$out" --prompt "The " --tokens 60 --seed 1
build/starmoe generate --ckpt "$out" --prompt "人生" --tokens 40 --seed 2
echo "== loss curve: $out/loss.svg, metrics: $out/metrics.jsonl"
