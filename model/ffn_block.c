/* The FFN half of a block as tasks, forward and backward side by side:
 *   x2 = x1 + FFN(post_attention_layernorm(x1))
 * FFN is the dense SwiGLU, or the MoE: router -> dispatch per expert -> expert FFN per
 * expert (in parallel) -> combine with the shared expert and the residual. Under expert
 * parallelism a rank dispatches its tokens of another rank's expert to that rank, runs its own
 * experts on the tokens of every rank of its group (one task per expert and source, so each
 * starts when its tokens arrive) and sends the outputs back; the backward pass mirrors it. */
#include "model/model.h"

#include <stdio.h>

#include "tasks/dense.h"
#include "tasks/moe.h"

/* c, for the tasks of block part `part` (metadata for the policies that interleave two
 * chunks: graph/graph.h). */
static sm_op_ctx sm_in_part(const sm_op_ctx *c, sm_block_part part)
{
    sm_op_ctx x = *c;
    x.part = part;
    return x;
}

static sm_ffn_shape sm_dense_shape(const sm_run *r, int l, int I)
{
    return (sm_ffn_shape){.n = sm_shape_of(r, l)->T, .d = r->m->dims.d, .I = I, .expert = -1};
}

/* Expert e's FFN; n: its mean load, for the flop estimate (the rows are known when it runs). */
static sm_ffn_shape sm_expert_shape(const sm_run *r, int l, int e)
{
    const sm_router_dims *d = &sm_shape_of(r, l)->router;
    return (sm_ffn_shape){.n = d->T * d->K / d->E, .d = d->d, .I = r->m->dims.expert_I,
                          .expert = e};
}

/* A SwiGLU over all T tokens (the dense FFN, or the shared expert) on the FFN input xn2:
 * y = swiglu(xn2) (+ res), float32 or FP8 (model/linear.c). */
static int sm_full_ffn_fwd(sm_run *r, const sm_op_ctx *c, int l, const sm_ffn_params *f,
                           sm_layer_acts *a, sm_tensor *y, sm_tensor *res)
{
    sm_ffn_shape s = sm_dense_shape(r, l, f->I);
    if (r->fp8) return sm_swiglu_fp8_fwd(r, c, "ffn", &s, f, y, a->h1, a->h3, a->xn2, res);
    return sm_insert_swiglu_fwd(c, &s, y, a->h1, a->h3, a->xn2, f->gate.w, f->up.w, f->down.w,
                                res);
}

/* The name a routed expert's FP8 tensors take for source src: "e<e>.s<src>". */
static const char *sm_expert_tag(char *buf, int e, int src)
{
    snprintf(buf, 32, "e%d.s%d", e, src);
    return buf;
}

/* Routed expert e's FFN on source src's rows: float32 or FP8. */
static int sm_expert_fwd(sm_run *r, const sm_op_ctx *c, const sm_ffn_shape *s,
                         const sm_ffn_params *f, int src, sm_tensor *y, sm_tensor *h1,
                         sm_tensor *h3, sm_tensor *x)
{
    char tag[32];
    if (r->fp8)
        return sm_swiglu_fp8_fwd(r, c, sm_expert_tag(tag, s->expert, src), s, f, y, h1, h3, x,
                                 NULL);
    return sm_insert_swiglu_fwd(c, s, y, h1, h3, x, f->gate.w, f->up.w, f->down.w, NULL);
}

/* This rank's tokens: to every other rank of the group, once each, those choosing one of its
 * experts (with their index; the outputs come back per expert), first so that the messages
 * leave early; then its own experts' rows. */
static int sm_moe_dispatch_all(sm_run *r, const sm_op_ctx *c, int l, int mb)
{
    sm_layer_acts *a = &r->mb[mb].layers[l];
    const sm_router_dims *rd = &sm_shape_of(r, l)->router;
    int me = r->ep_index, per = rd->E / r->ep;
    for (int k = 1; k < r->ep; k++) {
        int q = (me + k) % r->ep;
        if (sm_insert_moe_dispatch_rank(c, rd, q * per, (q + 1) * per, a->tok_out[q],
                                        a->idx_out[q], a->xn2, a->plan) ||
            sm_ep_send(r, a->tok_out[q], SM_EP_TOKENS, l, mb, 0, me, q, c->err) ||
            sm_ep_send(r, a->idx_out[q], SM_EP_TOKEN_INDEX, l, mb, 0, me, q, c->err))
            return -1;
        for (int e = q * per; e < (q + 1) * per; e++)
            if (sm_ep_recv(r, a->ye[sm_ex(r, e, me)], SM_EP_OUTPUTS, l, mb, e, me, q, c->err))
                return -1;
    }
    for (int e = me * per; e < (me + 1) * per; e++)
        if (sm_insert_moe_dispatch(c, rd, e, a->xe[sm_ex(r, e, me)], a->xn2, a->plan))
            return -1;
    return 0;
}

