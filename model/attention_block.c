/* The attention half of a block as tasks, forward and backward side by side:
 *   x1 = x + o_proj(MLA(input_layernorm(x)))
 * (the projections through model/linear.c: float32, or FP8 under FP8 training)
 * MLA: q = q_b(q_a_norm(q_a(xn))) (or q_proj(xn)); kv = kv_a(xn) = [latent | k_rope];
 * kvu = kv_b(kv_a_norm(latent)); attention with interleaved RoPE on q_rope and k_rope. */
#include "model/model.h"

#include "tasks/attention.h"
#include "tasks/dense.h"

int sm_attention_block_fwd(sm_run *r, const sm_op_ctx *c, int l, int mb)
{
    const sm_dims *x = &r->m->dims;
    const sm_layer_params *p = &r->m->layers[l];
    sm_layer_acts *a = &r->mb[mb].layers[l];
    const sm_block_shape *sh = sm_shape_of(r, l);
    sm_tensor *in = sm_block_x(r, mb, l, 0);
    int T = sh->T, d = x->d, dq = x->dq, dc = x->dc;
    float eps = (float)r->m->cfg.rms_norm_eps;
    if (sm_insert_rmsnorm_fwd(c, a->xn, a->rstd_in, in, d, p->in_norm.w, T, d, eps) ||
        sm_proj_quant_input(r, c, "xn", a->xn, T, d))
        return -1;
    if (dq > 0 ? sm_proj_fwd(r, c, a->cq, a->xn, "xn", &p->q_a, NULL, T, d, dq) ||
                     sm_insert_rmsnorm_fwd(c, a->cqn, a->rstd_q, a->cq, dq, p->q_a_norm.w, T, dq,
                                           eps) ||
                     sm_proj_quant_input(r, c, "cqn", a->cqn, T, dq) ||
                     sm_proj_fwd(r, c, a->q, a->cqn, "cqn", &p->q_b, NULL, T, dq, x->q_w)
               : sm_proj_fwd(r, c, a->q, a->xn, "xn", &p->q, NULL, T, d, x->q_w))
        return -1;
    if (sm_proj_fwd(r, c, a->kv, a->xn, "xn", &p->kv_a, NULL, T, d, x->kv_a_w) ||
        sm_insert_rmsnorm_fwd(c, a->kvn, a->rstd_kv, a->kv, x->kv_a_w, p->kv_a_norm.w, T, dc,
                              eps) ||
        sm_proj_quant_input(r, c, "kvn", a->kvn, T, dc) ||
        sm_proj_fwd(r, c, a->kvu, a->kvn, "kvn", &p->kv_b, NULL, T, dc, x->kv_b_w) ||
        sm_insert_mla_attn_fwd(c, &sh->mla, a->o, a->q, a->kv, a->kvu, r->cos_t, r->sin_t) ||
        sm_proj_quant_input(r, c, "attn_o", a->o, T, x->o_w) ||
        sm_proj_fwd(r, c, a->x1, a->o, "attn_o", &p->o, in, T, x->o_w, d))
        return -1;
    return 0;
}

/* The input path's backward: dL/dx1 (dy) -> dxn through o_proj, attention, kv and q paths;
 * then dxo = dy + the input norm's backward of dxn. Norm gains' gradients on the way. */
