/* Multi-Token Prediction modules as tasks (spec 7.1), forward and backward side by side. Depth
 * k predicts, at each of the first S - k positions of a sequence, the token k + 1 ahead:
 *   h_k = block_k(eh_proj([enorm(Emb(t[i + k])) ; hnorm(h_{k-1}[i])]))
 *   logits_k = head(shared_head.norm(h_k))
 * h_0 is the main model's final-norm output (the head's input, not detached); the embedding and
 * the head are the main model's tensors, so their gradients hold every depth's contribution.
 * The loss sums the cross-entropy over the positions with a target, scaled by lambda / D and
 * divided by the batch's B * S (spec 7.2). */
#include "model/model.h"

#include <stdio.h>
#include "tasks/dense.h"
#include "tasks/mtp.h"

const char *sm_mtp_name(char *buf, size_t n, const char *what, int k)
{
    if (k == 1) snprintf(buf, n, "%s", what);
    else snprintf(buf, n, "%s.%d", what, k);
    return buf;
}

/* The hidden state depth k starts from, and its gradient. */
static sm_tensor *sm_mtp_prev(const sm_run *r, int k, int mb)
{
    return k == 1 ? r->mb[mb].xf : r->mb[mb].mtp[k - 2].x[1];
}

static sm_tensor *sm_mtp_prev_grad(const sm_run *r, int k, int mb)
{
    return k == 1 ? r->mb[mb].dxf : r->mb[mb].mtp[k - 2].dx[2];
}

int sm_mtp_fwd(sm_run *r, const sm_op_ctx *c, int k, int mb)
{
    const sm_dims *x = &r->m->dims;
    const sm_mtp_params *p = &r->m->mtp[k - 1];
    sm_mtp_acts *a = &r->mb[mb].mtp[k - 1];
    int l = x->L + k - 1, T = r->shape[k].T, d = x->d;
    float eps = (float)r->m->cfg.rms_norm_eps;
    float scale = r->mtp_lambda / r->D / ((float)r->Bg * r->S);
    sm_op_ctx ctx = *c;
    ctx.layer = l;
    if (sm_insert_embedding_fwd(&ctx, a->emb, a->ids, r->m->embed.w, T, d) ||
        sm_insert_rmsnorm_fwd(&ctx, a->en, a->rstd_e, a->emb, d, p->enorm.w, T, d, eps) ||
        sm_insert_seq_head_fwd(&ctx, a->h, sm_mtp_prev(r, k, mb), r->Bm, r->shape[k - 1].S,
                               r->shape[k].S, d) ||
        sm_insert_rmsnorm_fwd(&ctx, a->hn, a->rstd_h, a->h, d, p->hnorm.w, T, d, eps) ||
        sm_insert_concat_cols_fwd(&ctx, a->cat, a->en, a->hn, T, d, d) ||
        sm_insert_linear_fwd(&ctx, a->x[0], a->cat, p->eh_proj.w, NULL, T, 2 * d, d))
        return -1;
    ctx.part = SM_PART_ATTENTION;  /* the FFN block names its own parts */
    if (sm_attention_block_fwd(r, &ctx, l, mb) || sm_ffn_block_fwd(r, &ctx, l, mb)) return -1;
    ctx.part = SM_PART_NONE;
    return sm_insert_rmsnorm_fwd(&ctx, a->xf, a->rstd_f, a->x[1], d, p->head_norm.w, T, d, eps) ||
                   sm_insert_linear_fwd(&ctx, a->logits, a->xf, r->m->head.w, NULL, T, d, x->V) ||
                   sm_insert_cross_entropy(&ctx, a->loss_part, r->backward ? a->dlogits : NULL,
                                           a->logits, a->targets, T, x->V, scale)
               ? -1
               : 0;
}

/* B: the head's and shared_head.norm's input gradients into the block's output gradient
 * (added to what depth k + 1 put there), the block, eh_proj, the two norms, and the previous
 * depth's share (depth 1 adds into the head input's gradient). W: the head's, the block's and
 * eh_proj's weight gradients (the embedding's: sm_mtp_embedding_bwd). */
