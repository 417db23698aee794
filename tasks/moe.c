/* Codelets and insert helpers of the MoE family: router, dispatch, combine and their
 * backward passes. Per-expert buffers are resizable row buffers (graph.h): the task writing
 * expert e's rows sizes its buffer to the count[e] rows the plan gives it. Tasks over all
 * experts take the E buffers as consecutive buffers and reduce them in expert order, so sums
 * never depend on scheduling. */
#include "tasks/moe.h"

#include <stdlib.h>
#include "graph/resizable.h"
#include "tasks/kernel_util.h"

typedef struct {
    sm_router_dims r;
    int e, accumulate, residual, shared, bias;
    int e1, j, nexperts;         /* dispatch to a rank: experts [e, e1); take: expert j of n */
    int weighted, with_dye;      /* take: times the weights; combine_bwd: writes dye */
    sm_balance bal;
} sm_moe_args;

/* Expert e's row buffer in slot `slot`, sized to its count[e] rows of `width` elements: the
 * writing task's. */
static float *sm_expert_out(void *b[], int slot, const int32_t *plan, int e,
                            const sm_router_dims *r, int width)
{
    int rows = sm_plan_count((int32_t *)plan, r->T, r->K, r->E)[e];
    return sm_resizable_resize(b[slot], (size_t)rows * width);
}

/* The E experts' row buffers in consecutive slots from `first`. */
static const float **sm_expert_ptrs(void *b[], int first, const sm_router_dims *r)
{
    const float **p = sm_kcalloc(r->E, sizeof *p, "the experts' buffer pointers");
    for (int e = 0; e < r->E; e++) p[e] = SM_BUF(b, first + e, float);
    return p;
}

/* ---- router ---- */
/* the bias is present only with a bias */
enum {
    ROUTER_FWD_PLAN, ROUTER_FWD_W, ROUTER_FWD_S, ROUTER_FWD_BAL_LOSS, ROUTER_FWD_U, ROUTER_FWD_WG,
    ROUTER_FWD_BIAS, ROUTER_FWD_NBUF
};
/* dge[e] is slot ROUTER_BWD_DGE + e */
enum {
    ROUTER_BWD_DU, ROUTER_BWD_DWG, ROUTER_BWD_S, ROUTER_BWD_PLAN, ROUTER_BWD_U, ROUTER_BWD_WG,
    ROUTER_BWD_DGE
};

static void sm_router_fwd_cpu(void *b[], void *arg)
{
    const sm_moe_args *a = arg;
    const sm_router_dims *r = &a->r;
    int32_t *plan = SM_BUF(b, ROUTER_FWD_PLAN, int32_t);
    float *s = SM_BUF(b, ROUTER_FWD_S, float);
    sm_router_fwd(plan, SM_BUF(b, ROUTER_FWD_W, float), s, SM_BUF(b, ROUTER_FWD_U, float),
                  SM_BUF(b, ROUTER_FWD_WG, float),
                  a->bias ? SM_BUF(b, ROUTER_FWD_BIAS, float) : NULL, r);
    SM_BUF(b, ROUTER_FWD_BAL_LOSS, float)[0] =
        a->bal.coef > 0
            ? (float)sm_balance_loss(NULL, s, plan, r->T, a->bal.S, r->K, r->E, a->bal.coef)
            : 0.0f;
}
SM_CODELET(router_fwd, sm_router_fwd_cpu);

int sm_insert_router_fwd(const sm_op_ctx *c, const sm_router_dims *r, const sm_balance *bal,
                         sm_tensor *plan, sm_tensor *w, sm_tensor *s, sm_tensor *bal_loss,
                         sm_tensor *u, sm_tensor *Wg, sm_tensor *bias)
{
    sm_moe_args a = {.r = *r, .e = -1, .bias = bias != NULL, .bal = *bal};
    sm_access acc[ROUTER_FWD_NBUF] = {
        [ROUTER_FWD_PLAN] = SM_W(plan), [ROUTER_FWD_W] = SM_W(w), [ROUTER_FWD_S] = SM_W(s),
        [ROUTER_FWD_BAL_LOSS] = SM_W(bal_loss), [ROUTER_FWD_U] = SM_R(u),
        [ROUTER_FWD_WG] = SM_R(Wg), [ROUTER_FWD_BIAS] = SM_R(bias)};
    return sm_op_insert(c, &sm_cl_router_fwd, "router_fwd", SM_FORWARD, -1, acc,
                        bias ? ROUTER_FWD_NBUF : ROUTER_FWD_BIAS, &a, sizeof a,
                        2.0 * r->T * r->d * r->E);
}

