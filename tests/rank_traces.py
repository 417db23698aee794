"""What the pipeline-rank trace checks share: PASS/FAIL lines for tests/tap.sh's `checks`, and
a rank trace's events with its ordered tasks (those numbered in a pipeline rank's program)."""
import json


def say(ok, what):
    print(("PASS " if ok else "FAIL ") + what)


def ordered_tasks(path):
    """(every event, the tasks with an order number) of the Chrome trace at path."""
    ev = json.load(open(path))["traceEvents"]
    tasks = [e for e in ev if e.get("ph") == "X" and e.get("cat") != "message"
             and e["args"].get("order", -1) >= 0]
    return ev, tasks
