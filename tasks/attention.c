/* Codelets and insert helpers of the MLA attention family. */
#include "tasks/attention.h"

#include <string.h>
#include "tasks/dense_kernels.h"

static double sm_attn_flops(const sm_mla_dims *m)
{
    /* causal: about half of the S*S scores, for QK^T (dn+dr) and PV (dv) */
    return (double)m->B * m->H * m->S * (m->S + 1) * (m->dn + m->dr + m->dv);
}

enum {
    MLA_ATTN_FWD_O, MLA_ATTN_FWD_Q, MLA_ATTN_FWD_KV, MLA_ATTN_FWD_KVU, MLA_ATTN_FWD_COS,
    MLA_ATTN_FWD_SIN, MLA_ATTN_FWD_NBUF
};
enum {
    MLA_ATTN_BWD_DQ, MLA_ATTN_BWD_DKPE, MLA_ATTN_BWD_DKVU, MLA_ATTN_BWD_DOUT, MLA_ATTN_BWD_Q,
    MLA_ATTN_BWD_KV, MLA_ATTN_BWD_KVU, MLA_ATTN_BWD_COS, MLA_ATTN_BWD_SIN, MLA_ATTN_BWD_NBUF
};

static void sm_mla_attn_fwd_cpu(void *b[], void *arg)
{
    sm_mla_attn_fwd(SM_BUF(b, MLA_ATTN_FWD_O, float), SM_BUF(b, MLA_ATTN_FWD_Q, float),
                    SM_BUF(b, MLA_ATTN_FWD_KV, float), SM_BUF(b, MLA_ATTN_FWD_KVU, float),
                    SM_BUF(b, MLA_ATTN_FWD_COS, float), SM_BUF(b, MLA_ATTN_FWD_SIN, float), arg);
}
SM_CODELET(mla_attn_fwd, sm_mla_attn_fwd_cpu);

static void sm_mla_attn_bwd_cpu(void *b[], void *arg)
{
    sm_mla_attn_bwd(SM_BUF(b, MLA_ATTN_BWD_DQ, float), SM_BUF(b, MLA_ATTN_BWD_DKPE, float),
                    SM_BUF(b, MLA_ATTN_BWD_DKVU, float), SM_BUF(b, MLA_ATTN_BWD_DOUT, float),
                    SM_BUF(b, MLA_ATTN_BWD_Q, float), SM_BUF(b, MLA_ATTN_BWD_KV, float),
                    SM_BUF(b, MLA_ATTN_BWD_KVU, float), SM_BUF(b, MLA_ATTN_BWD_COS, float),
                    SM_BUF(b, MLA_ATTN_BWD_SIN, float), arg);
}
SM_CODELET(mla_attn_bwd, sm_mla_attn_bwd_cpu);

int sm_insert_mla_attn_fwd(const sm_op_ctx *c, const sm_mla_dims *m, sm_tensor *o, sm_tensor *q,
                           sm_tensor *kv, sm_tensor *kvu, sm_tensor *cos_t, sm_tensor *sin_t)
{
    sm_access acc[MLA_ATTN_FWD_NBUF] = {
        [MLA_ATTN_FWD_O] = SM_W(o), [MLA_ATTN_FWD_Q] = SM_R(q),
        [MLA_ATTN_FWD_KV] = SM_R(kv), [MLA_ATTN_FWD_KVU] = SM_R(kvu),
        [MLA_ATTN_FWD_COS] = SM_R(cos_t), [MLA_ATTN_FWD_SIN] = SM_R(sin_t)};
    return sm_op_insert(c, &sm_cl_mla_attn_fwd, "attention_fwd", SM_FORWARD, -1, acc,
                        MLA_ATTN_FWD_NBUF, m, sizeof *m, sm_attn_flops(m));
}

