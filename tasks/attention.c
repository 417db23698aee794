/* Codelets and insert helpers of the MLA attention family. */
#include "tasks/attention.h"

#include <string.h>
#include "tasks/dense_kernels.h"

static double sm_attn_flops(const sm_mla_dims *m)
{
    /* causal: about half of the S*S scores, for QK^T (dn+dr) and PV (dv) */
    return (double)m->B * m->H * m->S * (m->S + 1) * (m->dn + m->dr + m->dv);
}

static void sm_mla_attn_fwd_cpu(void *b[], void *arg)
{
    sm_mla_attn_fwd(SM_BUF(b, 0, float), SM_BUF(b, 1, float), SM_BUF(b, 2, float),
                    SM_BUF(b, 3, float), SM_BUF(b, 4, float), SM_BUF(b, 5, float),
                    SM_BUF(b, 6, float), arg);
}
SM_CODELET(mla_attn_fwd, sm_mla_attn_fwd_cpu);

static void sm_mla_attn_bwd_cpu(void *b[], void *arg)
{
    sm_mla_attn_bwd(SM_BUF(b, 0, float), SM_BUF(b, 1, float), SM_BUF(b, 2, float),
                    SM_BUF(b, 3, float), SM_BUF(b, 4, float), SM_BUF(b, 5, float),
                    SM_BUF(b, 6, float), SM_BUF(b, 7, float), SM_BUF(b, 8, float),
                    SM_BUF(b, 9, float), arg);
}
SM_CODELET(mla_attn_bwd, sm_mla_attn_bwd_cpu);

int sm_insert_mla_attn_fwd(const sm_op_ctx *c, const sm_mla_dims *m, sm_tensor *o, sm_tensor *P,
                           sm_tensor *q, sm_tensor *kv, sm_tensor *kvu, sm_tensor *cos_t,
                           sm_tensor *sin_t)
{
    sm_access acc[] = {SM_W(o), SM_W(P), SM_R(q), SM_R(kv), SM_R(kvu), SM_R(cos_t), SM_R(sin_t)};
    return sm_op_insert(c, &sm_cl_mla_attn_fwd, "attention_fwd", SM_FORWARD, -1, acc, 7, m,
                        sizeof *m, sm_attn_flops(m));
}

int sm_insert_mla_attn_bwd(const sm_op_ctx *c, const sm_mla_dims *m, sm_tensor *dq,
                           sm_tensor *dkpe, sm_tensor *dkvu, sm_tensor *dout, sm_tensor *P,
                           sm_tensor *q, sm_tensor *kv, sm_tensor *kvu, sm_tensor *cos_t,
                           sm_tensor *sin_t)
{
    sm_access acc[] = {SM_W(dq), SM_W(dkpe), SM_W(dkvu), SM_R(dout), SM_R(P),
                       SM_R(q), SM_R(kv), SM_R(kvu), SM_R(cos_t), SM_R(sin_t)};
    return sm_op_insert(c, &sm_cl_mla_attn_bwd, "attention_bwd", SM_BACKWARD_INPUT, -1, acc, 10,
                        m, sizeof *m, 2.0 * sm_attn_flops(m));
}

typedef struct { int T, dc, dr; } sm_kv_norm_args;

static void sm_kv_norm_bwd_cpu(void *b[], void *arg)
{
    const sm_kv_norm_args *a = arg;
    int ld = a->dc + a->dr;
    float *dkv = SM_BUF(b, 0, float);
    const float *dkpe = SM_BUF(b, 6, float);
    sm_rmsnorm_bwd(dkv, ld, SM_BUF(b, 1, float), SM_BUF(b, 2, float), SM_BUF(b, 3, float), ld,
                   SM_BUF(b, 4, float), SM_BUF(b, 5, float), a->T, a->dc, 0);
    for (int t = 0; t < a->T; t++)
        memcpy(dkv + (size_t)t * ld + a->dc, dkpe + (size_t)t * a->dr, a->dr * sizeof *dkpe);
}
SM_CODELET(kv_norm_bwd, sm_kv_norm_bwd_cpu);

int sm_insert_kv_norm_bwd(const sm_op_ctx *c, sm_tensor *dkv, sm_tensor *dg, sm_tensor *dkvn,
                          sm_tensor *kv, sm_tensor *g, sm_tensor *rstd, sm_tensor *dkpe, int T,
                          int dc, int dr)
{
    sm_kv_norm_args a = {T, dc, dr};
    sm_access acc[] = {SM_W(dkv), SM_RW(dg), SM_R(dkvn), SM_R(kv), SM_R(g), SM_R(rstd),
                       SM_R(dkpe)};
    return sm_op_insert(c, &sm_cl_kv_norm_bwd, "kv_norm_bwd", SM_BACKWARD_INPUT, -1, acc, 7, &a,
                        sizeof a, 8.0 * T * dc);
}
