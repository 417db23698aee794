/* Allocation of a run's activations: for every micro-batch the inputs, the residual stream,
 * each layer's saved forward tensors and backward temporaries, the head and the loss.
 * Routed experts' activations and gradients are resizable row buffers, one per (expert,
 * source) a rank needs (model.h): they hold the rows the routing gives them, T*K rows per
 * layer and micro-batch over all experts of one source, plus the rows received from the
 * other ranks of an expert-parallel group.
 * A layer's backward temporaries are dead once its backward is done: without a pipeline
 * (sm_run.share_bwd) layers share them, layer l using set l % sets of its micro-batch, and
 * StarPU orders a set's writers after the previous user's readers. The FFN's have one set:
 * every task reading them is on the way to the residual gradient that layer l - 1's backward
 * starts from. The attention's have two: its weight-gradient tasks are not, and layer l - 1
 * does not wait for layer l + 1's. The shared expert's output, read only by its layer's
 * combine, is one tensor per micro-batch in every run: the next layer writes it only after
 * that combine anyway (its input is the combine's output). */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/grow.h"

#define SM_ATTN_SETS 2
#define SM_FFN_SETS 1
#define SM_FWD_SET -1            /* forward temporaries' set */

/* A shared temporary: what, its shape, its set. */
typedef struct sm_shared_act {
    const char *what;
    int set;
    int64_t n0, n1;
    sm_tensor *t;
} sm_shared_act;

typedef struct sm_alloc_ctx {
    sm_run *r;
    int l, mb;
    const char *prefix;          /* of the names outside layers ("" or "mtp<k>.") */
    sm_error *err;
    int failed;
    sm_shared_act *shared;       /* the current micro-batch's shared temporaries */
    size_t nshared, cap_shared;
    sm_layer_acts *rows_of_set[SM_FFN_SETS]; /* the layer whose experts' backward row buffers
                                              * a set's layers share (NULL: none yet) */
} sm_alloc_ctx;

static sm_tensor *sm_act(sm_alloc_ctx *a, const char *what, sm_dtype dt, int64_t n0, int64_t n1)
{
    if (a->failed) return NULL;
    char name[128];
    int64_t shape[2] = {n0, n1};
    if (a->l >= 0) snprintf(name, sizeof name, "mb%d.L%d.%s", a->mb, a->l, what);
    else snprintf(name, sizeof name, "mb%d.%s%s", a->mb, a->prefix, what);
    sm_tensor *t = sm_tensor_new_in(a->r->m->g, &a->r->owned, name, dt, SM_ACT, n1 ? 2 : 1, shape,
                                   a->err);
    if (!t) a->failed = 1;
    return t;
}

#define ACT(what, n0, n1) sm_act(a, what, SM_F32, n0, n1)

/* The shared temporary matching k in the current micro-batch, or NULL. */
static sm_tensor *sm_shared_find(const sm_alloc_ctx *a, const sm_shared_act *k)
{
    for (size_t i = 0; i < a->nshared; i++) {
        const sm_shared_act *s = &a->shared[i];
        if (s->set == k->set && s->n0 == k->n0 && s->n1 == k->n1 && !strcmp(s->what, k->what))
            return s->t;
    }
    return NULL;
}

static void sm_shared_add(sm_alloc_ctx *a, sm_shared_act *k, sm_tensor *t)
{
    if (!t) return;
    if (sm_grow(&a->shared, &a->cap_shared, a->nshared + 1, sizeof *a->shared)) {
        sm_fail(a->err, "out of memory for the shared temporaries");
        a->failed = 1;
        return;
    }
    k->t = t;
    a->shared[a->nshared++] = *k;
}

/* The current micro-batch's tensor of set `set` ("mb<m>.bwd<s>.<what>"; SM_FWD_SET:
 * "mb<m>.fwd.<what>"), made by the first layer asking for it. */
static sm_tensor *sm_shared(sm_alloc_ctx *a, const char *what, int set, int64_t n0, int64_t n1)
{
    if (a->failed) return NULL;
    sm_shared_act k = {.what = what, .set = set, .n0 = n0, .n1 = n1};
    sm_tensor *t = sm_shared_find(a, &k);
    if (t) return t;
    char name[128];
    int64_t shape[2] = {n0, n1};
    if (set == SM_FWD_SET) snprintf(name, sizeof name, "mb%d.fwd.%s", a->mb, what);
    else snprintf(name, sizeof name, "mb%d.bwd%d.%s", a->mb, set, what);
    t = sm_tensor_new_in(a->r->m->g, &a->r->owned, name, SM_F32, SM_ACT, n1 ? 2 : 1, shape,
                         a->err);
    if (!t) a->failed = 1;
    sm_shared_add(a, &k, t);
    return t;
}

