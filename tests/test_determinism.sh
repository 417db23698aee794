#!/usr/bin/env bash
# Results do not depend on scheduling: the eval dump (logits, routing, every gradient) is
# byte-identical with 1 and 2 CPU workers and under the eager, lws and dmda policies, for
# one and two micro-batches.
. "$(dirname "$0")/tap.sh"
for micro in 1 2; do
  ref=""
  for sched in eager lws dmda; do
    for w in 1 2; do
      out="$TMP/m$micro-$sched-$w.safetensors"
      "$STARMOE" eval --model "$FIXTURE" --inputs "$FIXTURE/inputs.safetensors" --dump "$out" \
        --micro $micro --workers $w --sched $sched > "$TMP/log" 2>&1
      ok $? "eval runs: micro $micro, $sched, $w workers"
      if [ -z "$ref" ]; then ref=$out; continue; fi
      cmp -s "$ref" "$out"
      ok $? "micro $micro: $sched with $w workers is bitwise identical to $(basename "$ref")"
    done
  done
done
tap_done
