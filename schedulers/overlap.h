/* The order of an overlapped slot's tasks (DualPipe's F&B pairs): one micro-batch's forward
 * chunk and another's backward chunk on one rank, interleaved by their block parts so that each
 * chunk's all-to-all and pipeline transfers travel while the other chunk computes. A policy
 * decision made from the tasks' metadata (sm_task_meta: layer, block part), not from the model:
 * docs/pipeline-schedules.md §5.2. */
#ifndef STARMOE_OVERLAP_H
#define STARMOE_OVERLAP_H

#include <stddef.h>
#include <stdint.h>
#include "graph/graph.h"

/* The forward chunk's tasks f[0..nf) and the backward chunk's b[0..nb), each in its build
 * order (a topological order of its dependencies), merged: order[i] is the position of f[i] and
 * order[nf + j] that of b[j] in 0 .. nf + nb - 1. Each chunk is cut into segments, maximal runs
 * of tasks of one layer and one block part; the segments are taken alternately, the
 * backward's first (one layer pair: combine(B), attention(F), MLP(B+W), dispatch(F),
 * dispatch(B), MLP(F), attention(B+W), combine(F)), then the rest of the longer chunk. Each
 * chunk keeps its own order, so the merge adds no dependency the build did not have. */
void sm_overlap_interleave(const sm_task_meta *f, size_t nf, const sm_task_meta *b, size_t nb,
                           int64_t *order);

#endif
