/* The FFN half of a block as tasks, forward and backward side by side:
 *   x2 = x1 + FFN(post_attention_layernorm(x1))
 * FFN is the dense SwiGLU, or the MoE: router -> dispatch per expert -> expert FFN per
 * expert (in parallel) -> combine with the shared expert and the residual. */
#include "model/model.h"

#include "tasks/dense.h"
#include "tasks/moe.h"

static sm_ffn_shape sm_dense_shape(const sm_run *r, int I)
{
    return (sm_ffn_shape){.n = r->T, .d = r->m->dims.d, .I = I, .expert = -1};
}

static sm_ffn_shape sm_expert_shape(const sm_run *r, sm_tensor *plan, int e)
{
    const sm_router_dims *d = &r->router;
    return (sm_ffn_shape){.n = r->T, .d = d->d, .I = r->m->dims.expert_I,
                          .plan = plan, .expert = e, .T = d->T, .K = d->K, .E = d->E};
}

static int sm_moe_fwd(sm_run *r, const sm_op_ctx *c, int l, int mb)
{
    const sm_layer_params *p = &r->m->layers[l];
    sm_layer_acts *a = &r->mb[mb].layers[l];
    const sm_router_dims *rd = &r->router;
    if (sm_insert_router_fwd(c, rd, &r->bal, a->plan, a->w, a->s, a->bal_loss, a->xn2,
                             p->router.w, p->bias.w))
        return -1;
    for (int e = 0; e < rd->E; e++) {
        sm_ffn_shape s = sm_expert_shape(r, a->plan, e);
        const sm_ffn_params *f = &p->experts[e];
        if (sm_insert_moe_dispatch(c, rd, e, a->xe[e], a->xn2, a->plan) ||
            sm_insert_swiglu_fwd(c, &s, a->ye[e], a->eh1[e], a->eh3[e], a->xe[e], f->gate.w,
                                 f->up.w, f->down.w, NULL))
            return -1;
    }
    if (p->shared.I > 0) {
        sm_ffn_shape s = sm_dense_shape(r, p->shared.I);
        if (sm_insert_swiglu_fwd(c, &s, a->ys, a->h1, a->h3, a->xn2, p->shared.gate.w,
                                 p->shared.up.w, p->shared.down.w, NULL))
            return -1;
    }
    return sm_insert_moe_combine(c, rd, r->mb[mb].x[l + 1], a->ye, a->ys, a->w, a->plan, a->x1);
}

int sm_ffn_block_fwd(sm_run *r, const sm_op_ctx *c, int l, int mb)
{
    const sm_layer_params *p = &r->m->layers[l];
    sm_layer_acts *a = &r->mb[mb].layers[l];
    int d = r->m->dims.d;
    if (sm_insert_rmsnorm_fwd(c, a->xn2, a->rstd_post, a->x1, d, p->post_norm.w, r->T, d,
                              (float)r->m->cfg.rms_norm_eps))
        return -1;
    if (p->moe) return sm_moe_fwd(r, c, l, mb);
    sm_ffn_shape s = sm_dense_shape(r, p->dense.I);
    return sm_insert_swiglu_fwd(c, &s, r->mb[mb].x[l + 1], a->h1, a->h3, a->xn2, p->dense.gate.w,
                                p->dense.up.w, p->dense.down.w, a->x1);
}

/* The backward of one SwiGLU with input x and hidden h1, h3 (the dense FFN, the shared expert
 * or a routed expert), writing g->dx (overwritten), g->dh1/dh3 and the weight gradients of
 * micro-batch mb: one task for a full backward, else its B or W task. */
static int sm_swiglu_bwd_parts(sm_run *r, const sm_op_ctx *c, const sm_ffn_shape *s,
                               const sm_ffn_params *f, sm_ffn_grads g, sm_tensor *dy,
                               sm_tensor *x, sm_tensor *h1, sm_tensor *h3, int mb, int parts)
{
    g.dW1 = sm_grad(r, &f->gate, mb);
    g.dW3 = sm_grad(r, &f->up, mb);
    g.dW2 = sm_grad(r, &f->down, mb);
    if (parts == SM_BWD_FULL)
        return sm_insert_swiglu_bwd(c, s, &g, dy, x, h1, h3, f->gate.w, f->up.w, f->down.w, 0);
    if (parts & SM_BWD_INPUT)
        return sm_insert_swiglu_bwd_input(c, s, g.dx, g.dh1, g.dh3, dy, h1, h3, f->gate.w,
                                          f->up.w, f->down.w, 0);
    return sm_insert_swiglu_bwd_weight(c, s, g.dW1, g.dW3, g.dW2, dy, x, h1, h3, g.dh1, g.dh3);
}

