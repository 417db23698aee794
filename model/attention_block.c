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

/* On entry r->mb[mb].dres holds dL/dx1; on exit dL/dx (the residual passes straight through,
 * the attention path is added by the input norm's backward). */
int sm_attention_block_bwd(sm_run *r, const sm_op_ctx *c, int l, int mb)
{
    const sm_config *cf = &r->m->cfg;
    const sm_layer_params *p = &r->m->layers[l];
    sm_layer_acts *a = &r->mb[mb].layers[l];
    sm_tensor *x = r->mb[mb].x[l], *dres = r->mb[mb].dres;
    int T = r->T, d = cf->hidden_size, H = cf->num_attention_heads, dq = cf->q_lora_rank;
    int dc = cf->kv_lora_rank, dr = cf->qk_rope_head_dim;
    int qw = H * (cf->qk_nope_head_dim + dr), kvw = H * (cf->qk_nope_head_dim + cf->v_head_dim);
    int ow = H * cf->v_head_dim;
    int rc = sm_insert_linear_bwd_input(c, a->dout, dres, p->o.w, T, ow, d, 0);
    rc |= sm_insert_linear_bwd_weight(c, p->o.g, dres, a->o, T, ow, d);
    rc |= sm_insert_mla_attn_bwd(c, &r->mla, a->dq, a->dkpe, a->dkvu, a->dout, a->P, a->q, a->kv,
                                 a->kvu, r->cos_t, r->sin_t);
    rc |= sm_insert_linear_bwd_input(c, a->dkvn, a->dkvu, p->kv_b.w, T, dc, kvw, 0);
    rc |= sm_insert_linear_bwd_weight(c, p->kv_b.g, a->dkvu, a->kvn, T, dc, kvw);
    rc |= sm_insert_kv_norm_bwd(c, a->dkv, p->kv_a_norm.g, a->dkvn, a->kv, p->kv_a_norm.w,
                                a->rstd_kv, a->dkpe, T, dc, dr);
    rc |= sm_insert_linear_bwd_input(c, a->dxn, a->dkv, p->kv_a.w, T, d, dc + dr, 0);
    rc |= sm_insert_linear_bwd_weight(c, p->kv_a.g, a->dkv, a->xn, T, d, dc + dr);
    if (dq > 0) {
        rc |= sm_insert_linear_bwd_input(c, a->dcqn, a->dq, p->q_b.w, T, dq, qw, 0);
        rc |= sm_insert_linear_bwd_weight(c, p->q_b.g, a->dq, a->cqn, T, dq, qw);
        rc |= sm_insert_rmsnorm_bwd(c, a->dcq, dq, p->q_a_norm.g, a->dcqn, a->cq, dq,
                                    p->q_a_norm.w, a->rstd_q, T, dq, 0);
        rc |= sm_insert_linear_bwd_input(c, a->dxn, a->dcq, p->q_a.w, T, d, dq, 1);
        rc |= sm_insert_linear_bwd_weight(c, p->q_a.g, a->dcq, a->xn, T, d, dq);
    } else {
        rc |= sm_insert_linear_bwd_input(c, a->dxn, a->dq, p->q.w, T, d, qw, 1);
        rc |= sm_insert_linear_bwd_weight(c, p->q.g, a->dq, a->xn, T, d, qw);
    }
    rc |= sm_insert_rmsnorm_bwd(c, dres, d, p->in_norm.g, a->dxn, x, d, p->in_norm.w, a->rstd_in,
                                T, d, 1);
    return rc ? -1 : 0;
}