/* The inputs of the FP8 recipe's linears that nothing but those linears reads: under FP8
 * training their quantised copies are what the backward reads (model/linear.c), so the float32
 * tensors are forward temporaries of the micro-batch, shared by its blocks. */
static int sm_fp8_only_input(const char *what)
{
    static const char *const names[] = {"xn", "cqn", "kvn", "attn_o"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(what, names[i])) return 1;
    return 0;
}

static sm_tensor *sm_act_maker_of_run(void *ctx, const char *what, sm_dtype dt, int64_t n0,
                                      int64_t n1)
{
    sm_alloc_ctx *a = ctx;
    if (a->r->fp8 && a->l >= 0 && sm_fp8_only_input(what))
        return sm_shared(a, what, SM_FWD_SET, n0, n1);
    return sm_act(ctx, what, dt, n0, n1);
}

/* A backward temporary of the current layer: its own, or its set's of `sets`. */
static sm_tensor *sm_bwd(sm_alloc_ctx *a, const char *what, int sets, int64_t n0, int64_t n1)
{
    if (!a->r->share_bwd) return ACT(what, n0, n1);
    return sm_shared(a, what, a->l % sets, n0, n1);
}

#define ATTN_BWD(what, n0, n1) sm_bwd(a, what, SM_ATTN_SETS, n0, n1)
#define FFN_BWD(what, n0, n1) sm_bwd(a, what, SM_FFN_SETS, n0, n1)

/* A resizable row buffer of `width` elements per row, named "mb<m>.L<l>.<what>.<e>" for
 * source `src` = own, "....<e>.from<src>" for another source's rows. */
static sm_tensor *sm_rows(sm_alloc_ctx *a, const char *what, int e, int src, int64_t width)
{
    if (a->failed) return NULL;
    char name[128];
    int own = src == a->r->ep_index;
    snprintf(name, sizeof name, own ? "mb%d.L%d.%s.%d" : "mb%d.L%d.%s.%d.from%d", a->mb, a->l,
             what, e, src);
    sm_tensor *t = sm_tensor_rows_new_in(a->r->m->g, &a->r->owned, name, SM_F32, SM_ACT, width,
                                         a->err);
    if (!t) a->failed = 1;
    return t;
}

/* A routed expert's resizable backward temporary of the current layer (entry i of its array):
 * the same entry of `shared`, the array of the layer it shares them with, else its own (a
 * shared set's named "mb<m>.bwd<s>.<what>.<e>", "....<e>.from<src>"). */
static sm_tensor *sm_bwd_rows(sm_alloc_ctx *a, sm_tensor **shared, int i, const char *what,
                              int e, int src, int64_t width)
{
    if (a->failed || !a->r->share_bwd) return sm_rows(a, what, e, src, width);
    if (shared) return shared[i];
    char name[128];
    snprintf(name, sizeof name, src == a->r->ep_index ? "mb%d.bwd%d.%s.%d" :
             "mb%d.bwd%d.%s.%d.from%d", a->mb, a->l % SM_FFN_SETS, what, e, src);
    sm_tensor *t = sm_tensor_rows_new_in(a->r->m->g, &a->r->owned, name, SM_F32, SM_ACT, width,
                                         a->err);
    if (!t) a->failed = 1;
    return t;
}

/* A resizable buffer exchanged with rank q of the group: "mb<m>.L<l>.<what><q>". */
static sm_tensor *sm_exchange_rows(sm_alloc_ctx *a, const char *what, int q, int64_t width,
                                   sm_dtype dt)
{
    if (a->failed) return NULL;
    char name[128];
    snprintf(name, sizeof name, "mb%d.L%d.%s%d", a->mb, a->l, what, q);
    sm_tensor *t = sm_tensor_rows_new_in(a->r->m->g, &a->r->owned, name, dt, SM_ACT, width,
                                         a->err);
    if (!t) a->failed = 1;
    return t;
}

/* n NULL entries (filled by the caller). */
static sm_tensor **sm_slots(sm_alloc_ctx *a, int n)
{
    sm_tensor **v = a->failed ? NULL : calloc(n, sizeof *v);
    if (!v && !a->failed) {
        sm_fail(a->err, "out of memory for the experts' activations");
        a->failed = 1;
    }
    return v;
}

