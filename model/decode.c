/* The decode context (decode.h): per layer a latent cache and one step's activations for up
 * to max_step positions (a step of n positions uses their first n rows), the RoPE tables of
 * max_len positions, and the graph of one step: embedding, per layer the attention half over
 * the cache and the FFN or MoE half on one rank, the final norm and the head; an MTP depth's
 * step: the embedding of the tokens k ahead and the given hidden states, their norms,
 * eh_proj, the depth's block (as a layer's, over its own cache), its norm and the head. */
#include "model/decode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tasks/dense.h"
#include "tasks/mla_cache.h"
#include "tasks/moe.h"
#include "tasks/mtp.h"

struct sm_decode {
    sm_model *m;
    int max_len, max_step, len, D;
    float scale;                             /* softmax scale, YaRN's mscale included */
    sm_tensor_list owned;
    sm_tensor *ids, *cos_t, *sin_t;
    sm_tensor **x;                           /* residual stream [L + 1] */
    sm_tensor *xf, *rstd_f, *logits;
    /* [L + D], the layers then the MTP blocks: a block's latent cache [max_len, dc + dr], and
     * one step's forward tensors (those of model.h's sm_layer_acts, kvu and the backward's
     * left out; routed experts' rows [E]) */
    sm_tensor **cache;
    sm_layer_acts *layers;
    sm_mtp_acts *mtp;                        /* [D]: MTP depth k's step tensors */
    int *mtp_len;                            /* [D]: the positions in its block's cache */
};

int sm_decode_cache_floats(const sm_config *c)
{
    return c->kv_lora_rank + c->qk_rope_head_dim;
}

int sm_decode_full_kv_floats(const sm_config *c)
{
    return c->num_attention_heads * (c->qk_nope_head_dim + c->qk_rope_head_dim + c->v_head_dim);
}

int sm_decode_len(const sm_decode *d, int k) { return k ? d->mtp_len[k - 1] : d->len; }

void sm_decode_rewind(sm_decode *d, int k, int len)
{
    int *at = k ? &d->mtp_len[k - 1] : &d->len;
    if (len >= 0 && len < *at) *at = len;
}

/* ---- allocation ---- */

typedef struct sm_decode_alloc {
    sm_decode *d;
    int l;                                   /* -1 outside layers */
    const char *prefix;                      /* of the names outside layers */
    sm_error *err;
    int failed;
} sm_decode_alloc;

/* "decode.L<l>.<what>" (or "decode.<what>"), [n0, n1] (n1 0: [n0]); resizable rows of n1
 * elements when n0 is 0. */
static sm_tensor *sm_decode_tensor(sm_decode_alloc *a, const char *what, sm_dtype dt,
                                   sm_role role, int64_t n0, int64_t n1)
{
    if (a->failed) return NULL;
    char name[128];
    int64_t shape[2] = {n0, n1};
    sm_graph *g = a->d->m->g;
    if (a->l >= 0) snprintf(name, sizeof name, "decode.L%d.%s", a->l, what);
    else snprintf(name, sizeof name, "decode.%s%s", a->prefix, what);
    sm_tensor *t = n0 ? sm_tensor_new_in(g, &a->d->owned, name, dt, role, n1 ? 2 : 1, shape,
                                         a->err)
                      : sm_tensor_rows_new_in(g, &a->d->owned, name, dt, role, n1, a->err);
    if (!t) a->failed = 1;
    return t;
}

#define ACT(what, n0, n1) sm_decode_tensor(a, what, SM_F32, SM_ACT, n0, n1)

static sm_tensor *sm_decode_maker(void *ctx, const char *what, sm_dtype dt, int64_t n0,
                                  int64_t n1)
{
    return sm_decode_tensor(ctx, what, dt, SM_ACT, n0, n1);
}

/* The routed experts' rows of one MoE layer, "<what>.<e>". */
static sm_tensor **sm_decode_expert_rows(sm_decode_alloc *a, const char *what, int width)
{
    int E = a->d->m->dims.E;
    sm_tensor **v = a->failed ? NULL : calloc(E, sizeof *v);
    if (!v && !a->failed) {
        sm_fail(a->err, "out of memory for the experts' rows");
        a->failed = 1;
    }
    for (int e = 0; e < E && !a->failed; e++) {
        char name[64];
        snprintf(name, sizeof name, "%s.%d", what, e);
        v[e] = ACT(name, 0, width);
    }
    return v;
}