int sm_mtp_bwd(sm_run *r, const sm_op_ctx *c, int k, int mb, int parts)
{
    const sm_dims *x = &r->m->dims;
    sm_model *m = r->m;
    const sm_mtp_params *p = &m->mtp[k - 1];
    sm_mtp_acts *a = &r->mb[mb].mtp[k - 1];
    int l = x->L + k - 1, T = r->shape[k].T, d = x->d, V = x->V;
    int input = parts & SM_BWD_INPUT, weight = parts & SM_BWD_WEIGHT;
    sm_op_ctx ctx = *c;
    ctx.layer = l;
    if (input &&
        (sm_insert_linear_bwd_input(&ctx, a->dxf, a->dlogits, m->head.w, T, d, V, 0) ||
         sm_insert_rmsnorm_bwd(&ctx, a->dx[2], d, sm_grad(r, &p->head_norm, mb), a->dxf, a->x[1],
                               d, p->head_norm.w, a->rstd_f, T, d, k < r->D)))
        return -1;
    if (weight &&
        sm_insert_linear_bwd_weight(&ctx, sm_grad(r, &m->head, mb), a->dlogits, a->xf, T, d, V))
        return -1;
    ctx.part = SM_PART_ATTENTION;
    if (sm_ffn_block_bwd(r, &ctx, l, mb, parts) || sm_attention_block_bwd(r, &ctx, l, mb, parts))
        return -1;
    ctx.part = SM_PART_NONE;
    if (weight && sm_insert_linear_bwd_weight(&ctx, sm_grad(r, &p->eh_proj, mb), a->dx[0], a->cat,
                                              T, 2 * d, d))
        return -1;
    if (input &&
        (sm_insert_linear_bwd_input(&ctx, a->dcat, a->dx[0], p->eh_proj.w, T, 2 * d, d, 0) ||
         sm_insert_concat_cols_bwd(&ctx, a->den, a->dhn, a->dcat, T, d, d) ||
         sm_insert_rmsnorm_bwd(&ctx, a->demb, d, sm_grad(r, &p->enorm, mb), a->den, a->emb, d,
                               p->enorm.w, a->rstd_e, T, d, 0) ||
         sm_insert_rmsnorm_bwd(&ctx, a->dh, d, sm_grad(r, &p->hnorm, mb), a->dhn, a->h, d,
                               p->hnorm.w, a->rstd_h, T, d, 0) ||
         sm_insert_seq_head_bwd(&ctx, sm_mtp_prev_grad(r, k, mb), a->dh, r->Bm,
                                r->shape[k - 1].S, r->shape[k].S, d, k == 1)))
        return -1;
    return 0;
}

int sm_mtp_embedding_bwd(sm_run *r, const sm_op_ctx *c, int k, int mb)
{
    sm_mtp_acts *a = &r->mb[mb].mtp[k - 1];
    sm_op_ctx ctx = *c;
    ctx.layer = r->m->dims.L + k - 1;
    return sm_insert_embedding_bwd(&ctx, sm_grad(r, &r->m->embed, mb), a->ids, a->demb,
                                   r->shape[k].T, r->m->dims.d);
}

int sm_mtp_upload(sm_run *r, int k, int mb, const int32_t *ids, const int32_t *targets,
                  const int32_t *mtp_targets, sm_error *err)
{
    sm_mtp_acts *a = &r->mb[mb].mtp[k - 1];
    int S = r->S, n = S - k, V = r->m->dims.V, rc = 0;
    int32_t *id = sm_tensor_acquire(a->ids, STARPU_W);
    int32_t *tg = sm_tensor_acquire(a->targets, STARPU_W);
    for (int b = 0; b < r->Bm; b++) {
        size_t seq = ((size_t)mb * r->Bm + b) * S;
        for (int i = 0; i < n; i++) {
            int32_t t = mtp_targets ? mtp_targets[seq + i] : targets ? targets[seq + i + k] : -1;
            if (t < -1 || t >= V) {
                char what[32];
                rc = sm_fail(err, "%s: target %d at position %zu is outside the vocabulary "
                                  "[0, %d) (or -1: none)",
                             sm_mtp_name(what, sizeof what, "mtp_targets", k), t, seq + i, V);
                break;
            }
            id[(size_t)b * n + i] = ids[seq + i + k];
            tg[(size_t)b * n + i] = t;
        }
    }
    sm_tensor_release(a->targets);
    sm_tensor_release(a->ids);
    return rc;
}
