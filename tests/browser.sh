# Headless Chromium for the HTML report tests (sourced after tap.sh): chromium_cmd runs it on
# a page with a fresh profile, bounded by a timeout; page_ok says whether a report page drew its
# lanes and task boxes without a script error (its <body> goes to $TMP/body); report_lanes checks
# the order of a report's lanes against its trace without a browser.
chromium_cmd() { # output flags..., page
  local profile; profile=$(mktemp -d "$TMP/chromium.XXXXXX")
  timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --window-size=1400,900 "$@" 2> /dev/null
}
# a page passes when its script drew lanes and boxes and reported no error
page_ok() { # page
  local body; body=$(chromium_cmd --dump-dom "file://$(realpath "$1")" | grep -o '<body[^>]*>')
  echo "$body" > "$TMP/body"
  echo "$body" | grep -qE 'data-lanes="[1-9]' && echo "$body" | grep -qE 'data-boxes="[1-9]' &&
    ! echo "$body" | grep -q 'data-error='
}
# body_attr NAME: the value of NAME (e.g. data-comm-lanes) in the <body> page_ok kept
body_attr() { sed -n "s/.* $1=\"\([^\"]*\)\".*/\1/p" "$TMP/body"; }

# report_lanes PAGE TRACE: "PASS what" / "FAIL what" lines (for checks) on the timeline of a
# report against its trace: lanes grouped by process (pid ascending), each process's worker
# lanes and then, when it has messages, its lanes "P: MPI send" and "P: MPI recv" ("P: " only
# with several processes); every task on a worker lane of its process, every message on its
# process's lane of its direction. The lane names go to $TMP/lanes, one a line.
report_lanes() {
  sed -n '/^<script id="trace-data"/,/<\/script>$/p' "$1" |
    sed '1s/^<script[^>]*>//; $s/<\/script>$//' > "$TMP/report-data.json"
  python3 - "$TMP/report-data.json" "$2" "$TMP/lanes" << 'PY'
import json, re, sys
def say(ok, what):
    print(("PASS " if ok else "FAIL ") + what)
sys.excepthook = lambda kind, e, tb: say(False, f"the report's timeline data and the trace read "
                                                f"({kind.__name__}: {e})")
D, trace = (json.load(open(p)) for p in sys.argv[1:3])
lanes, pids, comm = D["lanes"], D["lane_pids"], D["comm"]
open(sys.argv[3], "w").write("".join(n + "\n" for n in lanes))
events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
msgs = [e for e in events if e.get("cat") == "message"]
tasks = [e for e in events if e.get("cat") != "message"]
multi = len(set(pids)) > 1
pre = lambda p: f"{p}: " if multi else ""
say(len(lanes) == len(pids) == len(comm) and pids == sorted(pids),
    f"lanes grouped by process, ascending: {sorted(set(pids))}")
talk = sorted({e["pid"] for e in msgs})
grouped = not any(re.search("(send to|recv from) rank", n) for n in lanes)
for p in sorted(set(pids)):
    rows = [(comm[i], lanes[i]) for i in range(len(lanes)) if pids[i] == p]
    ends = [(1, pre(p) + "MPI send"), (1, pre(p) + "MPI recv")] if p in talk else []
    workers = rows[:len(rows) - len(ends)]
    grouped &= rows[len(workers):] == ends and all(c == 0 and n.startswith(pre(p))
                                                   for c, n in workers)
say(grouped, f"each process's workers, then its lanes MPI send and MPI recv when it has "
    f"messages (processes with messages: {talk}; {len(lanes)} lanes)")
F, S = D["fields"], D["slices"]
page = sorted((pids[S[i]], comm[S[i]], round(S[i + 3], 3)) for i in range(0, len(S), F))
say(page == sorted((e["pid"], 0, round(e["ts"], 3)) for e in tasks),
    f"each of the {len(tasks)} tasks on a worker lane of its process")
MF, M = D["msg_fields"], D["msgs"]
page = sorted((pids[M[i]], lanes[M[i]], D["msg_names"][M[i + 1]], round(M[i + 3], 3),
               M[i + 5], M[i + 6], M[i + 7]) for i in range(0, len(M), MF))
say(page == sorted((e["pid"], pre(e["pid"]) + ("MPI send" if e["args"]["dir"] == "send" else
                                                "MPI recv"), e["name"], round(e["ts"], 3),
                    e["args"]["peer"], e["args"].get("bytes", 0), e["args"].get("tag", -1))
                   for e in msgs),
    f"each of the {len(msgs)} messages on its process's lane of its direction, with its name, "
    "peer, bytes and tag")
PY
}
