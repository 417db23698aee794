/* The op-context wrapper around the graph's single insertion function. */
#include "tasks/codelet.h"

int sm_op_insert(const sm_op_ctx *ctx, struct starpu_codelet *cl, const char *op, sm_phase phase,
                 int expert, const sm_access *acc, int nacc, const void *args, size_t args_size,
                 double flops)
{
    sm_task_meta meta = {.op = op, .layer = ctx->layer, .micro = ctx->micro, .expert = expert,
                         .stage = ctx->stage, .phase = phase, .order = -1, .lane = -1};
    if (ctx->order_next) {
        meta.lane = ctx->lane;
        meta.order = ctx->order_next[ctx->lane];
    }
    if (sm_graph_insert(ctx->g, cl, &meta, acc, nacc, args, args_size, flops, ctx->err))
        return -1;
    if (ctx->order_next) ctx->order_next[ctx->lane]++;
    return 0;
}
