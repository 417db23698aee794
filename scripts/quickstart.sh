#!/usr/bin/env bash
# Fresh Debian 12 to a first result: install the packages, build, run forward + backward of the
# official-code fixture through StarPU (checked against it), then benchmark the bench model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
shared=${STARMOE_SHARED:-../shared}
fixture=$shared/fixtures/dsv3-tiny-a
export STARPU_SILENT=1
echo "== forward + backward of $fixture as a task graph"
build/starmoe eval --model "$fixture" --inputs "$fixture/inputs.safetensors" --dump build/eval.safetensors
STARMOE_SHARED=$shared build/tests/test_fixture | grep -E "loss|logits|gradients|routing"
echo "== benchmark: configs/bench-6m.json, batch 8 x 128 tokens"
build/starmoe bench --config configs/bench-6m.json --batch 8 --seq 128 --micro 2 --reps 5
