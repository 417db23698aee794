/* The codelet pattern shared by every op family: one macro declares a codelet with its
 * history-based performance model and a CPU wrapper that can poison write-only buffers (a test
 * aid); the op context carries where a task belongs (graph, layer, micro-batch, stage) so
 * insert helpers only add the op name, phase and expert. Buffers are addressed by named slots:
 * each codelet has an enum of its buffers, used both by the insert helper building the access
 * list and by the CPU function reading the buffers. */
#ifndef STARMOE_CODELET_H
#define STARMOE_CODELET_H

#include <starpu.h>
#include "graph/graph.h"

/* Write poisoning: when on, every codelet's CPU wrapper fills each buffer its task accesses as
 * STARPU_W with NaN (4- and 8-byte elements: the float / double quiet NaN, which as an int32
 * is 0x7fc00000) or 0xff bytes (other sizes) before the kernel runs, so a kernel that reads
 * what it should only write computes garbage. Off by default; on when the library is loaded
 * with STARMOE_POISON_WRITES=1 in the environment (the test suite sets it), or after
 * sm_codelet_poison_writes(1), called before the tasks it should affect are submitted. Off, it
 * costs one predictable branch per task. */
extern int sm_codelet_poison_on;
void sm_codelet_poison_writes(int on);
/* Poisons the running task's STARPU_W buffers (called by the wrapper). */
void sm_codelet_poison(void *buffers[]);

/* Declares `static struct starpu_codelet sm_cl_<sym>` running cpu_fn on CPU workers (through
 * a wrapper that poisons write-only buffers when asked), with a variable number of buffers
 * (they arrive in the insert helper's order) and a history-based perf model named
 * "starmoe_<sym>". */
#define SM_CODELET(sym, cpu_fn)                                                        \
    static void sm_cpu_##sym(void *buffers[], void *arg)                               \
    {                                                                                  \
        if (__builtin_expect(sm_codelet_poison_on, 0)) sm_codelet_poison(buffers);     \
        cpu_fn(buffers, arg);                                                          \
    }                                                                                  \
    static struct starpu_perfmodel sm_model_##sym = {                                  \
        .type = STARPU_HISTORY_BASED, .symbol = "starmoe_" #sym};                      \
    static struct starpu_codelet sm_cl_##sym = {                                       \
        .cpu_funcs = {sm_cpu_##sym},                                                   \
        .cpu_funcs_name = {"sm_cpu_" #sym},                                            \
        .nbuffers = STARPU_VARIABLE_NBUFFERS,                                          \
        .model = &sm_model_##sym,                                                      \
        .name = #sym}

/* A slot whose tasks a policy orders from their metadata (two micro-batches' chunks
 * interleaved: model/pipeline.c, schedulers/overlap.h), built in two passes: while collecting,
 * an insert only appends its task's metadata to meta[] (nothing goes into the graph); then each
 * insert takes order base + order[at++] in its lane. */
typedef struct sm_order_plan {
    int collecting;
    sm_task_meta *meta;
    size_t n, cap;
    const int64_t *order;        /* [n]: the policy's position of each collected task */
    size_t at;
    int64_t base;
} sm_order_plan;

/* Where the tasks being inserted belong, and where a failed insertion says why. */
typedef struct sm_op_ctx {
    sm_graph *g;
    int layer;                   /* -1 outside layers */
    int micro;                   /* -1 for step-wide tasks */
    int stage;
    sm_block_part part;          /* the block part the builder is in (metadata for policies) */
    /* ordered tasks: each insert takes the next number of lane `lane`, order_next[lane]++ (or,
     * with a plan, its planned number); NULL: unordered */
    int64_t *order_next;
    int lane;
    sm_order_plan *plan;
    /* the builder's error: a failed insertion (in the graph, or in an insert helper before it)
     * fills it and returns -1, and the builder stops there; NULL: no message */
    sm_error *err;
} sm_op_ctx;

/* Inserts through the graph with meta built from ctx; -1 with ctx->err filled when the task
 * cannot go in (then no task and no record were added). */
int sm_op_insert(const sm_op_ctx *ctx, struct starpu_codelet *cl, const char *op, sm_phase phase,
                 int expert, const sm_access *acc, int nacc, const void *args, size_t args_size,
                 double flops);

/* Buffer `slot` (a name of the codelet's slot enum) of the running task as a typed host
 * pointer. */
#define SM_BUF(buffers, slot, type) ((type *)STARPU_VECTOR_GET_PTR((buffers)[slot]))

#define SM_R(t) ((sm_access){(t), STARPU_R})
#define SM_W(t) ((sm_access){(t), STARPU_W})
#define SM_RW(t) ((sm_access){(t), STARPU_RW})
/* Read-write when accumulating into t, write-only when overwriting it. */
#define SM_ACC(t, accumulate) ((sm_access){(t), (accumulate) ? STARPU_RW : STARPU_W})

#endif