static void sm_decode_layer_alloc(sm_decode_alloc *a, int l)
{
    const sm_dims *dm = &a->d->m->dims;
    sm_layer_acts *x = &a->d->layers[l];
    a->l = l;
    a->d->cache[l] = ACT("latent_cache", a->d->max_len, dm->dc + dm->dr);
    sm_layer_fwd_alloc(x, dm, l, a->d->max_step, 0, sm_decode_maker, a);
    if (!sm_dims_layer_is_moe(dm, l)) return;
    if (dm->shared_I > 0) x->ys = ACT("shared_y", a->d->max_step, dm->d);
    x->xe = sm_decode_expert_rows(a, "xe", dm->d);
    x->ye = sm_decode_expert_rows(a, "ye", dm->d);
    x->eh1 = sm_decode_expert_rows(a, "h1", dm->expert_I);
    x->eh3 = sm_decode_expert_rows(a, "h3", dm->expert_I);
}

static int sm_decode_alloc_all(sm_decode *d, sm_error *err)
{
    const sm_dims *dm = &d->m->dims;
    sm_decode_alloc a0 = {.d = d, .l = -1, .prefix = "", .err = err}, *a = &a0;
    int T = d->max_step, L = dm->L;
    d->ids = sm_decode_tensor(a, "input_ids", SM_I32, SM_INPUT, T, 0);
    d->cos_t = sm_decode_tensor(a, "rope.cos", SM_F32, SM_INPUT, d->max_len, dm->dr / 2);
    d->sin_t = sm_decode_tensor(a, "rope.sin", SM_F32, SM_INPUT, d->max_len, dm->dr / 2);
    d->xf = ACT("xf", T, dm->d);
    d->rstd_f = ACT("rstd_f", T, 0);
    d->logits = ACT("logits", T, dm->V);
    if (!(d->x = calloc(L + 1, sizeof *d->x)) ||
        !(d->layers = calloc(L + d->D, sizeof *d->layers)) ||
        !(d->cache = calloc(L + d->D, sizeof *d->cache)) ||
        (d->D && (!(d->mtp = calloc(d->D, sizeof *d->mtp)) ||
                  !(d->mtp_len = calloc(d->D, sizeof *d->mtp_len)))))
        return sm_fail(err, "out of memory for the decode context");
    for (int l = 0; l <= L; l++) {
        char name[32];
        snprintf(name, sizeof name, "x%d", l);
        d->x[l] = ACT(name, T, dm->d);
    }
    for (int l = 0; l < L + d->D; l++) sm_decode_layer_alloc(a, l);
    for (int k = 1; k <= d->D; k++) {
        char p[16];
        snprintf(p, sizeof p, "mtp%d.", k);
        a->l = -1;
        a->prefix = p;
        sm_mtp_fwd_alloc(&d->mtp[k - 1], dm, T, sm_decode_maker, a);
        a->prefix = "";
    }
    return a->failed ? -1 : 0;
}

/* The RoPE tables of positions 0 .. max_len-1 and the softmax scale, as a run's. */
static int sm_decode_rope(sm_decode *d, sm_error *err)
{
    d->scale = sm_model_softmax_scale(d->m);
    return sm_model_rope_tables(d->m, d->max_len, d->cos_t->data, d->sin_t->data, err);
}

sm_decode *sm_decode_new(sm_model *m, int max_len, int max_step, int mtp, sm_error *err)
{
    int max_pos = m->cfg.max_position_embeddings;
    if (max_len < 1 || max_len > max_pos || max_step < 1 || max_step > max_len) {
        sm_fail(err, "decode: %d positions, %d a step: need 1 <= positions a step <= positions "
                     "<= max_position_embeddings %d", max_len, max_step, max_pos);
        return NULL;
    }
    if (m->shard_ep > 1 || m->held_layers || !sm_graph_executes(m->g)) {
        sm_fail(err, "decode: the model must hold every layer and expert and execute its tasks");
        return NULL;
    }
    if (mtp && m->dims.D == 0) {
        sm_fail(err, "decode: the model has no Multi-Token Prediction module "
                     "(num_nextn_predict_layers 0) to draft with");
        return NULL;
    }
    sm_decode *d = calloc(1, sizeof *d);
    if (!d) {
        sm_fail(err, "out of memory for the decode context");
        return NULL;
    }
    *d = (sm_decode){.m = m, .max_len = max_len, .max_step = max_step,
                     .D = mtp ? m->dims.D : 0};
    if (sm_decode_alloc_all(d, err) || sm_decode_rope(d, err)) {
        sm_decode_free(d);
        return NULL;
    }
    return d;
}