static void sm_router_bwd_cpu(void *b[], void *arg)
{
    const sm_moe_args *a = arg;
    const sm_router_dims *r = &a->r;
    const int32_t *plan = SM_BUF(b, ROUTER_BWD_PLAN, int32_t);
    const float **dge = sm_expert_ptrs(b, ROUTER_BWD_DGE, r);
    float *dw = sm_kfloats((size_t)r->T * r->K, "router_bwd: mixing-weight gradients");
    float *ds = a->bal.coef > 0 ? sm_kfloats((size_t)r->T * r->E, "router_bwd: balance gradients")
                                : NULL;
    const float *s = SM_BUF(b, ROUTER_BWD_S, float);
    sm_moe_collect_dw(dw, dge, plan, r->T, r->K, r->E);
    if (ds) sm_balance_loss(ds, s, plan, r->T, a->bal.S, r->K, r->E, a->bal.coef);
    sm_router_bwd(SM_BUF(b, ROUTER_BWD_DU, float), SM_BUF(b, ROUTER_BWD_DWG, float), dw, ds, s,
                  plan, SM_BUF(b, ROUTER_BWD_U, float), SM_BUF(b, ROUTER_BWD_WG, float), r,
                  a->accumulate);
    free(ds);
    free(dw);
    free(dge);
}
SM_CODELET(router_bwd, sm_router_bwd_cpu);

int sm_insert_router_bwd(const sm_op_ctx *c, const sm_router_dims *r, const sm_balance *bal,
                         sm_tensor *du, sm_tensor *dWg, sm_tensor **dge, sm_tensor *s,
                         sm_tensor *plan, sm_tensor *u, sm_tensor *Wg, int accumulate)
{
    sm_moe_args a = {.r = *r, .e = -1, .accumulate = accumulate, .bal = *bal};
    sm_access acc[ROUTER_BWD_DGE + r->E];
    acc[ROUTER_BWD_DU] = SM_ACC(du, accumulate);
    acc[ROUTER_BWD_DWG] = SM_RW(dWg);
    acc[ROUTER_BWD_S] = SM_R(s);
    acc[ROUTER_BWD_PLAN] = SM_R(plan);
    acc[ROUTER_BWD_U] = SM_R(u);
    acc[ROUTER_BWD_WG] = SM_R(Wg);
    for (int e = 0; e < r->E; e++) acc[ROUTER_BWD_DGE + e] = SM_R(dge[e]);
    return sm_op_insert(c, &sm_cl_router_bwd, "router_bwd", SM_BACKWARD_INPUT, -1, acc,
                        ROUTER_BWD_DGE + r->E, &a, sizeof a, 4.0 * r->T * r->d * r->E);
}

/* ---- dispatch ---- */
enum { DISPATCH_XE, DISPATCH_U, DISPATCH_PLAN, DISPATCH_NBUF };
/* dxe[e] is slot DISPATCH_BWD_DXE + e */
enum { DISPATCH_BWD_DU, DISPATCH_BWD_PLAN, DISPATCH_BWD_DXE };

static void sm_dispatch_cpu(void *b[], void *arg)
{
    const sm_moe_args *a = arg;
    const int32_t *plan = SM_BUF(b, DISPATCH_PLAN, int32_t);
    sm_moe_gather(sm_expert_out(b, DISPATCH_XE, plan, a->e, &a->r, a->r.d),
                  SM_BUF(b, DISPATCH_U, float), plan, a->e, a->r.T, a->r.K, a->r.E, a->r.d);
}
SM_CODELET(moe_dispatch, sm_dispatch_cpu);

int sm_insert_moe_dispatch(const sm_op_ctx *c, const sm_router_dims *r, int e, sm_tensor *xe,
                           sm_tensor *u, sm_tensor *plan)
{
    sm_moe_args a = {.r = *r, .e = e};
    sm_access acc[DISPATCH_NBUF] = {[DISPATCH_XE] = SM_W(xe), [DISPATCH_U] = SM_R(u),
                                    [DISPATCH_PLAN] = SM_R(plan)};
    return sm_op_insert(c, &sm_cl_moe_dispatch, "dispatch", SM_COMM, e, acc, DISPATCH_NBUF, &a,
                        sizeof a, (double)r->T * r->K / r->E * r->d);
}

