/* The decode context (decode.h): per layer a latent cache and one step's activations for up
 * to max_step positions (a step of n positions uses their first n rows), the RoPE tables of
 * max_len positions, and the graph of one step: embedding, per layer the attention half over
 * the cache and the FFN or MoE half on one rank, the final norm and the head. */
#include "model/decode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tasks/dense.h"
#include "tasks/mla_cache.h"
#include "tasks/moe.h"

/* One layer: its cache, then one step's tensors (those of model.h's sm_layer_acts forward). */
typedef struct sm_decode_layer {
    sm_tensor *cache;                        /* [max_len, dc + dr] */
    sm_tensor *xn, *rstd_in, *cq, *cqn, *rstd_q, *q, *kv, *kvn, *rstd_kv, *o, *x1;
    sm_tensor *xn2, *rstd_post, *h1, *h3;    /* FFN input norm, dense FFN or shared experts */
    sm_tensor *plan, *w, *s, *bal_loss, *ys; /* router, shared experts' output */
    sm_tensor **xe, **ye, **eh1, **eh3;      /* [E] routed experts' rows */
} sm_decode_layer;

struct sm_decode {
    sm_model *m;
    int max_len, max_step, len;
    float scale;                             /* softmax scale, YaRN's mscale included */
    sm_tensor_list owned;
    sm_tensor *ids, *cos_t, *sin_t;
    sm_tensor **x;                           /* residual stream [L + 1] */
    sm_tensor *xf, *rstd_f, *logits;
    sm_decode_layer *layers;                 /* [L] */
};

int sm_decode_cache_floats(const sm_config *c)
{
    return c->kv_lora_rank + c->qk_rope_head_dim;
}

int sm_decode_full_kv_floats(const sm_config *c)
{
    return c->num_attention_heads * (c->qk_nope_head_dim + c->qk_rope_head_dim + c->v_head_dim);
}

int sm_decode_len(const sm_decode *d) { return d->len; }

/* ---- allocation ---- */

typedef struct sm_decode_alloc {
    sm_decode *d;
    int l;                                   /* -1 outside layers */
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
    else snprintf(name, sizeof name, "decode.%s", what);
    sm_tensor *t = n0 ? sm_tensor_new_in(g, &a->d->owned, name, dt, role, n1 ? 2 : 1, shape,
                                         a->err)
                      : sm_tensor_rows_new_in(g, &a->d->owned, name, dt, role, n1, a->err);
    if (!t) a->failed = 1;
    return t;
}

#define ACT(what, n0, n1) sm_decode_tensor(a, what, SM_F32, SM_ACT, n0, n1)

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

static void sm_decode_layer_alloc(sm_decode_alloc *a, sm_decode_layer *x, int l)
{
    const sm_dims *dm = &a->d->m->dims;
    int T = a->d->max_step, d = dm->d, dq = dm->dq, ffn_I = sm_dims_ffn_width(dm, l);
    a->l = l;
    x->cache = ACT("latent_cache", a->d->max_len, dm->dc + dm->dr);
    x->xn = ACT("xn", T, d);
    x->rstd_in = ACT("rstd_in", T, 0);
    if (dq > 0) {
        x->cq = ACT("cq", T, dq);
        x->cqn = ACT("cqn", T, dq);
        x->rstd_q = ACT("rstd_q", T, 0);
    }
    x->q = ACT("q", T, dm->q_w);
    x->kv = ACT("kv", T, dm->kv_a_w);
    x->kvn = ACT("kvn", T, dm->dc);
    x->rstd_kv = ACT("rstd_kv", T, 0);
    x->o = ACT("attn_o", T, dm->o_w);
    x->x1 = ACT("x1", T, d);
    x->xn2 = ACT("xn2", T, d);
    x->rstd_post = ACT("rstd_post", T, 0);
    if (ffn_I > 0) {
        x->h1 = ACT("ffn_h1", T, ffn_I);
        x->h3 = ACT("ffn_h3", T, ffn_I);
    }
    if (!sm_dims_layer_is_moe(dm, l)) return;
    x->plan = sm_decode_tensor(a, "plan", SM_I32, SM_ACT, sm_moe_plan_len(T, dm->K, dm->E), 0);
    x->w = ACT("route_w", T, dm->K);
    x->s = ACT("route_s", T, dm->E);
    x->bal_loss = ACT("balance_loss", 1, 0);
    if (dm->shared_I > 0) x->ys = ACT("shared_y", T, d);
    x->xe = sm_decode_expert_rows(a, "xe", d);
    x->ye = sm_decode_expert_rows(a, "ye", d);
    x->eh1 = sm_decode_expert_rows(a, "h1", dm->expert_I);
    x->eh3 = sm_decode_expert_rows(a, "h3", dm->expert_I);
}