/* The routed experts' buffers: this rank's own rows of every expert (outputs, gradients; its
 * tokens of its own experts), for its own experts every source's rows (the hidden states
 * too), and the tokens exchanged with each other rank of the group. */
static void sm_moe_experts(sm_alloc_ctx *a, sm_layer_acts *x, int backward)
{
    const sm_run *r = a->r;
    const sm_dims *dm = &r->m->dims;
    int E = dm->E, n = E * r->ep, d = dm->d, mi = dm->expert_I, me = r->ep_index;
    sm_layer_acts *prev = a->rows_of_set[a->l % SM_FFN_SETS];
    x->xe = sm_slots(a, n);
    x->ye = sm_slots(a, n);
    x->eh1 = sm_slots(a, n);
    x->eh3 = sm_slots(a, n);
    if (backward) {
        x->dye = sm_slots(a, n);
        x->dxe = sm_slots(a, n);
        x->deh1 = sm_slots(a, n);
        x->deh3 = sm_slots(a, n);
        x->dge = sm_slots(a, E);
    }
    x->tok_out = sm_slots(a, r->ep);
    x->idx_out = sm_slots(a, r->ep);
    x->tok_in = sm_slots(a, r->ep);
    x->idx_in = sm_slots(a, r->ep);
    x->grad_out = sm_slots(a, r->ep);
    x->wt_out = sm_slots(a, r->ep);
    x->grad_in = sm_slots(a, r->ep);
    x->wt_in = sm_slots(a, r->ep);
    for (int q = 0; q < r->ep && !a->failed; q++) {
        if (q == me) continue;
        x->tok_out[q] = sm_exchange_rows(a, "tokens_to", q, d, SM_F32);
        x->idx_out[q] = sm_exchange_rows(a, "index_to", q, 1, SM_I32);
        x->tok_in[q] = sm_exchange_rows(a, "tokens_from", q, d, SM_F32);
        x->idx_in[q] = sm_exchange_rows(a, "index_from", q, 1, SM_I32);
        if (!backward) continue;
        x->grad_out[q] = sm_exchange_rows(a, "grads_to", q, d, SM_F32);
        x->wt_out[q] = sm_exchange_rows(a, "weights_to", q, 1, SM_F32);
        x->grad_in[q] = sm_exchange_rows(a, "grads_from", q, d, SM_F32);
        x->wt_in[q] = sm_exchange_rows(a, "weights_from", q, 1, SM_F32);
    }
    for (int e = 0; e < E && !a->failed; e++)
        for (int p = 0; p < r->ep; p++) {
            int i = sm_ex(r, e, p), here = sm_expert_here(r, e);
            if (p != me && !here) continue;
            if (here) x->xe[i] = sm_rows(a, "xe", e, p, d);
            x->ye[i] = sm_rows(a, "ye", e, p, d);
            if (here) {
                x->eh1[i] = sm_rows(a, "h1", e, p, mi);
                x->eh3[i] = sm_rows(a, "h3", e, p, mi);
            }
            if (!backward) continue;
            if (here) x->dye[i] = sm_bwd_rows(a, prev ? prev->dye : NULL, i, "dye", e, p, d);
            x->dxe[i] = sm_bwd_rows(a, prev ? prev->dxe : NULL, i, "dxe", e, p, d);
            if (here) {
                x->deh1[i] = sm_bwd_rows(a, prev ? prev->deh1 : NULL, i, "dh1", e, p, mi);
                x->deh3[i] = sm_bwd_rows(a, prev ? prev->deh3 : NULL, i, "dh3", e, p, mi);
            }
            if (p == me) x->dge[e] = sm_bwd_rows(a, prev ? prev->dge : NULL, e, "dge", e, p, 1);
        }
    if (backward) a->rows_of_set[a->l % SM_FFN_SETS] = x;
}