/* ---- dispatch to another rank, and its rows taken there ---- */
enum { DISPATCH_RANK_XS, DISPATCH_RANK_XI, DISPATCH_RANK_U, DISPATCH_RANK_PLAN,
       DISPATCH_RANK_NBUF };
/* the weights are present only with weights */
enum { TAKE_ROWS_XE, TAKE_ROWS_XS, TAKE_ROWS_XI, TAKE_ROWS_WS, TAKE_ROWS_NBUF };
enum { GRADS_RANK_GS, GRADS_RANK_WS, GRADS_RANK_DY, GRADS_RANK_W, GRADS_RANK_PLAN,
       GRADS_RANK_NBUF };

static void sm_dispatch_rank_cpu(void *b[], void *arg)
{
    const sm_moe_args *a = arg;
    const sm_router_dims *r = &a->r;
    const int32_t *plan = SM_BUF(b, DISPATCH_RANK_PLAN, int32_t);
    int pairs = sm_plan_rows_between(plan, a->e, a->e1, r->T, r->K, r->E);
    float *xs = sm_resizable_resize(b[DISPATCH_RANK_XS], (size_t)pairs * r->d);
    int32_t *xi = sm_resizable_resize(b[DISPATCH_RANK_XI], (size_t)(a->e1 - a->e) + pairs);
    int n = sm_moe_pack_for_rank(xs, xi, SM_BUF(b, DISPATCH_RANK_U, float), plan, a->e, a->e1,
                                 r->T, r->K, r->E, r->d);
    sm_resizable_resize(b[DISPATCH_RANK_XS], (size_t)n * r->d);
}
SM_CODELET(moe_dispatch_rank, sm_dispatch_rank_cpu);

int sm_insert_moe_dispatch_rank(const sm_op_ctx *c, const sm_router_dims *r, int e0, int e1,
                                sm_tensor *xs, sm_tensor *xi, sm_tensor *u, sm_tensor *plan)
{
    sm_moe_args a = {.r = *r, .e = e0, .e1 = e1};
    sm_access acc[DISPATCH_RANK_NBUF] = {
        [DISPATCH_RANK_XS] = SM_W(xs), [DISPATCH_RANK_XI] = SM_W(xi),
        [DISPATCH_RANK_U] = SM_R(u), [DISPATCH_RANK_PLAN] = SM_R(plan)};
    return sm_op_insert(c, &sm_cl_moe_dispatch_rank, "dispatch_rank", SM_COMM, -1, acc,
                        DISPATCH_RANK_NBUF, &a, sizeof a,
                        (double)r->T * r->K * (e1 - e0) / r->E * r->d);
}

/* The output gradients of a rank's experts: dy's rows of the tokens choosing one of them,
 * each once (the order of sm_moe_pack_for_rank), and the mixing weights of their rows. */
static void sm_grads_rank_cpu(void *b[], void *arg)
{
    const sm_moe_args *a = arg;
    const sm_router_dims *r = &a->r;
    const int32_t *plan = SM_BUF(b, GRADS_RANK_PLAN, int32_t);
    int pairs = sm_plan_rows_between(plan, a->e, a->e1, r->T, r->K, r->E);
    float *gs = sm_resizable_resize(b[GRADS_RANK_GS], (size_t)pairs * r->d);
    /* the rank has the index of the same tokens from the forward pass */
    int n = sm_moe_pack_for_rank(gs, NULL, SM_BUF(b, GRADS_RANK_DY, float), plan, a->e, a->e1,
                                 r->T, r->K, r->E, r->d);
    sm_resizable_resize(b[GRADS_RANK_GS], (size_t)n * r->d);
    sm_moe_pair_weights(sm_resizable_resize(b[GRADS_RANK_WS], (size_t)pairs),
                        SM_BUF(b, GRADS_RANK_W, float), plan, a->e, a->e1, r->T, r->K, r->E);
}
SM_CODELET(moe_grads_rank, sm_grads_rank_cpu);