/* This rank's experts on every source's tokens: its own first, then the others' as they
 * arrive, whose outputs go back. */
static int sm_moe_experts_fwd(sm_run *r, const sm_op_ctx *c, int l, int mb)
{
    const sm_layer_params *p = &r->m->layers[l];
    sm_layer_acts *a = &r->mb[mb].layers[l];
    const sm_router_dims *rd = &sm_shape_of(r, l)->router;
    int me = r->ep_index, per = rd->E / r->ep;
    for (int k = 0; k < r->ep; k++) {
        int src = (me + k) % r->ep;
        if (src != me &&
            (sm_ep_recv(r, a->tok_in[src], SM_EP_TOKENS, l, mb, 0, src, src, c->err) ||
             sm_ep_recv(r, a->idx_in[src], SM_EP_TOKEN_INDEX, l, mb, 0, src, src, c->err)))
            return -1;
        for (int e = me * per; e < (me + 1) * per; e++) {
            int i = sm_ex(r, e, src);
            sm_ffn_shape s = sm_expert_shape(r, l, e);
            const sm_ffn_params *f = &p->experts[e];
            if (src != me && sm_insert_moe_take_rows(c, rd, e, e - me * per, per,
                                                     a->xe[i], a->tok_in[src], a->idx_in[src],
                                                     NULL))
                return -1;
            if (sm_expert_fwd(r, c, &s, f, src, a->ye[i], a->eh1[i], a->eh3[i], a->xe[i]))
                return -1;
            if (src != me && sm_ep_send(r, a->ye[i], SM_EP_OUTPUTS, l, mb, e, src, src, c->err))
                return -1;
        }
    }
    return 0;
}

static int sm_moe_fwd(sm_run *r, const sm_op_ctx *c, int l, int mb)
{
    const sm_layer_params *p = &r->m->layers[l];
    sm_layer_acts *a = &r->mb[mb].layers[l];
    const sm_block_shape *sh = sm_shape_of(r, l);
    const sm_router_dims *rd = &sh->router;
    sm_op_ctx dispatch = sm_in_part(c, SM_PART_DISPATCH), mlp = sm_in_part(c, SM_PART_MLP);
    sm_op_ctx combine = sm_in_part(c, SM_PART_COMBINE);
    if (sm_insert_router_fwd(c, rd, &sh->bal, a->plan, a->w, a->s, a->bal_loss, a->xn2,
                             p->router.w, p->bias.w) ||
        sm_moe_dispatch_all(r, &dispatch, l, mb) || sm_moe_experts_fwd(r, &mlp, l, mb))
        return -1;
    if (p->shared.I > 0 && sm_full_ffn_fwd(r, &mlp, l, &p->shared, a, a->ys, NULL)) return -1;
    sm_tensor *ye[rd->E];
    for (int e = 0; e < rd->E; e++) ye[e] = a->ye[sm_ex(r, e, r->ep_index)];
    return sm_insert_moe_combine(&combine, rd, sm_block_x(r, mb, l, 1), ye, a->ys, a->w, a->plan,
                                 a->x1);
}

int sm_ffn_block_fwd(sm_run *r, const sm_op_ctx *c, int l, int mb)
{
    const sm_layer_params *p = &r->m->layers[l];
    sm_layer_acts *a = &r->mb[mb].layers[l];
    int d = r->m->dims.d;
    if (sm_insert_rmsnorm_fwd(c, a->xn2, a->rstd_post, a->x1, d, p->post_norm.w,
                              sm_shape_of(r, l)->T, d,
                              (float)r->m->cfg.rms_norm_eps))
        return -1;
    if (p->moe) return sm_moe_fwd(r, c, l, mb);
    sm_op_ctx mlp = sm_in_part(c, SM_PART_MLP);
    return sm_full_ffn_fwd(r, &mlp, l, &p->dense, a, sm_block_x(r, mb, l, 1), a->x1);
}

/* The backward of one SwiGLU with input x and hidden h1, h3 (the dense FFN, the shared expert
 * or a routed expert), writing g->dx (overwritten), g->dh1/dh3 and the weight gradients g->dW*
 * (the caller's): one task for a full backward, else its B or W task. */
