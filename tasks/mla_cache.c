/* Codelets and insert helpers of MLA inference over the latent cache. */
#include "tasks/mla_cache.h"

enum {
    CACHE_APPEND_CACHE, CACHE_APPEND_KVN, CACHE_APPEND_KV, CACHE_APPEND_COS, CACHE_APPEND_SIN,
    CACHE_APPEND_NBUF
};
enum {
    ABSORBED_O, ABSORBED_Q, ABSORBED_CACHE, ABSORBED_WKVB, ABSORBED_COS, ABSORBED_SIN,
    ABSORBED_NBUF
};

static void sm_mla_cache_append_cpu(void *b[], void *arg)
{
    sm_mla_cache_append(SM_BUF(b, CACHE_APPEND_CACHE, float), SM_BUF(b, CACHE_APPEND_KVN, float),
                        SM_BUF(b, CACHE_APPEND_KV, float), SM_BUF(b, CACHE_APPEND_COS, float),
                        SM_BUF(b, CACHE_APPEND_SIN, float), arg);
}
SM_CODELET(mla_cache_append, sm_mla_cache_append_cpu);

static void sm_mla_absorbed_attn_cpu(void *b[], void *arg)
{
    sm_mla_absorbed_attn(SM_BUF(b, ABSORBED_O, float), SM_BUF(b, ABSORBED_Q, float),
                         SM_BUF(b, ABSORBED_CACHE, float), SM_BUF(b, ABSORBED_WKVB, float),
                         SM_BUF(b, ABSORBED_COS, float), SM_BUF(b, ABSORBED_SIN, float), arg);
}
SM_CODELET(mla_absorbed_attn, sm_mla_absorbed_attn_cpu);

int sm_insert_mla_cache_append(const sm_op_ctx *c, const sm_mla_cache_dims *m, sm_tensor *cache,
                               sm_tensor *kvn, sm_tensor *kv, sm_tensor *cos_t,
                               sm_tensor *sin_t)
{
    /* read-write: the earlier positions' rows stay */
    sm_access acc[CACHE_APPEND_NBUF] = {
        [CACHE_APPEND_CACHE] = SM_RW(cache), [CACHE_APPEND_KVN] = SM_R(kvn),
        [CACHE_APPEND_KV] = SM_R(kv), [CACHE_APPEND_COS] = SM_R(cos_t),
        [CACHE_APPEND_SIN] = SM_R(sin_t)};
    return sm_op_insert(c, &sm_cl_mla_cache_append, "cache_append", SM_FORWARD, -1, acc,
                        CACHE_APPEND_NBUF, m, sizeof *m, 3.0 * m->n * m->dr);
}

int sm_insert_mla_absorbed_attn(const sm_op_ctx *c, const sm_mla_cache_dims *m, sm_tensor *o,
                                sm_tensor *q, sm_tensor *cache, sm_tensor *wkvb,
                                sm_tensor *cos_t, sm_tensor *sin_t)
{
    sm_access acc[ABSORBED_NBUF] = {
        [ABSORBED_O] = SM_W(o), [ABSORBED_Q] = SM_R(q), [ABSORBED_CACHE] = SM_R(cache),
        [ABSORBED_WKVB] = SM_R(wkvb), [ABSORBED_COS] = SM_R(cos_t), [ABSORBED_SIN] = SM_R(sin_t)};
    return sm_op_insert(c, &sm_cl_mla_absorbed_attn, "attention_absorbed", SM_FORWARD, -1, acc,
                        ABSORBED_NBUF, m, sizeof *m, sm_mla_absorbed_flops(m));
}