static int sm_decode_alloc_all(sm_decode *d, sm_error *err)
{
    const sm_dims *dm = &d->m->dims;
    sm_decode_alloc a0 = {.d = d, .l = -1, .err = err}, *a = &a0;
    int T = d->max_step, L = dm->L;
    d->ids = sm_decode_tensor(a, "input_ids", SM_I32, SM_INPUT, T, 0);
    d->cos_t = sm_decode_tensor(a, "rope.cos", SM_F32, SM_INPUT, d->max_len, dm->dr / 2);
    d->sin_t = sm_decode_tensor(a, "rope.sin", SM_F32, SM_INPUT, d->max_len, dm->dr / 2);
    d->xf = ACT("xf", T, dm->d);
    d->rstd_f = ACT("rstd_f", T, 0);
    d->logits = ACT("logits", T, dm->V);
    if (!(d->x = calloc(L + 1, sizeof *d->x)) || !(d->layers = calloc(L, sizeof *d->layers)))
        return sm_fail(err, "out of memory for the decode context");
    for (int l = 0; l <= L; l++) {
        char name[32];
        snprintf(name, sizeof name, "x%d", l);
        d->x[l] = ACT(name, T, dm->d);
    }
    for (int l = 0; l < L; l++) sm_decode_layer_alloc(a, &d->layers[l], l);
    return a->failed ? -1 : 0;
}

/* The RoPE tables of positions 0 .. max_len-1 and the softmax scale, as a run's. */
static int sm_decode_rope(sm_decode *d, sm_error *err)
{
    d->scale = sm_model_softmax_scale(d->m);
    return sm_model_rope_tables(d->m, d->max_len, d->cos_t->data, d->sin_t->data, err);
}

sm_decode *sm_decode_new(sm_model *m, int max_len, int max_step, sm_error *err)
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
    sm_decode *d = calloc(1, sizeof *d);
    if (!d) {
        sm_fail(err, "out of memory for the decode context");
        return NULL;
    }
    *d = (sm_decode){.m = m, .max_len = max_len, .max_step = max_step};
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
    for (int l = 0; d->layers && l < d->m->dims.L; l++) {
        sm_decode_layer *x = &d->layers[l];
        free(x->xe);
        free(x->ye);
        free(x->eh1);
        free(x->eh3);
    }
    free(d->layers);
    free(d->x);
    free(d);
}

/* ---- one step's graph ---- */

/* q of the step's positions from their normed input xn (through the query latent, or q_proj). */
static int sm_decode_query(sm_decode *d, const sm_op_ctx *c, int l, int n)
{
    const sm_dims *x = &d->m->dims;
    const sm_layer_params *p = &d->m->layers[l];
    sm_decode_layer *a = &d->layers[l];
    if (x->dq == 0) return sm_insert_linear_fwd(c, a->q, a->xn, p->q.w, NULL, n, x->d, x->q_w);
    return sm_insert_linear_fwd(c, a->cq, a->xn, p->q_a.w, NULL, n, x->d, x->dq) ||
                   sm_insert_rmsnorm_fwd(c, a->cqn, a->rstd_q, a->cq, x->dq, p->q_a_norm.w, n,
                                         x->dq, (float)d->m->cfg.rms_norm_eps) ||
                   sm_insert_linear_fwd(c, a->q, a->cqn, p->q_b.w, NULL, n, x->dq, x->q_w)
               ? -1
               : 0;
}

/* x1 = x + o_proj(absorbed MLA over the cache, this step's latents appended first). */
static int sm_decode_attention(sm_decode *d, const sm_op_ctx *c, int l,
                               const sm_mla_cache_dims *s)
{
    const sm_dims *x = &d->m->dims;
    const sm_layer_params *p = &d->m->layers[l];
    sm_decode_layer *a = &d->layers[l];
    int n = s->n, dm = x->d;
    float eps = (float)d->m->cfg.rms_norm_eps;
    if (sm_insert_rmsnorm_fwd(c, a->xn, a->rstd_in, d->x[l], dm, p->in_norm.w, n, dm, eps) ||
        sm_decode_query(d, c, l, n) ||
        sm_insert_linear_fwd(c, a->kv, a->xn, p->kv_a.w, NULL, n, dm, x->kv_a_w) ||
        sm_insert_rmsnorm_fwd(c, a->kvn, a->rstd_kv, a->kv, x->kv_a_w, p->kv_a_norm.w, n, x->dc,
                              eps) ||
        sm_insert_mla_cache_append(c, s, a->cache, a->kvn, a->kv, d->cos_t, d->sin_t) ||
        sm_insert_mla_absorbed_attn(c, s, a->o, a->q, a->cache, p->kv_b.w, d->cos_t, d->sin_t))
        return -1;
    return sm_insert_linear_fwd(c, a->x1, a->o, p->o.w, d->x[l], n, x->o_w, dm);
}