int sm_insert_mla_attn_bwd(const sm_op_ctx *c, const sm_mla_dims *m, sm_tensor *dq,
                           sm_tensor *dkpe, sm_tensor *dkvu, sm_tensor *dout, sm_tensor *q,
                           sm_tensor *kv, sm_tensor *kvu, sm_tensor *cos_t, sm_tensor *sin_t)
{
    sm_access acc[MLA_ATTN_BWD_NBUF] = {
        [MLA_ATTN_BWD_DQ] = SM_W(dq), [MLA_ATTN_BWD_DKPE] = SM_W(dkpe),
        [MLA_ATTN_BWD_DKVU] = SM_W(dkvu), [MLA_ATTN_BWD_DOUT] = SM_R(dout),
        [MLA_ATTN_BWD_Q] = SM_R(q), [MLA_ATTN_BWD_KV] = SM_R(kv),
        [MLA_ATTN_BWD_KVU] = SM_R(kvu), [MLA_ATTN_BWD_COS] = SM_R(cos_t),
        [MLA_ATTN_BWD_SIN] = SM_R(sin_t)};
    /* the model's flops: the probabilities' recomputation is not counted */
    return sm_op_insert(c, &sm_cl_mla_attn_bwd, "attention_bwd", SM_BACKWARD_INPUT, -1, acc,
                        MLA_ATTN_BWD_NBUF, m, sizeof *m, 2.0 * sm_attn_flops(m));
}

typedef struct { int T, dc, dr; } sm_kv_norm_args;
enum {
    KV_NORM_BWD_DKV, KV_NORM_BWD_DG, KV_NORM_BWD_DKVN, KV_NORM_BWD_KV, KV_NORM_BWD_G,
    KV_NORM_BWD_RSTD, KV_NORM_BWD_DKPE, KV_NORM_BWD_NBUF
};

static void sm_kv_norm_bwd_cpu(void *b[], void *arg)
{
    const sm_kv_norm_args *a = arg;
    int ld = a->dc + a->dr;
    float *dkv = SM_BUF(b, KV_NORM_BWD_DKV, float);
    const float *dkpe = SM_BUF(b, KV_NORM_BWD_DKPE, float);
    sm_rmsnorm_bwd(dkv, ld, SM_BUF(b, KV_NORM_BWD_DG, float), SM_BUF(b, KV_NORM_BWD_DKVN, float),
                   SM_BUF(b, KV_NORM_BWD_KV, float), ld, SM_BUF(b, KV_NORM_BWD_G, float),
                   SM_BUF(b, KV_NORM_BWD_RSTD, float), a->T, a->dc, 0);
    for (int t = 0; t < a->T; t++)
        memcpy(dkv + (size_t)t * ld + a->dc, dkpe + (size_t)t * a->dr, a->dr * sizeof *dkpe);
}
SM_CODELET(kv_norm_bwd, sm_kv_norm_bwd_cpu);

int sm_insert_kv_norm_bwd(const sm_op_ctx *c, sm_tensor *dkv, sm_tensor *dg, sm_tensor *dkvn,
                          sm_tensor *kv, sm_tensor *g, sm_tensor *rstd, sm_tensor *dkpe, int T,
                          int dc, int dr)
{
    sm_kv_norm_args a = {T, dc, dr};
    sm_access acc[KV_NORM_BWD_NBUF] = {
        [KV_NORM_BWD_DKV] = SM_W(dkv), [KV_NORM_BWD_DG] = SM_RW(dg),
        [KV_NORM_BWD_DKVN] = SM_R(dkvn), [KV_NORM_BWD_KV] = SM_R(kv), [KV_NORM_BWD_G] = SM_R(g),
        [KV_NORM_BWD_RSTD] = SM_R(rstd), [KV_NORM_BWD_DKPE] = SM_R(dkpe)};
    return sm_op_insert(c, &sm_cl_kv_norm_bwd, "kv_norm_bwd", SM_BACKWARD_INPUT, -1, acc,
                        KV_NORM_BWD_NBUF, &a, sizeof a, 8.0 * T * dc);
}