void sm_layer_fwd_alloc(sm_layer_acts *x, const sm_dims *dm, int l, int T, int expanded,
                        sm_act_maker make, void *ctx)
{
    int d = dm->d, dq = dm->dq, ffn_I = sm_dims_ffn_width(dm, l);
#define FWD(what, n0, n1) make(ctx, what, SM_F32, n0, n1)
    x->xn = FWD("xn", T, d);
    x->rstd_in = FWD("rstd_in", T, 0);
    if (dq > 0) {
        x->cq = FWD("cq", T, dq);
        x->cqn = FWD("cqn", T, dq);
        x->rstd_q = FWD("rstd_q", T, 0);
    }
    x->q = FWD("q", T, dm->q_w);
    x->kv = FWD("kv", T, dm->kv_a_w);
    x->kvn = FWD("kvn", T, dm->dc);
    x->rstd_kv = FWD("rstd_kv", T, 0);
    if (expanded) x->kvu = FWD("kvu", T, dm->kv_b_w);
    x->o = FWD("attn_o", T, dm->o_w);
    x->x1 = FWD("x1", T, d);
    x->xn2 = FWD("xn2", T, d);
    x->rstd_post = FWD("rstd_post", T, 0);
    if (ffn_I > 0) {
        x->h1 = FWD("ffn_h1", T, ffn_I);
        x->h3 = FWD("ffn_h3", T, ffn_I);
    }
    if (!sm_dims_layer_is_moe(dm, l)) return;
    x->plan = make(ctx, "plan", SM_I32, sm_moe_plan_len(T, dm->K, dm->E), 0);
    x->w = FWD("route_w", T, dm->K);
    x->s = FWD("route_s", T, dm->E);
    x->bal_loss = FWD("balance_loss", 1, 0);
#undef FWD
}

void sm_mtp_fwd_alloc(sm_mtp_acts *x, const sm_dims *dm, int T, sm_act_maker make, void *ctx)
{
    int d = dm->d;
#define FWD(what, n0, n1) make(ctx, what, SM_F32, n0, n1)
    x->ids = make(ctx, "input_ids", SM_I32, T, 0);
    x->emb = FWD("emb", T, d);
    x->en = FWD("enorm", T, d);
    x->rstd_e = FWD("rstd_e", T, 0);
    x->h = FWD("h", T, d);
    x->hn = FWD("hnorm", T, d);
    x->rstd_h = FWD("rstd_h", T, 0);
    x->cat = FWD("cat", T, 2 * d);
    x->x[0] = FWD("x_in", T, d);
    x->x[1] = FWD("x_out", T, d);
    x->xf = FWD("xf", T, d);
    x->rstd_f = FWD("rstd_f", T, 0);
    x->logits = FWD("logits", T, dm->V);
#undef FWD
}

static void sm_layer_alloc(sm_alloc_ctx *a, sm_layer_acts *x, int l, int backward)
{
    const sm_dims *dm = &a->r->m->dims;
    int T = sm_shape_of(a->r, l)->T, d = dm->d, dq = dm->dq, dc = dm->dc, dr = dm->dr;
    int ffn_I = sm_dims_ffn_width(dm, l);
    sm_layer_fwd_alloc(x, dm, l, T, 1, sm_act_maker_of_run, a);
    if (sm_dims_layer_is_moe(dm, l)) {
        if (dm->shared_I > 0) x->ys = sm_shared(a, "shared_y", SM_FWD_SET, T, d);
        sm_moe_experts(a, x, backward);
    }
    if (!backward) return;
    x->dxn = ATTN_BWD("dxn", T, d);
    if (dq > 0) {
        x->dcqn = ATTN_BWD("dcqn", T, dq);
        x->dcq = ATTN_BWD("dcq", T, dq);
    }
    x->dq = ATTN_BWD("dq", T, dm->q_w);
    x->dkpe = ATTN_BWD("dkpe", T, dr);
    x->dkvu = ATTN_BWD("dkvu", T, dm->kv_b_w);
    x->dkvn = ATTN_BWD("dkvn", T, dc);
    x->dkv = ATTN_BWD("dkv", T, dm->kv_a_w);
    x->dout = ATTN_BWD("dattn_o", T, dm->o_w);
    x->dxn2 = FFN_BWD("dxn2", T, d);
    if (ffn_I > 0) {
        x->dh1 = FFN_BWD("dffn_h1", T, ffn_I);
        x->dh3 = FFN_BWD("dffn_h3", T, ffn_I);
    }
}

