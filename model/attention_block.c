/* The attention half of a block as tasks, forward and backward side by side:
 *   x1 = x + o_proj(MLA(input_layernorm(x)))
 * MLA: q = q_b(q_a_norm(q_a(xn))) (or q_proj(xn)); kv = kv_a(xn) = [latent | k_rope];
 * kvu = kv_b(kv_a_norm(latent)); attention with interleaved RoPE on q_rope and k_rope. */
#include "model/model.h"

#include "tasks/attention.h"
#include "tasks/dense.h"

int sm_attention_block_fwd(sm_run *r, const sm_op_ctx *c, int l, int mb)
{
    const sm_config *cf = &r->m->cfg;
    const sm_layer_params *p = &r->m->layers[l];
    sm_layer_acts *a = &r->mb[mb].layers[l];
    sm_tensor *x = r->mb[mb].x[l];
    int T = r->T, d = cf->hidden_size, H = cf->num_attention_heads, dq = cf->q_lora_rank;
    int dc = cf->kv_lora_rank, dr = cf->qk_rope_head_dim;
    int qw = H * (cf->qk_nope_head_dim + dr), kvw = H * (cf->qk_nope_head_dim + cf->v_head_dim);
    int ow = H * cf->v_head_dim;
    float eps = (float)cf->rms_norm_eps;
    int rc = sm_insert_rmsnorm_fwd(c, a->xn, a->rstd_in, x, d, p->in_norm.w, T, d, eps);
    if (dq > 0) {
        rc |= sm_insert_linear_fwd(c, a->cq, a->xn, p->q_a.w, NULL, T, d, dq);
        rc |= sm_insert_rmsnorm_fwd(c, a->cqn, a->rstd_q, a->cq, dq, p->q_a_norm.w, T, dq, eps);
        rc |= sm_insert_linear_fwd(c, a->q, a->cqn, p->q_b.w, NULL, T, dq, qw);
    } else {
        rc |= sm_insert_linear_fwd(c, a->q, a->xn, p->q.w, NULL, T, d, qw);
    }
    rc |= sm_insert_linear_fwd(c, a->kv, a->xn, p->kv_a.w, NULL, T, d, dc + dr);
    rc |= sm_insert_rmsnorm_fwd(c, a->kvn, a->rstd_kv, a->kv, dc + dr, p->kv_a_norm.w, T, dc, eps);
    rc |= sm_insert_linear_fwd(c, a->kvu, a->kvn, p->kv_b.w, NULL, T, dc, kvw);
    rc |= sm_insert_mla_attn_fwd(c, &r->mla, a->o, a->P, a->q, a->kv, a->kvu, r->cos_t, r->sin_t);
    rc |= sm_insert_linear_fwd(c, a->x1, a->o, p->o.w, x, T, ow, d);
    return rc ? -1 : 0;
}

/* Backward for inputs (parts & SM_BWD_INPUT): dx[2l+1] (dL/dx1) -> dx[2l] (dL/dx: the
 * residual passes straight through, the attention path is added by the input norm's
 * backward), with the norm gains' gradients. Backward for weights (SM_BWD_WEIGHT): the
 * projections' gradients, from the saved tensors and the B part's temporaries. */
int sm_attention_block_bwd(sm_run *r, const sm_op_ctx *c, int l, int mb, int parts)
{
    const sm_config *cf = &r->m->cfg;
    const sm_layer_params *p = &r->m->layers[l];
    sm_layer_acts *a = &r->mb[mb].layers[l];
    sm_tensor *x = r->mb[mb].x[l], *dy = r->mb[mb].dx[2 * l + 1], *dxo = r->mb[mb].dx[2 * l];
    int T = r->T, d = cf->hidden_size, H = cf->num_attention_heads, dq = cf->q_lora_rank;
    int dc = cf->kv_lora_rank, dr = cf->qk_rope_head_dim;
    int qw = H * (cf->qk_nope_head_dim + dr), kvw = H * (cf->qk_nope_head_dim + cf->v_head_dim);
    int ow = H * cf->v_head_dim, rc = 0;
    /* first: without a pipeline dy and dxo are one tensor, which the B part updates */
    if (parts & SM_BWD_WEIGHT)
        rc |= sm_insert_linear_bwd_weight(c, sm_grad(r, &p->o, mb), dy, a->o, T, ow, d);
    if (parts & SM_BWD_INPUT) {
        rc |= sm_insert_linear_bwd_input(c, a->dout, dy, p->o.w, T, ow, d, 0);
        rc |= sm_insert_mla_attn_bwd(c, &r->mla, a->dq, a->dkpe, a->dkvu, a->dout, a->P, a->q,
                                     a->kv, a->kvu, r->cos_t, r->sin_t);
        rc |= sm_insert_linear_bwd_input(c, a->dkvn, a->dkvu, p->kv_b.w, T, dc, kvw, 0);
        rc |= sm_insert_kv_norm_bwd(c, a->dkv, sm_grad(r, &p->kv_a_norm, mb), a->dkvn, a->kv,
                                    p->kv_a_norm.w, a->rstd_kv, a->dkpe, T, dc, dr);
        rc |= sm_insert_linear_bwd_input(c, a->dxn, a->dkv, p->kv_a.w, T, d, dc + dr, 0);
        if (dq > 0) {
            rc |= sm_insert_linear_bwd_input(c, a->dcqn, a->dq, p->q_b.w, T, dq, qw, 0);
            rc |= sm_insert_rmsnorm_bwd(c, a->dcq, dq, sm_grad(r, &p->q_a_norm, mb), a->dcqn,
                                        a->cq, dq, p->q_a_norm.w, a->rstd_q, T, dq, 0);
            rc |= sm_insert_linear_bwd_input(c, a->dxn, a->dcq, p->q_a.w, T, d, dq, 1);
        } else {
            rc |= sm_insert_linear_bwd_input(c, a->dxn, a->dq, p->q.w, T, d, qw, 1);
        }
        rc |= sm_residual_grad_pass(c, dxo, dy);
        rc |= sm_insert_rmsnorm_bwd(c, dxo, d, sm_grad(r, &p->in_norm, mb), a->dxn, x, d,
                                    p->in_norm.w, a->rstd_in, T, d, 1);
    }
    if (parts & SM_BWD_WEIGHT) {
        rc |= sm_insert_linear_bwd_weight(c, sm_grad(r, &p->kv_b, mb), a->dkvu, a->kvn, T, dc,
                                          kvw);
        rc |= sm_insert_linear_bwd_weight(c, sm_grad(r, &p->kv_a, mb), a->dkv, a->xn, T, d,
                                          dc + dr);
        if (dq > 0) {
            rc |= sm_insert_linear_bwd_weight(c, sm_grad(r, &p->q_b, mb), a->dq, a->cqn, T, dq,
                                              qw);
            rc |= sm_insert_linear_bwd_weight(c, sm_grad(r, &p->q_a, mb), a->dcq, a->xn, T, d,
                                              dq);
        } else {
            rc |= sm_insert_linear_bwd_weight(c, sm_grad(r, &p->q, mb), a->dq, a->xn, T, d, qw);
        }
    }
    return rc ? -1 : 0;
}
