/* The codelet pattern shared by every op family: one macro declares a codelet with its
 * history-based performance model; the op context carries where a task belongs (graph, layer,
 * micro-batch, stage) so insert helpers only add the op name, phase and expert. */
#ifndef STARMOE_CODELET_H
#define STARMOE_CODELET_H

#include <starpu.h>
#include "graph/graph.h"

/* Declares `static struct starpu_codelet sm_cl_<sym>` running cpu_fn on CPU workers, with a
 * variable number of buffers (they arrive in the insert helper's order) and a history-based
 * perf model named "starmoe_<sym>". */
#define SM_CODELET(sym, cpu_fn)                                                        \
    static struct starpu_perfmodel sm_model_##sym = {                                  \
        .type = STARPU_HISTORY_BASED, .symbol = "starmoe_" #sym};                      \
    static struct starpu_codelet sm_cl_##sym = {                                       \
        .cpu_funcs = {cpu_fn},                                                         \
        .cpu_funcs_name = {#cpu_fn},                                                   \
        .nbuffers = STARPU_VARIABLE_NBUFFERS,                                          \
        .model = &sm_model_##sym,                                                      \
        .name = #sym}

/* Where the tasks being inserted belong, and where a failed insertion says why. */
typedef struct sm_op_ctx {
    sm_graph *g;
    int layer;                   /* -1 outside layers */
    int micro;                   /* -1 for step-wide tasks */
    int stage;
    /* ordered tasks: each insert takes the next number of lane `lane`, order_next[lane]++;
     * NULL: unordered */
    int64_t *order_next;
    int lane;
    /* the builder's error: a failed insertion (in the graph, or in an insert helper before it)
     * fills it and returns -1, and the builder stops there; NULL: no message */
    sm_error *err;
} sm_op_ctx;

/* Inserts through the graph with meta built from ctx; -1 with ctx->err filled when the task
 * cannot go in (then no task and no record were added). */
int sm_op_insert(const sm_op_ctx *ctx, struct starpu_codelet *cl, const char *op, sm_phase phase,
                 int expert, const sm_access *acc, int nacc, const void *args, size_t args_size,
                 double flops);

/* Buffer i of the running task as a typed host pointer. */
#define SM_BUF(buffers, i, type) ((type *)STARPU_VECTOR_GET_PTR((buffers)[i]))

#define SM_R(t) ((sm_access){(t), STARPU_R})
#define SM_W(t) ((sm_access){(t), STARPU_W})
#define SM_RW(t) ((sm_access){(t), STARPU_RW})
/* Read-write when accumulating into t, write-only when overwriting it. */
#define SM_ACC(t, accumulate) ((sm_access){(t), (accumulate) ? STARPU_RW : STARPU_W})

#endif
