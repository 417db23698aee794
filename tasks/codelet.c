/* The op-context wrapper around the graph's single insertion function, and the poisoning of
 * write-only buffers that codelet wrappers apply when it is switched on. */
#include "tasks/codelet.h"

#include <stdlib.h>
#include <string.h>
#include "base/grow.h"

int sm_op_insert(const sm_op_ctx *ctx, struct starpu_codelet *cl, const char *op, sm_phase phase,
                 int expert, const sm_access *acc, int nacc, const void *args, size_t args_size,
                 double flops)
{
    sm_task_meta meta = {.op = op, .layer = ctx->layer, .micro = ctx->micro, .expert = expert,
                         .stage = ctx->stage, .phase = phase, .part = ctx->part, .order = -1,
                         .lane = -1};
    sm_order_plan *p = ctx->plan;
    if (p && p->collecting) {
        if (sm_grow(&p->meta, &p->cap, p->n + 1, sizeof *p->meta))
            return sm_fail(ctx->err, "out of memory for a slot's plan");
        p->meta[p->n++] = meta;
        return 0;
    }
    if (p && p->at >= p->n)
        return sm_fail(ctx->err, "task '%s' (layer %d, micro-batch %d): more tasks than the "
                       "slot's plan collected (%zu)", op, ctx->layer, ctx->micro, p->n);
    if (ctx->order_next) {
        meta.lane = ctx->lane;
        meta.order = p ? p->base + p->order[p->at] : ctx->order_next[ctx->lane];
    }
    if (sm_graph_insert(ctx->g, cl, &meta, acc, nacc, args, args_size, flops, ctx->err))
        return -1;
    if (p) p->at++;
    else if (ctx->order_next) ctx->order_next[ctx->lane]++;
    return 0;
}

/* ---- poisoning of write-only buffers (codelet.h) ---- */

int sm_codelet_poison_on;

/* Read once, when the library is loaded: before any worker runs a task. */
__attribute__((constructor)) static void sm_codelet_poison_from_env(void)
{
    const char *v = getenv("STARMOE_POISON_WRITES");
    sm_codelet_poison_on = v && strcmp(v, "1") == 0;
}

void sm_codelet_poison_writes(int on) { sm_codelet_poison_on = on != 0; }

/* Fills a vector buffer with NaN of its element size. */
static void sm_poison_vector(void *buffer)
{
    size_t n = STARPU_VECTOR_GET_NX(buffer), size = STARPU_VECTOR_GET_ELEMSIZE(buffer);
    unsigned char *p = (unsigned char *)STARPU_VECTOR_GET_PTR(buffer);
    if (n == 0) return;          /* an empty resizable buffer has no memory */
    if (size == sizeof(float)) {
        const uint32_t nan = 0x7fc00000u;
        for (size_t i = 0; i < n; i++) memcpy(p + i * size, &nan, size);
    } else if (size == sizeof(double)) {
        const uint64_t nan = 0x7ff8000000000000u;
        for (size_t i = 0; i < n; i++) memcpy(p + i * size, &nan, size);
    } else {
        memset(p, 0xff, n * size);
    }
}

void sm_codelet_poison(void *buffers[])
{
    struct starpu_task *task = starpu_task_get_current();
    unsigned n = STARPU_TASK_GET_NBUFFERS(task);
    for (unsigned i = 0; i < n; i++)
        if ((STARPU_TASK_GET_MODE(task, i) & STARPU_RW) == STARPU_W) sm_poison_vector(buffers[i]);
}
