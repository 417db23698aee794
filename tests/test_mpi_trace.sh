#!/usr/bin/env bash
# Rank traces (issue 10): a 2-rank expert-parallel training run of examples/tiny.json traced with
# --trace writes one trace per rank (rank 1's in PATH.rank1.json), each checked by
# tests/trace_check, with pid = rank and its messages as slices on lanes per direction and peer
# (one for receives, one per send in flight at once; with peer, tag and bytes); rank 0's sends
# are rank 1's receives (same tags, same bytes); the clock offsets to rank 0 measured at start-up
# and at the end agree to within their error (one host: no drift); in the merged timeline no
# receive ends before its send starts; trace summary gives per rank communication = overlapped +
# exposed, as text and JSON; trace html of the merged trace stacks the ranks, each rank's worker
# lanes followed by its lanes of sends and receives holding every message, and headless Chromium
# draws message boxes there. eval over ep 2 writes a file per rank too. A one-rank trace has no
# messages and no clock offset. Every mpirun is bounded by a timeout.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/mpi.sh"
. "$(dirname "$0")/browser.sh"
check_tool=${TRACE_CHECK:-./tests/trace_check}
TRAIN=("$STARMOE" train --config "${STARMOE_SRCDIR:-..}/examples/tiny.json" --steps 2
       --set engine.workers=1 --set eval.batches=1)

"${MPIRUN[@]}" -np 2 "${TRAIN[@]}" --set parallel.ep=2 --out "$TMP/run" \
  --trace "$TMP/t.json" > "$TMP/out" 2>&1
rc=$?
# (and no sanitizer complained, under --enable-sanitizers)
clean() { ! grep -qE "ERROR: (Leak|Address|UndefinedBehavior)Sanitizer|runtime error:" "$1"; }
[ $rc -eq 0 ] && grep -qF "trace: $TMP/t.json (rank 0; rank 1: $TMP/t.rank1.json" "$TMP/out" &&
  clean "$TMP/out"
ok $? "train over ep 2 with --trace names both ranks' files (exit $rc: $(grep -v '^\[starpu' \
  "$TMP/out" | tail -c 300))"
for r in 0 1; do
  f=$TMP/t.json; [ $r -gt 0 ] && f=$TMP/t.rank$r.json
  "$STARMOE" trace summary "$f" --format json > "$TMP/s$r.json"
  ok $? "trace summary of rank $r's trace"
  checks "rank $r" "$check_tool" "$f" "$TMP/s$r.json"
done

# the rank traces against each other: pids, lanes, messages matched by step graph and tag,
# clocks, order on the merged timeline
python3 - "$TMP/t.json" "$TMP/t.rank1.json" > "$TMP/pairs.txt" 2>&1 << 'EOF'
import json, re, sys
ranks = [json.load(open(p)) for p in sys.argv[1:]]
def say(ok, what):
    print(("PASS " if ok else "FAIL ") + what)
msgs, lanes, clock = [], [], []
for r, t in enumerate(ranks):
    ev = t["traceEvents"]
    say(t["otherData"]["rank"] == str(r) and all(e.get("pid", r) == r for e in ev),
        f"rank {r}: metadata rank {r}, every event's pid {r}")
    names = {e["tid"]: e["args"]["name"] for e in ev if e.get("name") == "thread_name"}
    m = [e for e in ev if e.get("cat") == "message"]
    msgs.append(m)
    say(len(m) > 0 and all(e["args"]["peer"] == 1 - r and e["args"]["bytes"] > 0 for e in m),
        f"rank {r}: {len(m)} messages, each with rank {1 - r} as peer and bytes > 0")
    used = {names.get(e["tid"]) for e in m}
    recv, send = "recv from rank %d" % (1 - r), "send to rank %d" % (1 - r)
    say(recv in used and send in used and
        all(u == recv or re.fullmatch(re.escape(send) + r"( \([0-9]+\))?", u) for u in used),
        f"rank {r}: message lanes '{recv}' and '{send}' (more for sends in flight together: "
        f"{len(used) - 1} lanes of sends)")
    check = [e["args"] for e in ev if e.get("name") == "clock check"]
    clock.append((float(t["otherData"].get("clock_rtt_us", 0)), check))
def key(e):
    return (e["args"]["graph"], e["args"]["tag"])
def by_key(m, d):
    return {key(e): e for e in m if e["args"]["dir"] == d}
for src in (0, 1):
    sends, recvs = by_key(msgs[src], "send"), by_key(msgs[1 - src], "recv")
    same = sends.keys() == recvs.keys() and len(sends) > 0
    say(same and all(sends[k]["args"]["bytes"] == recvs[k]["args"]["bytes"] for k in sends),
        f"rank {src}'s {len(sends)} sends are rank {1 - src}'s {len(recvs)} receives "
        "(step graph, tag and bytes)")
    # rank 1's times are exact to within half the round trip of its offset's measurement
    slack = clock[1][0] / 2 + 1e-3
    early = [k for k in sends if k in recvs and
             recvs[k]["ts"] + recvs[k]["dur"] < sends[k]["ts"] - slack]
    say(same and not early, f"merged timeline: no receive on rank {1 - src} ends before its "
        f"send on rank {src} starts ({len(early)} do, slack {slack:.1f} us)")