void sm_decode_free(sm_decode *d)
{
    if (!d) return;
    sm_graph_step_begin(d->m->g);
    sm_tensor_list_drop(d->m->g, &d->owned);
    for (int l = 0; d->layers && l < d->m->dims.L + d->D; l++) {
        sm_layer_acts *x = &d->layers[l];
        free(x->xe);
        free(x->ye);
        free(x->eh1);
        free(x->eh3);
    }
    free(d->layers);
    free(d->cache);
    free(d->mtp);
    free(d->mtp_len);
    free(d->x);
    free(d);
}

/* ---- one step's graph ---- */

/* q of the step's positions from their normed input xn (through the query latent, or q_proj). */
static int sm_decode_query(sm_decode *d, const sm_op_ctx *c, int l, int n)
{
    const sm_dims *x = &d->m->dims;
    const sm_layer_params *p = &d->m->layers[l];
    sm_layer_acts *a = &d->layers[l];
    if (x->dq == 0) return sm_insert_linear_fwd(c, a->q, a->xn, p->q.w, NULL, n, x->d, x->q_w);
    return sm_insert_linear_fwd(c, a->cq, a->xn, p->q_a.w, NULL, n, x->d, x->dq) ||
                   sm_insert_rmsnorm_fwd(c, a->cqn, a->rstd_q, a->cq, x->dq, p->q_a_norm.w, n,
                                         x->dq, (float)d->m->cfg.rms_norm_eps) ||
                   sm_insert_linear_fwd(c, a->q, a->cqn, p->q_b.w, NULL, n, x->dq, x->q_w)
               ? -1
               : 0;
}

/* x1 = in + o_proj(absorbed MLA over the cache, this step's latents appended first). */
static int sm_decode_attention(sm_decode *d, const sm_op_ctx *c, int l,
                               const sm_mla_cache_dims *s, sm_tensor *in)
{
    const sm_dims *x = &d->m->dims;
    const sm_layer_params *p = &d->m->layers[l];
    sm_layer_acts *a = &d->layers[l];
    int n = s->n, dm = x->d;
    float eps = (float)d->m->cfg.rms_norm_eps;
    if (sm_insert_rmsnorm_fwd(c, a->xn, a->rstd_in, in, dm, p->in_norm.w, n, dm, eps) ||
        sm_decode_query(d, c, l, n) ||
        sm_insert_linear_fwd(c, a->kv, a->xn, p->kv_a.w, NULL, n, dm, x->kv_a_w) ||
        sm_insert_rmsnorm_fwd(c, a->kvn, a->rstd_kv, a->kv, x->kv_a_w, p->kv_a_norm.w, n, x->dc,
                              eps) ||
        sm_insert_mla_cache_append(c, s, d->cache[l], a->kvn, a->kv, d->cos_t, d->sin_t) ||
        sm_insert_mla_absorbed_attn(c, s, a->o, a->q, d->cache[l], p->kv_b.w, d->cos_t, d->sin_t))
        return -1;
    return sm_insert_linear_fwd(c, a->x1, a->o, p->o.w, in, n, x->o_w, dm);
}

/* out = x1 + MoE(xn2) of n positions on one rank: router, each expert on its rows, the
 * shared experts, the combine. */