static int sm_attention_bwd_input(sm_run *r, const sm_op_ctx *c, int l, int mb)
{
    const sm_dims *x = &r->m->dims;
    const sm_layer_params *p = &r->m->layers[l];
    sm_layer_acts *a = &r->mb[mb].layers[l];
    const sm_block_shape *sh = sm_shape_of(r, l);
    sm_tensor *in = sm_block_x(r, mb, l, 0), *dy = sm_block_dx(r, mb, l, 1);
    sm_tensor *dxo = sm_block_dx(r, mb, l, 0);
    int T = sh->T, d = x->d, dq = x->dq, dc = x->dc;
    if (sm_proj_bwd_input(r, c, a->dout, dy, "attn_o", &p->o, T, x->o_w, d, 0) ||
        sm_insert_mla_attn_bwd(c, &sh->mla, a->dq, a->dkpe, a->dkvu, a->dout, a->q, a->kv, a->kvu,
                               r->cos_t, r->sin_t) ||
        sm_proj_bwd_input(r, c, a->dkvn, a->dkvu, "kvn", &p->kv_b, T, dc, x->kv_b_w, 0) ||
        sm_insert_kv_norm_bwd(c, a->dkv, sm_grad(r, &p->kv_a_norm, mb), a->dkvn, a->kv,
                              p->kv_a_norm.w, a->rstd_kv, a->dkpe, T, dc, x->dr) ||
        sm_proj_bwd_input(r, c, a->dxn, a->dkv, "xn", &p->kv_a, T, d, x->kv_a_w, 0))
        return -1;
    if (dq > 0 ? sm_proj_bwd_input(r, c, a->dcqn, a->dq, "cqn", &p->q_b, T, dq, x->q_w, 0) ||
                     sm_insert_rmsnorm_bwd(c, a->dcq, dq, sm_grad(r, &p->q_a_norm, mb), a->dcqn,
                                           a->cq, dq, p->q_a_norm.w, a->rstd_q, T, dq, 0) ||
                     sm_proj_bwd_input(r, c, a->dxn, a->dcq, "xn", &p->q_a, T, d, dq, 1)
               : sm_proj_bwd_input(r, c, a->dxn, a->dq, "xn", &p->q, T, d, x->q_w, 1))
        return -1;
    if (sm_residual_grad_pass(c, dxo, dy) ||
        sm_insert_rmsnorm_bwd(c, dxo, d, sm_grad(r, &p->in_norm, mb), a->dxn, in, d,
                              p->in_norm.w, a->rstd_in, T, d, 1))
        return -1;
    return 0;
}

/* The projections' weight gradients but o_proj's, from the saved tensors and the input path's
 * temporaries. */
static int sm_attention_bwd_weight(sm_run *r, const sm_op_ctx *c, int l, int mb)
{
    const sm_dims *x = &r->m->dims;
    const sm_layer_params *p = &r->m->layers[l];
    sm_layer_acts *a = &r->mb[mb].layers[l];
    int T = sm_shape_of(r, l)->T, d = x->d, dq = x->dq;
    if (sm_proj_bwd_weight(r, c, sm_grad(r, &p->kv_b, mb), a->dkvu, a->kvn, "kvn", T, x->dc,
                             x->kv_b_w) ||
        sm_proj_bwd_weight(r, c, sm_grad(r, &p->kv_a, mb), a->dkv, a->xn, "xn", T, d,
                             x->kv_a_w))
        return -1;
    if (dq > 0)
        return sm_proj_bwd_weight(r, c, sm_grad(r, &p->q_b, mb), a->dq, a->cqn, "cqn", T, dq,
                                    x->q_w) ||
                       sm_proj_bwd_weight(r, c, sm_grad(r, &p->q_a, mb), a->dcq, a->xn, "xn", T,
                                            d, dq)
                   ? -1
                   : 0;
    return sm_proj_bwd_weight(r, c, sm_grad(r, &p->q, mb), a->dq, a->xn, "xn", T, d, x->q_w);
}

/* Backward for inputs (parts & SM_BWD_INPUT): dx[2l+1] (dL/dx1) -> dx[2l] (dL/dx: the
 * residual passes straight through, the attention path is added by the input norm's
 * backward), with the norm gains' gradients. Backward for weights (SM_BWD_WEIGHT): the
 * projections' gradients, from the saved tensors and the B part's temporaries. */
int sm_attention_block_bwd(sm_run *r, const sm_op_ctx *c, int l, int mb, int parts)
{
    const sm_layer_params *p = &r->m->layers[l];
    sm_layer_acts *a = &r->mb[mb].layers[l];
    /* o_proj's first: without a pipeline dx[2l+1] and dx[2l] are one tensor, which the B part
     * updates */
    if ((parts & SM_BWD_WEIGHT) &&
        sm_proj_bwd_weight(r, c, sm_grad(r, &p->o, mb), sm_block_dx(r, mb, l, 1), a->o,
                             "attn_o", sm_shape_of(r, l)->T, r->m->dims.o_w, r->m->dims.d))
        return -1;
    if ((parts & SM_BWD_INPUT) && sm_attention_bwd_input(r, c, l, mb)) return -1;
    if ((parts & SM_BWD_WEIGHT) && sm_attention_bwd_weight(r, c, l, mb)) return -1;
    return 0;
}