/* Backward of a SwiGLU over all T tokens (the dense FFN, or the shared expert): dxn2 is its
 * input gradient. */
static int sm_full_ffn_bwd(sm_run *r, const sm_op_ctx *c, const sm_ffn_params *f,
                           sm_layer_acts *a, sm_tensor *dy, int mb, int parts)
{
    sm_ffn_shape s = sm_dense_shape(r, f->I);
    sm_ffn_grads g = {.dx = a->dxn2, .dh1 = a->dh1, .dh3 = a->dh3};
    return sm_swiglu_bwd_parts(r, c, &s, f, g, dy, a->xn2, a->h1, a->h3, mb, parts);
}

/* B: dxn2 = shared expert's input grad, then += the experts' (via dispatch backward), then +=
 * the router's: a fixed order, whatever the schedule. W: every expert's weight gradients. */
static int sm_moe_bwd(sm_run *r, const sm_op_ctx *c, int l, int mb, int parts)
{
    const sm_layer_params *p = &r->m->layers[l];
    sm_layer_acts *a = &r->mb[mb].layers[l];
    const sm_router_dims *rd = &r->router;
    sm_tensor *dy = r->mb[mb].dx[2 * l + 2];
    for (int e = 0; e < rd->E; e++) {
        sm_ffn_shape s = sm_expert_shape(r, a->plan, e);
        const sm_ffn_params *f = &p->experts[e];
        sm_ffn_grads g = {.dx = a->dxe[e], .dh1 = a->deh1[e], .dh3 = a->deh3[e]};
        if ((parts & SM_BWD_INPUT) &&
            sm_insert_moe_combine_bwd(c, rd, e, a->dye[e], a->dge[e], dy, a->ye[e], a->w,
                                      a->plan))
            return -1;
        if (sm_swiglu_bwd_parts(r, c, &s, f, g, a->dye[e], a->xe[e], a->eh1[e], a->eh3[e], mb,
                                parts))
            return -1;
    }
    if (p->shared.I > 0 && sm_full_ffn_bwd(r, c, &p->shared, a, dy, mb, parts)) return -1;
    if (!(parts & SM_BWD_INPUT)) return 0;
    if (sm_insert_moe_dispatch_bwd(c, rd, a->dxn2, a->dxe, a->plan, p->shared.I > 0) ||
        sm_insert_router_bwd(c, rd, &r->bal, a->dxn2, sm_grad(r, &p->router, mb), a->dge, a->s,
                             a->plan, a->xn2, p->router.w, 1))
        return -1;
    return 0;
}

/* B turns dx[2l+2] (dL/dx2) into dx[2l+1] (dL/dx1); W adds the FFN's weight gradients. */
int sm_ffn_block_bwd(sm_run *r, const sm_op_ctx *c, int l, int mb, int parts)
{
    const sm_layer_params *p = &r->m->layers[l];
    sm_layer_acts *a = &r->mb[mb].layers[l];
    sm_tensor *dy = r->mb[mb].dx[2 * l + 2], *dxo = r->mb[mb].dx[2 * l + 1];
    int d = r->m->dims.d;
    if (p->moe ? sm_moe_bwd(r, c, l, mb, parts)
               : sm_full_ffn_bwd(r, c, &p->dense, a, dy, mb, parts))
        return -1;
    if (!(parts & SM_BWD_INPUT)) return 0;
    if (sm_residual_grad_pass(c, dxo, dy) ||
        sm_insert_rmsnorm_bwd(c, dxo, d, sm_grad(r, &p->post_norm, mb), a->dxn2, a->x1, d,
                              p->post_norm.w, a->rstd_post, r->T, d, 1))
        return -1;
    return 0;
}
