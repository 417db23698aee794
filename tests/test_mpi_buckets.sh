#!/usr/bin/env bash
# Gradient buckets (issue 10): a 2-rank data-parallel training run of examples/tiny.json (3
# layers, each under a bucket's size) traced with --trace sums its gradients in 5 buckets per
# step, one message each way: one per layer (bucket.*), the head with the final norm, and the
# embedding on its own (grad.*), the same on both ranks; rank 0 sends each running sum once and gets
# each total once, rank 1 the other way round; a bucket leaves rank 0 while its backward still
# runs. Every mpirun is bounded by a timeout.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/mpi.sh"

"${MPIRUN[@]}" -np 2 "$STARMOE" train --config "${STARMOE_SRCDIR:-..}/examples/tiny.json" \
  --steps 2 --set engine.workers=1 --set eval.batches=1 --set parallel.dp=2 --out "$TMP/run" \
  --trace "$TMP/t.json" > "$TMP/out" 2>&1
rc=$?
ok $rc "train over dp 2 with --trace (exit $rc: $(grep -v '^\[starpu' "$TMP/out" | tail -c 300))"

checks "buckets" python3 - "$TMP/t.json" "$TMP/t.rank1.json" << 'EOF'
import collections, json, re, sys
def say(ok, what):
    print(("PASS " if ok else "FAIL ") + what)
want = ["bucket.grad.model.layers.%d." % l for l in (0, 1, 2)] + [
    "bucket.grad.lm_head.weight", "grad.model.embed_tokens.weight"]
def kind(name):
    return next((w for w in want if name.startswith(w)), None)
for r, path in enumerate(sys.argv[1:]):
    ev = json.load(open(path))["traceEvents"]
    steps = collections.defaultdict(list)
    for e in ev:
        if e.get("cat") == "message" and re.match(r"(grad|bucket)\.", e["name"]):
            steps[e["args"]["graph"]].append(e)
    say(len(steps) == 2, f"rank {r}: gradient messages in {len(steps)} step graphs (2 steps)")
    for g, m in sorted(steps.items()):
        dirs = collections.Counter((kind(e["name"]), e["args"]["dir"]) for e in m)
        say(len(m) == 2 * len(want) and all(dirs[(w, d)] == 1 for w in want for d in ("send", "recv")),
            f"rank {r}, graph {g}: one send and one receive per bucket ({len(m)} messages)")
        if r == 0:
            bwd = [e["ts"] + e["dur"] for e in ev if e.get("cat", "").startswith("backward")
                   and e["args"]["graph"] == g]
            first = min(e["ts"] for e in m if e["args"]["dir"] == "send")
            say(bwd and first < max(bwd),
                f"rank 0, graph {g}: the first bucket leaves before the backward ends")
EOF
tap_done