static int sm_swiglu_bwd_parts(const sm_op_ctx *c, const sm_ffn_shape *s,
                               const sm_ffn_params *f, const sm_ffn_grads *g, sm_tensor *dy,
                               sm_tensor *x, sm_tensor *h1, sm_tensor *h3, int parts)
{
    if (parts == SM_BWD_FULL)
        return sm_insert_swiglu_bwd(c, s, g, dy, x, h1, h3, f->gate.w, f->up.w, f->down.w, 0);
    if (parts & SM_BWD_INPUT)
        return sm_insert_swiglu_bwd_input(c, s, g->dx, g->dh1, g->dh3, dy, h1, h3, f->gate.w,
                                          f->up.w, f->down.w, 0);
    return sm_insert_swiglu_bwd_weight(c, s, g->dW1, g->dW3, g->dW2, dy, x, h1, h3, g->dh1,
                                       g->dh3);
}

/* Backward of a SwiGLU over all T tokens (the dense FFN, or the shared expert): dxn2 is its
 * input gradient. */
static int sm_full_ffn_bwd(sm_run *r, const sm_op_ctx *c, int l, const sm_ffn_params *f,
                           sm_layer_acts *a, sm_tensor *dy, int mb, int parts)
{
    sm_ffn_shape s = sm_dense_shape(r, l, f->I);
    sm_ffn_grads g = {.dx = a->dxn2, .dh1 = a->dh1, .dh3 = a->dh3, .dW1 = sm_grad(r, &f->gate, mb),
                      .dW3 = sm_grad(r, &f->up, mb), .dW2 = sm_grad(r, &f->down, mb)};
    if (r->fp8) return sm_swiglu_fp8_bwd(r, c, "ffn", &s, f, &g, dy, a->h1, a->h3, parts);
    return sm_swiglu_bwd_parts(c, &s, f, &g, dy, a->xn2, a->h1, a->h3, parts);
}

/* B, this rank's tokens: to every other rank of the group, once each, the output gradient of
 * the tokens choosing one of its experts (with the mixing weights: that rank scales them per
 * expert; the input gradients come back per expert), first so that the messages leave early;
 * then each expert's mixing-weight gradient, and its own experts' output gradients. */
static int sm_moe_combine_bwd_all(sm_run *r, const sm_op_ctx *c, int l, int mb)
{
    sm_layer_acts *a = &r->mb[mb].layers[l];
    sm_tensor *dy = sm_block_dx(r, mb, l, 2);
    const sm_router_dims *rd = &sm_shape_of(r, l)->router;
    int me = r->ep_index, per = rd->E / r->ep;
    for (int k = 1; k < r->ep; k++) {
        int q = (me + k) % r->ep;
        if (sm_insert_moe_grads_for_rank(c, rd, q * per, (q + 1) * per, a->grad_out[q],
                                         a->wt_out[q], dy, a->w, a->plan) ||
            sm_ep_send(r, a->grad_out[q], SM_EP_GRAD_ROWS, l, mb, 0, me, q, c->err) ||
            sm_ep_send(r, a->wt_out[q], SM_EP_GRAD_WEIGHTS, l, mb, 0, me, q, c->err))
            return -1;
        for (int e = q * per; e < (q + 1) * per; e++)
            if (sm_ep_recv(r, a->dxe[sm_ex(r, e, me)], SM_EP_TOKEN_GRADS, l, mb, e, me, q,
                           c->err))
                return -1;
    }
    for (int e = 0; e < rd->E; e++) {
        int i = sm_ex(r, e, me);
        if (sm_insert_moe_combine_bwd(c, rd, e, sm_expert_here(r, e) ? a->dye[i] : NULL,
                                      a->dge[e], dy, a->ye[i], a->w, a->plan))
            return -1;
    }
    return 0;
}

/* This rank's experts' backward on every source's rows: B (input gradients, sent back to their
 * source) and W (weight gradients, into the source's copy in deterministic mode). */
