/* Codelet cases of the MLA attention family (tasks/attention.h): attention forward and
 * backward on two sequences with RoPE tables, and the KV-latent norm backward. */
#include <string.h>
#include "tasks/attention.h"
#include "tasks/dense_kernels.h"
#include "tests/codelet_harness.h"

static sm_mla_dims mla_dims(void)
{
    sm_mla_dims m = {.B = 2, .S = 4, .H = 2, .dn = 3, .dr = 4, .dv = 3, .dc = 5};
    m.scale = (float)sm_mla_softmax_scale(m.dn + m.dr, NULL);
    return m;
}

/* q, kv, kvu and the rope tables of one attention problem */
typedef struct attn_in {
    ct *q, *kv, *kvu, *cos_t, *sin_t;
} attn_in;

static attn_in fx_attn_in(fx *f, const sm_mla_dims *m)
{
    int ntok = m->B * m->S;
    double theta[8];
    float cos_t[4 * 2], sin_t[4 * 2];
    sm_rope_freqs(theta, m->dr, 10000.0, NULL);
    sm_rope_table(cos_t, sin_t, theta, m->S, m->dr);
    return (attn_in){fx_rand(f, "q", ntok * m->H * (m->dn + m->dr)),
                     fx_rand(f, "kv", ntok * (m->dc + m->dr)),
                     fx_rand(f, "kvu", ntok * m->H * (m->dn + m->dv)),
                     fx_tensor(f, "cos", SM_F32, m->S * m->dr / 2, cos_t),
                     fx_tensor(f, "sin", SM_F32, m->S * m->dr / 2, sin_t)};
}

static double attn_flops(const sm_mla_dims *m)
{
    return (double)m->B * m->H * m->S * (m->S + 1) * (m->dn + m->dr + m->dv);
}

static void case_mla_attn_fwd(fx *f)
{
    sm_mla_dims m = mla_dims();
    int ntok = m.B * m.S;
    attn_in a = fx_attn_in(f, &m);
    ct *o = fx_rand(f, "o", ntok * m.H * m.dv);
    int rc = sm_insert_mla_attn_fwd(&f->c, &m, o->t, a.q->t, a.kv->t, a.kvu->t, a.cos_t->t,
                                    a.sin_t->t);
    sm_mla_attn_fwd(RF(o), RF(a.q), RF(a.kv), RF(a.kvu), RF(a.cos_t), RF(a.sin_t), &m);
    fx_check(f, "mla_attn_fwd", rc,
             WANT("attention_fwd", attn_flops(&m), SM_W(o->t), SM_R(a.q->t),
                  SM_R(a.kv->t), SM_R(a.kvu->t), SM_R(a.cos_t->t), SM_R(a.sin_t->t)));
}

static void case_mla_attn_bwd(fx *f)
{
    sm_mla_dims m = mla_dims();
    int ntok = m.B * m.S;
    attn_in a = fx_attn_in(f, &m);
    ct *dq = fx_rand(f, "dq", ntok * m.H * (m.dn + m.dr)), *dkpe = fx_rand(f, "dkpe", ntok * m.dr);
    ct *dkvu = fx_rand(f, "dkvu", ntok * m.H * (m.dn + m.dv));
    ct *dout = fx_rand(f, "dout", ntok * m.H * m.dv);
    int rc = sm_insert_mla_attn_bwd(&f->c, &m, dq->t, dkpe->t, dkvu->t, dout->t, a.q->t, a.kv->t,
                                    a.kvu->t, a.cos_t->t, a.sin_t->t);
    sm_mla_attn_bwd(RF(dq), RF(dkpe), RF(dkvu), RF(dout), RF(a.q), RF(a.kv), RF(a.kvu),
                    RF(a.cos_t), RF(a.sin_t), &m);
    fx_check(f, "mla_attn_bwd", rc,
             WANT("attention_bwd", 2 * attn_flops(&m), SM_W(dq->t), SM_W(dkpe->t),
                  SM_W(dkvu->t), SM_R(dout->t), SM_R(a.q->t), SM_R(a.kv->t), SM_R(a.kvu->t),
                  SM_R(a.cos_t->t), SM_R(a.sin_t->t)));
}

static void case_kv_norm_bwd(fx *f)
{
    enum { T = 6, DC = 5, DR = 4, LD = DC + DR };
    ct *dkv = fx_rand(f, "dkv", T * LD), *dg = fx_rand(f, "dg", DC);
    ct *dkvn = fx_rand(f, "dkvn", T * DC), *kv = fx_rand(f, "kv", T * LD);
    ct *g = fx_rand(f, "g", DC), *rstd = fx_randn(f, "rstd", T, 0.2f, 0.5f);
    ct *dkpe = fx_rand(f, "dkpe", T * DR);
    int rc = sm_insert_kv_norm_bwd(&f->c, dkv->t, dg->t, dkvn->t, kv->t, g->t, rstd->t, dkpe->t,
                                   T, DC, DR);
    sm_rmsnorm_bwd(RF(dkv), LD, RF(dg), RF(dkvn), RF(kv), LD, RF(g), RF(rstd), T, DC, 0);
    for (int t = 0; t < T; t++)
        memcpy(RF(dkv) + t * LD + DC, RF(dkpe) + t * DR, DR * sizeof(float));
    fx_check(f, "kv_norm_bwd", rc,
             WANT("kv_norm_bwd", 8.0 * T * DC, SM_W(dkv->t), SM_RW(dg->t), SM_R(dkvn->t),
                  SM_R(kv->t), SM_R(g->t), SM_R(rstd->t), SM_R(dkpe->t)));
}

const helper_case codelet_cases_attention[] = {
    HELPER_CASE(mla_attn_fwd), HELPER_CASE(mla_attn_bwd), HELPER_CASE(kv_norm_bwd), {NULL, NULL}};