int sm_insert_moe_grads_for_rank(const sm_op_ctx *c, const sm_router_dims *r, int e0, int e1,
                                 sm_tensor *gs, sm_tensor *ws, sm_tensor *dy, sm_tensor *w,
                                 sm_tensor *plan)
{
    sm_moe_args a = {.r = *r, .e = e0, .e1 = e1};
    sm_access acc[GRADS_RANK_NBUF] = {
        [GRADS_RANK_GS] = SM_W(gs), [GRADS_RANK_WS] = SM_W(ws), [GRADS_RANK_DY] = SM_R(dy),
        [GRADS_RANK_W] = SM_R(w), [GRADS_RANK_PLAN] = SM_R(plan)};
    return sm_op_insert(c, &sm_cl_moe_grads_rank, "grads_for_rank", SM_COMM, -1, acc,
                        GRADS_RANK_NBUF, &a, sizeof a,
                        (double)r->T * r->K * (e1 - e0) / r->E * r->d);
}

static void sm_take_rows_cpu(void *b[], void *arg)
{
    const sm_moe_args *a = arg;
    const int32_t *xi = SM_BUF(b, TAKE_ROWS_XI, int32_t);
    float *xe = sm_resizable_resize(b[TAKE_ROWS_XE],
                                    (size_t)sm_moe_index_count(xi, a->j) * a->r.d);
    sm_moe_take_rows(xe, SM_BUF(b, TAKE_ROWS_XS, float), xi,
                     a->weighted ? SM_BUF(b, TAKE_ROWS_WS, float) : NULL, a->nexperts, a->j,
                     a->r.d);
}
SM_CODELET(moe_take_rows, sm_take_rows_cpu);

int sm_insert_moe_take_rows(const sm_op_ctx *c, const sm_router_dims *r, int e, int j,
                            int nexperts, sm_tensor *xe, sm_tensor *xs, sm_tensor *xi,
                            sm_tensor *ws)
{
    sm_moe_args a = {.r = *r, .e = e, .j = j, .nexperts = nexperts, .weighted = ws != NULL};
    sm_access acc[TAKE_ROWS_NBUF] = {[TAKE_ROWS_XE] = SM_W(xe), [TAKE_ROWS_XS] = SM_R(xs),
                                     [TAKE_ROWS_XI] = SM_R(xi), [TAKE_ROWS_WS] = SM_R(ws)};
    return sm_op_insert(c, &sm_cl_moe_take_rows, ws ? "take_grads" : "take_rows", SM_COMM, e, acc,
                        ws ? TAKE_ROWS_NBUF : TAKE_ROWS_WS, &a, sizeof a,
                        (ws ? 2.0 : 1.0) * r->T * r->K / r->E * r->d);
}

static void sm_dispatch_bwd_cpu(void *b[], void *arg)
{
    const sm_moe_args *a = arg;
    const int32_t *plan = SM_BUF(b, DISPATCH_BWD_PLAN, int32_t);
    const float **dxe = sm_expert_ptrs(b, DISPATCH_BWD_DXE, &a->r);
    sm_moe_gather_bwd(SM_BUF(b, DISPATCH_BWD_DU, float), dxe, plan, a->r.T, a->r.K, a->r.E,
                      a->r.d, a->accumulate);
    free(dxe);
}
SM_CODELET(moe_dispatch_bwd, sm_dispatch_bwd_cpu);

int sm_insert_moe_dispatch_bwd(const sm_op_ctx *c, const sm_router_dims *r, sm_tensor *du,
                               sm_tensor **dxe, sm_tensor *plan, int accumulate)
{
    sm_moe_args a = {.r = *r, .e = -1, .accumulate = accumulate};
    sm_access acc[DISPATCH_BWD_DXE + r->E];
    acc[DISPATCH_BWD_DU] = SM_ACC(du, accumulate);
    acc[DISPATCH_BWD_PLAN] = SM_R(plan);
    for (int e = 0; e < r->E; e++) acc[DISPATCH_BWD_DXE + e] = SM_R(dxe[e]);
    return sm_op_insert(c, &sm_cl_moe_dispatch_bwd, "dispatch_bwd", SM_COMM, -1, acc,
                        DISPATCH_BWD_DXE + r->E, &a, sizeof a, (double)r->T * r->K * r->d);
}