static int sm_decode_moe(sm_decode *d, const sm_op_ctx *c, int l, int n, sm_tensor *out)
{
    const sm_dims *x = &d->m->dims;
    const sm_layer_params *p = &d->m->layers[l];
    sm_layer_acts *a = &d->layers[l];
    sm_router_dims rd = sm_model_router_dims(d->m, n);
    sm_balance off = {.S = n, .coef = 0.0f};
    if (sm_insert_router_fwd(c, &rd, &off, a->plan, a->w, a->s, a->bal_loss, a->xn2, p->router.w,
                             p->bias.w))
        return -1;
    for (int e = 0; e < x->E; e++) {
        const sm_ffn_params *f = &p->experts[e];
        sm_ffn_shape s = {.n = n * x->K / x->E, .d = x->d, .I = x->expert_I, .expert = e};
        if (sm_insert_moe_dispatch(c, &rd, e, a->xe[e], a->xn2, a->plan) ||
            sm_insert_swiglu_fwd(c, &s, a->ye[e], a->eh1[e], a->eh3[e], a->xe[e], f->gate.w,
                                 f->up.w, f->down.w, NULL))
            return -1;
    }
    if (p->shared.I > 0) {
        sm_ffn_shape s = {.n = n, .d = x->d, .I = p->shared.I, .expert = -1};
        if (sm_insert_swiglu_fwd(c, &s, a->ys, a->h1, a->h3, a->xn2, p->shared.gate.w,
                                 p->shared.up.w, p->shared.down.w, NULL))
            return -1;
    }
    return sm_insert_moe_combine(c, &rd, out, a->ye, a->ys, a->w, a->plan, a->x1);
}

/* out = x1 + FFN(post_attention_layernorm(x1)), dense or MoE. */
static int sm_decode_ffn(sm_decode *d, const sm_op_ctx *c, int l, int n, sm_tensor *out)
{
    const sm_layer_params *p = &d->m->layers[l];
    sm_layer_acts *a = &d->layers[l];
    int dm = d->m->dims.d;
    if (sm_insert_rmsnorm_fwd(c, a->xn2, a->rstd_post, a->x1, dm, p->post_norm.w, n, dm,
                              (float)d->m->cfg.rms_norm_eps))
        return -1;
    if (p->moe) return sm_decode_moe(d, c, l, n, out);
    sm_ffn_shape s = {.n = n, .d = dm, .I = p->dense.I, .expert = -1};
    return sm_insert_swiglu_fwd(c, &s, out, a->h1, a->h3, a->xn2, p->dense.gate.w,
                                p->dense.up.w, p->dense.down.w, a->x1);
}

/* Block l (a layer, or an MTP depth's) on n positions from `pos` of its cache: in -> out. */
static int sm_decode_block(sm_decode *d, const sm_op_ctx *c, int l, int pos, int n,
                           sm_tensor *in, sm_tensor *out)
{
    const sm_dims *x = &d->m->dims;
    sm_mla_cache_dims s = {.H = x->H, .dn = x->dn, .dr = x->dr, .dv = x->dv, .dc = x->dc,
                           .scale = d->scale, .pos = pos, .n = n};
    sm_op_ctx b = *c;
    b.layer = l;
    b.part = SM_PART_ATTENTION;
    if (sm_decode_attention(d, &b, l, &s, in)) return -1;
    b.part = SM_PART_MLP;
    return sm_decode_ffn(d, &b, l, n, out);
}

/* The main model's step graph over n positions from d->len. */
static int sm_decode_build(sm_decode *d, int n, sm_error *err)
{
    sm_model *m = d->m;
    const sm_dims *x = &m->dims;
    sm_op_ctx c = {.g = m->g, .layer = -1, .micro = 0, .err = err};
    if (sm_insert_embedding_fwd(&c, d->x[0], d->ids, m->embed.w, n, x->d)) return -1;
    for (int l = 0; l < x->L; l++)
        if (sm_decode_block(d, &c, l, d->len, n, d->x[l], d->x[l + 1])) return -1;
    if (sm_insert_rmsnorm_fwd(&c, d->xf, d->rstd_f, d->x[x->L], x->d, m->final_norm.w, n, x->d,
                              (float)m->cfg.rms_norm_eps))
        return -1;
    return sm_insert_linear_fwd(&c, d->logits, d->xf, m->head.w, NULL, n, x->d, x->V);
}

/* MTP depth k's step graph over n positions from its length (model/mtp.c's forward, one
 * sequence, its block over its cache). */