static int sm_moe_experts_bwd(sm_run *r, const sm_op_ctx *c, int l, int mb, int parts)
{
    const sm_layer_params *p = &r->m->layers[l];
    sm_layer_acts *a = &r->mb[mb].layers[l];
    const sm_router_dims *rd = &sm_shape_of(r, l)->router;
    int me = r->ep_index, input = parts & SM_BWD_INPUT, per = rd->E / r->ep;
    char tag[32];
    for (int k = 0; k < r->ep; k++) {
        int src = (me + k) % r->ep;
        if (input && src != me &&
            (sm_ep_recv(r, a->grad_in[src], SM_EP_GRAD_ROWS, l, mb, 0, src, src, c->err) ||
             sm_ep_recv(r, a->wt_in[src], SM_EP_GRAD_WEIGHTS, l, mb, 0, src, src, c->err)))
            return -1;
        for (int e = me * per; e < (me + 1) * per; e++) {
            int i = sm_ex(r, e, src);
            sm_ffn_shape s = sm_expert_shape(r, l, e);
            const sm_ffn_params *f = &p->experts[e];
            sm_ffn_grads g = {.dx = a->dxe[i], .dh1 = a->deh1[i], .dh3 = a->deh3[i],
                              .dW1 = sm_expert_grad(r, &f->gate, src, mb),
                              .dW3 = sm_expert_grad(r, &f->up, src, mb),
                              .dW2 = sm_expert_grad(r, &f->down, src, mb)};
            if (input && src != me &&
                sm_insert_moe_take_rows(c, rd, e, e - me * per, per, a->dye[i],
                                        a->grad_in[src], a->idx_in[src], a->wt_in[src]))
                return -1;
            if (r->fp8 ? sm_swiglu_fp8_bwd(r, c, sm_expert_tag(tag, e, src), &s, f, &g, a->dye[i],
                                           a->eh1[i], a->eh3[i], parts)
                       : sm_swiglu_bwd_parts(c, &s, f, &g, a->dye[i], a->xe[i], a->eh1[i],
                                             a->eh3[i], parts))
                return -1;
            if (input && src != me &&
                sm_ep_send(r, a->dxe[i], SM_EP_TOKEN_GRADS, l, mb, e, src, src, c->err))
                return -1;
        }
    }
    return 0;
}

/* B: dxn2 = shared expert's input grad, then += the experts' (via dispatch backward, in expert
 * order), then += the router's: a fixed order, whatever the schedule. W: every expert's weight
 * gradients. */
static int sm_moe_bwd(sm_run *r, const sm_op_ctx *c, int l, int mb, int parts)
{
    const sm_layer_params *p = &r->m->layers[l];
    sm_layer_acts *a = &r->mb[mb].layers[l];
    const sm_block_shape *sh = sm_shape_of(r, l);
    const sm_router_dims *rd = &sh->router;
    sm_tensor *dy = sm_block_dx(r, mb, l, 2);
    sm_op_ctx combine = sm_in_part(c, SM_PART_COMBINE), mlp = sm_in_part(c, SM_PART_MLP);
    sm_op_ctx dispatch = sm_in_part(c, SM_PART_DISPATCH);
    if ((parts & SM_BWD_INPUT) && sm_moe_combine_bwd_all(r, &combine, l, mb)) return -1;
    if (sm_moe_experts_bwd(r, &mlp, l, mb, parts)) return -1;
    if (p->shared.I > 0 && sm_full_ffn_bwd(r, &mlp, l, &p->shared, a, dy, mb, parts))
        return -1;
    if (!(parts & SM_BWD_INPUT)) return 0;
    sm_tensor *dxe[rd->E];
    for (int e = 0; e < rd->E; e++) dxe[e] = a->dxe[sm_ex(r, e, r->ep_index)];
    if (sm_insert_moe_dispatch_bwd(&dispatch, rd, a->dxn2, dxe, a->plan, p->shared.I > 0) ||
        sm_insert_router_bwd(&dispatch, rd, &sh->bal, a->dxn2, sm_grad(r, &p->router, mb), a->dge,
                             a->s, a->plan, a->xn2, p->router.w, 1))
        return -1;
    return 0;
}

/* B turns dx[2l+2] (dL/dx2) into dx[2l+1] (dL/dx1); W adds the FFN's weight gradients. */
int sm_ffn_block_bwd(sm_run *r, const sm_op_ctx *c, int l, int mb, int parts)
{
    const sm_layer_params *p = &r->m->layers[l];
    sm_layer_acts *a = &r->mb[mb].layers[l];
    sm_tensor *dy = sm_block_dx(r, mb, l, 2), *dxo = sm_block_dx(r, mb, l, 1);
    int d = r->m->dims.d;
    sm_op_ctx mlp = sm_in_part(c, SM_PART_MLP);
    if (p->moe ? sm_moe_bwd(r, c, l, mb, parts)
               : sm_full_ffn_bwd(r, &mlp, l, &p->dense, a, dy, mb, parts))
        return -1;
    if (!(parts & SM_BWD_INPUT)) return 0;
    if (sm_residual_grad_pass(c, dxo, dy) ||
        sm_insert_rmsnorm_bwd(c, dxo, d, sm_grad(r, &p->post_norm, mb), a->dxn2, a->x1, d,
                              p->post_norm.w, a->rstd_post, sm_shape_of(r, l)->T, d, 1))
        return -1;
    return 0;
}