rtt, check = clock[1]
c = check[0] if len(check) == 1 else {}
say(rtt > 0 and c.get("rtt_us", 0) > 0 and
    abs(c.get("drift_us", 1e9)) <= c.get("error_us", 0) + 1e-3,
    "rank 1's clock offset at the end agrees with the start-up one to within their error "
    f"(drift {c.get('drift_us')} us, error {c.get('error_us')} us)")
EOF
ok $? "the rank traces compare ($(tail -c 300 "$TMP/pairs.txt"))"
checks "ranks" cat "$TMP/pairs.txt"

# one timeline, one summary
"$STARMOE" trace merge "$TMP/t.json" "$TMP/t.rank1.json" -o "$TMP/all.json" > /dev/null
ok $? "trace merge of the two rank traces"
grep -q '"pid":0,' "$TMP/all.json" && grep -q '"pid":1,' "$TMP/all.json"
ok $? "the merged trace holds pid 0 and pid 1"
"$STARMOE" trace summary "$TMP/all.json" > "$TMP/all.txt" &&
  "$STARMOE" trace summary "$TMP/all.json" --format json > "$TMP/all.sum"
ok $? "trace summary of the merged trace"
grep -q "messages between ranks" "$TMP/all.txt" && grep -qE '^0 +[0-9]+ +[0-9]+ ' "$TMP/all.txt" &&
  grep -qE '^1 +[0-9]+ +[0-9]+ ' "$TMP/all.txt"
ok $? "the summary prints a line of messages per rank"
python3 - "$TMP/all.sum" << 'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["ranks"]
sys.exit(not (len(r) == 2 and [x["rank"] for x in r] == [0, 1] and
              all(x["communication_us"] > 0 and x["overlapped_us"] >= 0 and
                  x["exposed_us"] >= 0 and
                  abs(x["overlapped_us"] + x["exposed_us"] - x["communication_us"]) <=
                  1e-9 * x["communication_us"] + 1e-6 for x in r)))
EOF
ok $? "per rank in JSON: communication > 0 = overlapped + exposed"
"$STARMOE" trace html "$TMP/all.json" -o "$TMP/all.html" > /dev/null
ok $? "trace html of the merged trace"
checks "merged report" report_lanes "$TMP/all.html" "$TMP/all.json"
if command -v chromium > /dev/null; then
  page_ok "$TMP/all.html" && [ "$(body_attr data-comm-lanes)" -ge 4 ] &&
    [ "$(body_attr data-comm-boxes)" -ge 1 ]
  ok $? "Chromium draws 2 lanes of messages per rank with message boxes in them, no script \
error ($(cat "$TMP/body"))"
else
  skip "chromium not installed"
fi

# eval over ep 2: each rank its own file too (they used to share one)
"${MPIRUN[@]}" -np 2 "$STARMOE" eval --model "$FIXTURE" --inputs "$FIXTURE/inputs.safetensors" \
  --ep 2 --trace "$TMP/eval.json" > "$TMP/out" 2>&1
rc=$?
[ $rc -eq 0 ] && grep -q '"pid":0,' "$TMP/eval.json" && ! grep -q '"pid":1,' "$TMP/eval.json" &&
  grep -q '"pid":1,"tid":1000,' "$TMP/eval.rank1.json" && clean "$TMP/out" &&
  grep -qF "trace $TMP/eval.json (rank 0; rank 1: $TMP/eval.rank1.json" "$TMP/out"
ok $? "eval --ep 2 --trace: rank 0's file and rank 1's, each with its messages, both named \
(exit $rc: $(grep -o 'trace .*' "$TMP/out" | head -c 200))"
checks "eval rank 1" "$check_tool" "$TMP/eval.rank1.json"

# one rank: no messages, no clock offset, rank 0
"${TRAIN[@]}" --out "$TMP/one" --trace "$TMP/one.json" > "$TMP/out1" 2>&1 &&
  grep -q "^trace: $TMP/one.json\$" "$TMP/out1"
ok $? "train on one rank with --trace says the one file"
! grep -qE '"cat":"message"|clock_offset_us|"clock check"' "$TMP/one.json" &&
  grep -q '"rank":"0"' "$TMP/one.json"
ok $? "a one-rank trace has no messages and no clock offset"
"$STARMOE" trace summary "$TMP/one.json" | grep -q "messages between ranks"
[ $? -ne 0 ]; ok $? "its summary has no per-rank messages"
tap_done