/* MTP depth k's tensors ("mb<m>.mtp<k>.<what>"), its block's under layer L + k - 1. */
static void sm_mtp_alloc(sm_alloc_ctx *a, sm_micro_acts *mb, int k)
{
    const sm_run *r = a->r;
    const sm_dims *dm = &r->m->dims;
    sm_mtp_acts *x = &mb->mtp[k - 1];
    int T = r->shape[k].T, d = dm->d, V = dm->V;
    char p[16];
    snprintf(p, sizeof p, "mtp%d.", k);
    a->l = -1;
    a->prefix = p;
    sm_mtp_fwd_alloc(x, dm, T, sm_act_maker_of_run, a);
    x->targets = sm_act(a, "targets", SM_I32, T, 0);
    x->loss_part = ACT("loss_part", 1, 0);
    if (r->backward) {
        x->dlogits = r->grad_over_logits ? x->logits : ACT("dlogits", T, V);
        x->dxf = ACT("dxf", T, d);
        for (int i = 0; i < 3; i++) {
            char what[8];
            snprintf(what, sizeof what, "dx%d", i);
            x->dx[i] = r->split_dx || i == 0 ? ACT(r->split_dx ? what : "dres", T, d) : x->dx[0];
        }
        x->dcat = ACT("dcat", T, 2 * d);
        x->den = ACT("denorm", T, d);
        x->dhn = ACT("dhnorm", T, d);
        x->demb = ACT("demb", T, d);
        x->dh = ACT("dh", T, d);
    }
    a->prefix = "";
    a->l = dm->L + k - 1;
    sm_layer_alloc(a, &mb->layers[a->l], a->l, r->backward);
    a->l = -1;
}

static void sm_micro_alloc(sm_alloc_ctx *a, sm_micro_acts *mb)
{
    const sm_dims *dm = &a->r->m->dims;
    int T = a->r->T, d = dm->d, V = dm->V, L = dm->L;
    a->l = -1;
    mb->ids = sm_act(a, "input_ids", SM_I32, T, 0);
    mb->targets = sm_act(a, "targets", SM_I32, T, 0);
    mb->x = calloc(L + 1, sizeof *mb->x);
    mb->layers = calloc(sm_run_blocks(a->r), sizeof *mb->layers);
    mb->mtp = a->r->D ? calloc(a->r->D, sizeof *mb->mtp) : NULL;
    if (!mb->x || !mb->layers || (a->r->D && !mb->mtp)) {
        a->failed = 1;
        sm_fail(a->err, "out of memory for the activations");
        return;
    }
    for (int l = 0; l <= L; l++) {
        char name[32];
        snprintf(name, sizeof name, "x%d", l);
        mb->x[l] = ACT(name, T, d);
    }
    for (int l = 0; l < L; l++) {
        a->l = l;
        sm_layer_alloc(a, &mb->layers[l], l, a->r->backward);
    }
    a->l = -1;
    mb->xf = ACT("xf", T, d);
    mb->rstd_f = ACT("rstd_f", T, 0);
    mb->logits = ACT("logits", T, V);
    mb->loss_part = ACT("loss_part", 1, 0);
    if (!a->r->backward) return;
    mb->dlogits = a->r->grad_over_logits ? mb->logits : ACT("dlogits", T, V);
    mb->dxf = ACT("dxf", T, d);
    if (!(mb->dx = calloc(2 * L + 1, sizeof *mb->dx))) {
        a->failed = 1;
        sm_fail(a->err, "out of memory for the activations");
        return;
    }
    for (int i = 0; i <= 2 * L; i++) {
        char name[32];
        snprintf(name, sizeof name, "dx%d", i);
        mb->dx[i] = a->r->split_dx || i == 0 ? ACT(a->r->split_dx ? name : "dres", T, d)
                                             : mb->dx[0];
    }
}

/* A micro-batch's tensors: the main model's, then its MTP depths'. */
static void sm_micro_alloc_all(sm_alloc_ctx *a, sm_micro_acts *mb)
{
    sm_micro_alloc(a, mb);
    for (int k = 1; k <= a->r->D && !a->failed; k++) sm_mtp_alloc(a, mb, k);
}

int sm_run_alloc(sm_run *r, sm_error *err)
{
    sm_alloc_ctx a = {.r = r, .l = -1, .prefix = "", .err = err};
    if (!(r->mb = calloc(r->micro, sizeof *r->mb))) return sm_fail(err, "out of memory");
    for (int mb = 0; mb < r->micro && !a.failed; mb++) {
        a.mb = mb;
        a.nshared = 0;
        memset(a.rows_of_set, 0, sizeof a.rows_of_set);
        sm_micro_alloc_all(&a, &r->mb[mb]);
    }
    free(a.shared);
    return a.failed ? -1 : 0;
}