static int sm_decode_mtp_build(sm_decode *d, int k, int n, sm_error *err)
{
    sm_model *m = d->m;
    const sm_dims *x = &m->dims;
    const sm_mtp_params *p = &m->mtp[k - 1];
    sm_mtp_acts *a = &d->mtp[k - 1];
    int l = x->L + k - 1, dm = x->d;
    float eps = (float)m->cfg.rms_norm_eps;
    sm_op_ctx c = {.g = m->g, .layer = l, .micro = 0, .err = err};
    if (sm_insert_embedding_fwd(&c, a->emb, a->ids, m->embed.w, n, dm) ||
        sm_insert_rmsnorm_fwd(&c, a->en, a->rstd_e, a->emb, dm, p->enorm.w, n, dm, eps) ||
        sm_insert_rmsnorm_fwd(&c, a->hn, a->rstd_h, a->h, dm, p->hnorm.w, n, dm, eps) ||
        sm_insert_concat_cols_fwd(&c, a->cat, a->en, a->hn, n, dm, dm) ||
        sm_insert_linear_fwd(&c, a->x[0], a->cat, p->eh_proj.w, NULL, n, 2 * dm, dm) ||
        sm_decode_block(d, &c, l, d->mtp_len[k - 1], n, a->x[0], a->x[1]) ||
        sm_insert_rmsnorm_fwd(&c, a->xf, a->rstd_f, a->x[1], dm, p->head_norm.w, n, dm, eps))
        return -1;
    return sm_insert_linear_fwd(&c, a->logits, a->xf, m->head.w, NULL, n, dm, x->V);
}

/* Checks a step of n positions after `len` and its token ids, and uploads them to `t`. */
static int sm_decode_upload(sm_decode *d, sm_tensor *t, const int32_t *ids, int n, int len,
                            const char *who, sm_error *err)
{
    int V = d->m->dims.V;
    if (n < 1 || n > d->max_step || len + n > d->max_len)
        return sm_fail(err, "decode: %s: %d new positions after %d: at most %d a step and %d in "
                            "all (the context's length)", who, n, len, d->max_step, d->max_len);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return sm_fail(err, "decode: %s: token id %d at position %d is outside the "
                                "vocabulary [0, %d)", who, ids[i], len + i, V);
    int32_t *dst = sm_tensor_acquire(t, STARPU_W);
    memset(dst, 0, t->numel * sizeof *dst);
    memcpy(dst, ids, n * sizeof *dst);
    sm_tensor_release(t);
    return 0;
}

/* The first n rows of t into dst (when not NULL). */
static void sm_decode_read(sm_tensor *t, int n, float *dst)
{
    if (!dst) return;
    const float *v = sm_tensor_acquire(t, STARPU_R);
    memcpy(dst, v, (size_t)n * t->shape[1] * sizeof *dst);
    sm_tensor_release(t);
}

int sm_decode_step(sm_decode *d, const int32_t *ids, int n, float *logits, float *hidden,
                   sm_error *err)
{
    if (sm_decode_upload(d, d->ids, ids, n, d->len, "main model", err)) return -1;
    sm_graph_step_begin(d->m->g);
    int rc = sm_decode_build(d, n, err);
    sm_graph_wait(d->m->g);
    if (rc) return -1;
    d->len += n;
    sm_decode_read(d->logits, n, logits);
    sm_decode_read(d->xf, n, hidden);
    return 0;
}

int sm_decode_mtp_step(sm_decode *d, int k, const int32_t *ids, const float *h_in, int n,
                       float *logits, float *h_out, sm_error *err)
{
    if (k < 1 || k > d->D)
        return sm_fail(err, "decode: MTP depth %d: the context holds depths 1 to %d", k, d->D);
    sm_mtp_acts *a = &d->mtp[k - 1];
    char who[32];
    snprintf(who, sizeof who, "MTP depth %d", k);
    if (sm_decode_upload(d, a->ids, ids, n, d->mtp_len[k - 1], who, err)) return -1;
    float *h = sm_tensor_acquire(a->h, STARPU_W);
    memcpy(h, h_in, (size_t)n * d->m->dims.d * sizeof *h);
    sm_tensor_release(a->h);
    sm_graph_step_begin(d->m->g);
    int rc = sm_decode_mtp_build(d, k, n, err);
    sm_graph_wait(d->m->g);
    if (rc) return -1;
    d->mtp_len[k - 1] += n;
    sm_decode_read(a->logits, n, logits);
    sm_decode_read(a->x[1], n, h_out);
    return 0;
}
