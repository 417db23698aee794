#!/usr/bin/env bash
# starmoe graph --dot writes one step's DAG: one node per task, the task count printed, edges
# present, nodes filled in their phase's colour, and (when Graphviz is installed) a file dot
# accepts.
. "$(dirname "$0")/tap.sh"
out=$("$STARMOE" graph --config "$FIXTURE/config.json" --dot "$TMP/step.dot" --batch 2 --seq 32 --micro 2)
ok $? "graph command runs ($out)"
n=$(echo "$out" | sed -n 's/^\([0-9]*\) tasks.*/\1/p')
nodes=$(grep -c '^  t[0-9]* \[label' "$TMP/step.dot")
[ -n "$n" ] && [ "$n" -eq "$nodes" ]; ok $? "one node per task ($nodes nodes, $n tasks)"
edges=$(grep -c -- '->' "$TMP/step.dot")
[ "$edges" -ge "$nodes" ]; ok $? "dependencies drawn ($edges edges)"
grep -q 'expert_fwd L1 e7 mb1' "$TMP/step.dot"; ok $? "tasks are named with op, layer, expert and micro-batch"
# the experts of one layer and micro-batch write their rows of shared packed buffers through
# views of their own: no dependency between two of them
pairs=$(awk -F'"' '/\[label=/ { split($0, a, " "); name[a[1]] = $2 }
    / -> / { sub(";", "", $0); split($0, e, " -> "); gsub(" ", "", e[1]); gsub(" ", "", e[2]);
             f = name[e[1]]; t = name[e[2]];
             if (f ~ /^(dispatch|expert_|combine_bwd)/ && t ~ /^(dispatch|expert_|combine_bwd)/) {
                 split(f, x, " "); split(t, y, " ");
                 if (x[2] == y[2] && x[4] == y[4] && x[3] != y[3]) n++ } }
    END { print n + 0 }' "$TMP/step.dot")
[ "$pairs" -eq 0 ]
ok $? "no dependency between two experts' tasks of one layer and micro-batch ($pairs)"
colors=$(grep -o 'fillcolor="[^"]*"' "$TMP/step.dot" | sort -u)
[ "$(echo "$colors" | grep -cE '^fillcolor="#[0-9a-f]{6}"$')" -ge 5 ] && ! echo "$colors" | grep -qvE '"#[0-9a-f]{6}"'
ok $? "nodes filled with one colour per phase ($(echo $colors))"
if command -v dot > /dev/null; then dot -Tsvg "$TMP/step.dot" -o "$TMP/step.svg"; ok $? "Graphviz renders the DAG"; fi
tap_done
