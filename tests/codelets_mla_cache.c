/* Codelet cases of MLA inference over the latent cache (tasks/mla_cache.h): two new positions
 * appended after three cached ones, and their absorbed attention over all five. */
#include "tasks/attention_kernels.h"
#include "tasks/mla_cache.h"
#include "tests/codelet_harness.h"

enum { MAX_LEN = 6 };

static sm_mla_cache_dims cache_dims(void)
{
    sm_mla_cache_dims m = {.H = 2, .dn = 3, .dr = 4, .dv = 3, .dc = 5, .pos = 3, .n = 2};
    m.scale = (float)sm_mla_softmax_scale(m.dn + m.dr, NULL);
    return m;
}

/* The cos/sin tables of MAX_LEN positions. */
static void rope_tables(fx *f, const sm_mla_cache_dims *m, ct **cos_t, ct **sin_t)
{
    double theta[2];
    float c[MAX_LEN * 2], s[MAX_LEN * 2];
    sm_rope_freqs(theta, m->dr, 10000.0, NULL);
    sm_rope_table(c, s, theta, MAX_LEN, m->dr);
    *cos_t = fx_tensor(f, "cos", SM_F32, MAX_LEN * m->dr / 2, c);
    *sin_t = fx_tensor(f, "sin", SM_F32, MAX_LEN * m->dr / 2, s);
}

static void case_mla_cache_append(fx *f)
{
    sm_mla_cache_dims m = cache_dims();
    ct *cos_t, *sin_t, *cache = fx_rand(f, "cache", MAX_LEN * (m.dc + m.dr));
    ct *kvn = fx_rand(f, "kvn", m.n * m.dc), *kv = fx_rand(f, "kv", m.n * (m.dc + m.dr));
    rope_tables(f, &m, &cos_t, &sin_t);
    int rc = sm_insert_mla_cache_append(&f->c, &m, cache->t, kvn->t, kv->t, cos_t->t, sin_t->t);
    sm_mla_cache_append(RF(cache), RF(kvn), RF(kv), RF(cos_t), RF(sin_t), &m);
    fx_check(f, "mla_cache_append", rc,
             WANT("cache_append", 3.0 * m.n * m.dr, SM_RW(cache->t), SM_R(kvn->t), SM_R(kv->t),
                  SM_R(cos_t->t), SM_R(sin_t->t)));
}

static void case_mla_absorbed_attn(fx *f)
{
    sm_mla_cache_dims m = cache_dims();
    ct *cos_t, *sin_t, *o = fx_rand(f, "o", m.n * m.H * m.dv);
    ct *q = fx_rand(f, "q", m.n * m.H * (m.dn + m.dr));
    ct *cache = fx_rand(f, "cache", MAX_LEN * (m.dc + m.dr));
    ct *wkvb = fx_rand(f, "wkvb", m.H * (m.dn + m.dv) * m.dc);
    rope_tables(f, &m, &cos_t, &sin_t);
    int rc = sm_insert_mla_absorbed_attn(&f->c, &m, o->t, q->t, cache->t, wkvb->t, cos_t->t,
                                         sin_t->t);
    sm_mla_absorbed_attn(RF(o), RF(q), RF(cache), RF(wkvb), RF(cos_t), RF(sin_t), &m);
    fx_check(f, "mla_absorbed_attn", rc,
             WANT("attention_absorbed", sm_mla_absorbed_flops(&m), SM_W(o->t), SM_R(q->t),
                  SM_R(cache->t), SM_R(wkvb->t), SM_R(cos_t->t), SM_R(sin_t->t)));
}

const helper_case codelet_cases_mla_cache[] = {
    HELPER_CASE(mla_cache_append), HELPER_CASE(mla_absorbed_attn), {NULL, NULL}};