/* ---- combine ---- */
/* ye[e] is slot COMBINE_YE + e; then shared and res follow when present */
enum { COMBINE_Y, COMBINE_W, COMBINE_PLAN, COMBINE_YE };
/* dye (last) is present only when this rank holds the expert */
enum {
    COMBINE_BWD_DGE, COMBINE_BWD_DY, COMBINE_BWD_YE, COMBINE_BWD_W, COMBINE_BWD_PLAN,
    COMBINE_BWD_DYE, COMBINE_BWD_NBUF
};

static void sm_combine_cpu(void *b[], void *arg)
{
    const sm_moe_args *a = arg;
    const sm_router_dims *r = &a->r;
    const int32_t *plan = SM_BUF(b, COMBINE_PLAN, int32_t);
    const float **ye = sm_expert_ptrs(b, COMBINE_YE, r);
    int next = COMBINE_YE + r->E;
    const float *shared = a->shared ? SM_BUF(b, next++, float) : NULL;
    float *y = SM_BUF(b, COMBINE_Y, float);
    sm_moe_combine(y, ye, shared, SM_BUF(b, COMBINE_W, float), plan, r->T, r->K, r->E, r->d);
    if (a->residual) {
        const float *res = SM_BUF(b, next, float);
        for (size_t i = 0, n = (size_t)r->T * r->d; i < n; i++) y[i] += res[i];
    }
    free(ye);
}
SM_CODELET(moe_combine, sm_combine_cpu);

int sm_insert_moe_combine(const sm_op_ctx *c, const sm_router_dims *r, sm_tensor *y,
                          sm_tensor **ye, sm_tensor *shared, sm_tensor *w, sm_tensor *plan,
                          sm_tensor *res)
{
    sm_moe_args a = {.r = *r, .e = -1, .residual = res != NULL, .shared = shared != NULL};
    sm_access acc[COMBINE_YE + r->E + 2];
    int n = COMBINE_YE;
    acc[COMBINE_Y] = SM_W(y);
    acc[COMBINE_W] = SM_R(w);
    acc[COMBINE_PLAN] = SM_R(plan);
    for (int e = 0; e < r->E; e++) acc[n++] = SM_R(ye[e]);
    if (shared) acc[n++] = SM_R(shared);
    if (res) acc[n++] = SM_R(res);
    return sm_op_insert(c, &sm_cl_moe_combine, "combine", SM_COMM, -1, acc, n, &a, sizeof a,
                        2.0 * r->T * r->K * r->d);
}

static void sm_combine_bwd_cpu(void *b[], void *arg)
{
    const sm_moe_args *a = arg;
    const sm_router_dims *r = &a->r;
    const int32_t *plan = SM_BUF(b, COMBINE_BWD_PLAN, int32_t);
    sm_moe_combine_bwd(a->with_dye ? sm_expert_out(b, COMBINE_BWD_DYE, plan, a->e, r, r->d)
                                   : NULL,
                       sm_expert_out(b, COMBINE_BWD_DGE, plan, a->e, r, 1),
                       SM_BUF(b, COMBINE_BWD_DY, float), SM_BUF(b, COMBINE_BWD_YE, float),
                       SM_BUF(b, COMBINE_BWD_W, float), plan, a->e, r->T, r->K, r->E, r->d);
}
SM_CODELET(moe_combine_bwd, sm_combine_bwd_cpu);

int sm_insert_moe_combine_bwd(const sm_op_ctx *c, const sm_router_dims *r, int e, sm_tensor *dye,
                              sm_tensor *dge, sm_tensor *dy, sm_tensor *ye, sm_tensor *w,
                              sm_tensor *plan)
{
    sm_moe_args a = {.r = *r, .e = e, .with_dye = dye != NULL};
    sm_access acc[COMBINE_BWD_NBUF] = {
        [COMBINE_BWD_DGE] = SM_W(dge), [COMBINE_BWD_DY] = SM_R(dy), [COMBINE_BWD_YE] = SM_R(ye),
        [COMBINE_BWD_W] = SM_R(w), [COMBINE_BWD_PLAN] = SM_R(plan), [COMBINE_BWD_DYE] = SM_W(dye)};
    return sm_op_insert(c, &sm_cl_moe_combine_bwd, "combine_bwd", SM_COMM, e, acc,
                        dye ? COMBINE_BWD_NBUF : COMBINE_BWD_DYE, &a, sizeof a,
                        (dye ? 3.0 : 2.0) * r->T * r->K / r->E * r->d);
}