/* x[l+1] = x1 + MoE(xn2) of n positions on one rank: router, each expert on its rows, the
 * shared experts, the combine. */
static int sm_decode_moe(sm_decode *d, const sm_op_ctx *c, int l, int n)
{
    const sm_dims *x = &d->m->dims;
    const sm_layer_params *p = &d->m->layers[l];
    sm_decode_layer *a = &d->layers[l];
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
    return sm_insert_moe_combine(c, &rd, d->x[l + 1], a->ye, a->ys, a->w, a->plan, a->x1);
}

/* x[l+1] = x1 + FFN(post_attention_layernorm(x1)), dense or MoE. */
static int sm_decode_ffn(sm_decode *d, const sm_op_ctx *c, int l, int n)
{
    const sm_layer_params *p = &d->m->layers[l];
    sm_decode_layer *a = &d->layers[l];
    int dm = d->m->dims.d;
    if (sm_insert_rmsnorm_fwd(c, a->xn2, a->rstd_post, a->x1, dm, p->post_norm.w, n, dm,
                              (float)d->m->cfg.rms_norm_eps))
        return -1;
    if (p->moe) return sm_decode_moe(d, c, l, n);
    sm_ffn_shape s = {.n = n, .d = dm, .I = p->dense.I, .expert = -1};
    return sm_insert_swiglu_fwd(c, &s, d->x[l + 1], a->h1, a->h3, a->xn2, p->dense.gate.w,
                                p->dense.up.w, p->dense.down.w, a->x1);
}

static int sm_decode_build(sm_decode *d, int n, sm_error *err)
{
    sm_model *m = d->m;
    const sm_dims *x = &m->dims;
    sm_op_ctx c = {.g = m->g, .layer = -1, .micro = 0, .err = err};
    sm_mla_cache_dims s = {.H = x->H, .dn = x->dn, .dr = x->dr, .dv = x->dv, .dc = x->dc,
                           .scale = d->scale, .pos = d->len, .n = n};
    if (sm_insert_embedding_fwd(&c, d->x[0], d->ids, m->embed.w, n, x->d)) return -1;
    for (int l = 0; l < x->L; l++) {
        c.layer = l;
        c.part = SM_PART_ATTENTION;
        if (sm_decode_attention(d, &c, l, &s)) return -1;
        c.part = SM_PART_MLP;
        if (sm_decode_ffn(d, &c, l, n)) return -1;
    }
    c.layer = -1;
    c.part = SM_PART_NONE;
    if (sm_insert_rmsnorm_fwd(&c, d->xf, d->rstd_f, d->x[x->L], x->d, m->final_norm.w, n, x->d,
                              (float)m->cfg.rms_norm_eps))
        return -1;
    return sm_insert_linear_fwd(&c, d->logits, d->xf, m->head.w, NULL, n, x->d, x->V);
}

int sm_decode_step(sm_decode *d, const int32_t *ids, int n, float *logits, sm_error *err)
{
    int V = d->m->dims.V;
    if (n < 1 || n > d->max_step || d->len + n > d->max_len)
        return sm_fail(err, "decode: %d new positions after %d: at most %d a step and %d in "
                            "all (the context's length)", n, d->len, d->max_step, d->max_len);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return sm_fail(err, "decode: token id %d at position %d is outside the vocabulary "
                                "[0, %d)", ids[i], d->len + i, V);
    int32_t *dst = sm_tensor_acquire(d->ids, STARPU_W);
    memset(dst, 0, d->ids->numel * sizeof *dst);
    memcpy(dst, ids, n * sizeof *dst);
    sm_tensor_release(d->ids);
    sm_graph_step_begin(d->m->g);
    int rc = sm_decode_build(d, n, err);
    sm_graph_wait(d->m->g);
    if (rc) return -1;
    d->len += n;
    const float *l = sm_tensor_acquire(d->logits, STARPU_R);
    memcpy(logits, l, (size_t)n * V * sizeof *logits);
    sm_tensor_release(d->logits);
    return 0;
}
