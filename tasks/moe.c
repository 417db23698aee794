/* Codelets and insert helpers of the MoE family: router, dispatch, combine and their
 * backward passes. Tasks over all experts take the E per-expert buffers as consecutive
 * buffers and reduce them in expert order, so sums never depend on scheduling. */
#include "tasks/moe.h"

#include <stdlib.h>
#include "tasks/kernel_util.h"

typedef struct {
    sm_router_dims r;
    int e, accumulate, residual, shared, bias;
    sm_balance bal;
} sm_moe_args;

/* Host pointers of the E consecutive buffers starting at `first`. */
static const float **sm_expert_ptrs(void *b[], int first, int E)
{
    const float **p = sm_kcalloc(E, sizeof *p, "the experts' buffer pointers");
    for (int e = 0; e < E; e++) p[e] = SM_BUF(b, first + e, float);
    return p;
}

/* ---- router ---- */
/* buffers: plan, w, s, balance loss, u, Wg, [bias] */
static void sm_router_fwd_cpu(void *b[], void *arg)
{
    const sm_moe_args *a = arg;
    const sm_router_dims *r = &a->r;
    int32_t *plan = SM_BUF(b, 0, int32_t);
    float *s = SM_BUF(b, 2, float);
    sm_router_fwd(plan, SM_BUF(b, 1, float), s, SM_BUF(b, 4, float), SM_BUF(b, 5, float),
                  a->bias ? SM_BUF(b, 6, float) : NULL, r);
    SM_BUF(b, 3, float)[0] = a->bal.coef > 0 ? (float)sm_balance_loss(NULL, s, plan, r->T,
                                                                      a->bal.S, r->K, r->E,
                                                                      a->bal.coef)
                                             : 0.0f;
}
SM_CODELET(router_fwd, sm_router_fwd_cpu);

int sm_insert_router_fwd(const sm_op_ctx *c, const sm_router_dims *r, const sm_balance *bal,
                         sm_tensor *plan, sm_tensor *w, sm_tensor *s, sm_tensor *bal_loss,
                         sm_tensor *u, sm_tensor *Wg, sm_tensor *bias)
{
    sm_moe_args a = {.r = *r, .e = -1, .bias = bias != NULL, .bal = *bal};
    sm_access acc[] = {SM_W(plan), SM_W(w), SM_W(s), SM_W(bal_loss), SM_R(u), SM_R(Wg),
                       SM_R(bias)};
    return sm_op_insert(c, &sm_cl_router_fwd, "router_fwd", SM_FORWARD, -1, acc, bias ? 7 : 6,
                        &a, sizeof a, 2.0 * r->T * r->d * r->E);
}

/* buffers: du, dWg, s, plan, u, Wg, dge[0..E-1] */
static void sm_router_bwd_cpu(void *b[], void *arg)
{
    const sm_moe_args *a = arg;
    const sm_router_dims *r = &a->r;
    const float **dge = sm_expert_ptrs(b, 6, r->E);
    float *dw = sm_kfloats((size_t)r->T * r->K, "router_bwd: mixing-weight gradients");
    float *ds = a->bal.coef > 0 ? sm_kfloats((size_t)r->T * r->E, "router_bwd: balance gradients")
                                : NULL;
    const int32_t *plan = SM_BUF(b, 3, int32_t);
    const float *s = SM_BUF(b, 2, float);
    sm_moe_collect_dw(dw, dge, plan, r->T, r->K, r->E);
    if (ds) sm_balance_loss(ds, s, plan, r->T, a->bal.S, r->K, r->E, a->bal.coef);
    sm_router_bwd(SM_BUF(b, 0, float), SM_BUF(b, 1, float), dw, ds, s, plan, SM_BUF(b, 4, float),
                  SM_BUF(b, 5, float), r, a->accumulate);
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
    sm_access acc[6 + r->E];
    acc[0] = SM_ACC(du, accumulate);
    acc[1] = SM_RW(dWg);
    acc[2] = SM_R(s);
    acc[3] = SM_R(plan);
    acc[4] = SM_R(u);
    acc[5] = SM_R(Wg);
    for (int e = 0; e < r->E; e++) acc[6 + e] = SM_R(dge[e]);
    return sm_op_insert(c, &sm_cl_router_bwd, "router_bwd", SM_BACKWARD_INPUT, -1, acc,
                        6 + r->E, &a, sizeof a, 4.0 * r->T * r->d * r->E);
}

/* ---- dispatch ---- */
static void sm_dispatch_cpu(void *b[], void *arg)
{
    const sm_moe_args *a = arg;
    sm_moe_gather(SM_BUF(b, 0, float), SM_BUF(b, 1, float), SM_BUF(b, 2, int32_t), a->e, a->r.T,
                  a->r.K, a->r.E, a->r.d);
}
SM_CODELET(moe_dispatch, sm_dispatch_cpu);

int sm_insert_moe_dispatch(const sm_op_ctx *c, const sm_router_dims *r, int e, sm_tensor *xe,
                           sm_tensor *u, sm_tensor *plan)
{
    sm_moe_args a = {.r = *r, .e = e};
    sm_access acc[] = {SM_W(xe), SM_R(u), SM_R(plan)};
    return sm_op_insert(c, &sm_cl_moe_dispatch, "dispatch", SM_COMM, e, acc, 3, &a, sizeof a,
                        (double)r->T * r->K / r->E * r->d);
}

/* buffers: du, plan, dxe[0..E-1] */
static void sm_dispatch_bwd_cpu(void *b[], void *arg)
{
    const sm_moe_args *a = arg;
    const float **dxe = sm_expert_ptrs(b, 2, a->r.E);
    sm_moe_gather_bwd(SM_BUF(b, 0, float), dxe, SM_BUF(b, 1, int32_t), a->r.T, a->r.K, a->r.E,
                      a->r.d, a->accumulate);
    free(dxe);
}
SM_CODELET(moe_dispatch_bwd, sm_dispatch_bwd_cpu);

int sm_insert_moe_dispatch_bwd(const sm_op_ctx *c, const sm_router_dims *r, sm_tensor *du,
                               sm_tensor **dxe, sm_tensor *plan, int accumulate)
{
    sm_moe_args a = {.r = *r, .e = -1, .accumulate = accumulate};
    sm_access acc[2 + r->E];
    acc[0] = SM_ACC(du, accumulate);
    acc[1] = SM_R(plan);
    for (int e = 0; e < r->E; e++) acc[2 + e] = SM_R(dxe[e]);
    return sm_op_insert(c, &sm_cl_moe_dispatch_bwd, "dispatch_bwd", SM_COMM, -1, acc, 2 + r->E,
                        &a, sizeof a, (double)r->T * r->K * r->d);
}

/* ---- combine ---- */
/* buffers: y, w, plan, ye[0..E-1], then shared and res when present */
static void sm_combine_cpu(void *b[], void *arg)
{
    const sm_moe_args *a = arg;
    const sm_router_dims *r = &a->r;
    const float **ye = sm_expert_ptrs(b, 3, r->E);
    int next = 3 + r->E;
    const float *shared = a->shared ? SM_BUF(b, next++, float) : NULL;
    float *y = SM_BUF(b, 0, float);
    sm_moe_combine(y, ye, shared, SM_BUF(b, 1, float), SM_BUF(b, 2, int32_t), r->T, r->K, r->E,
                   r->d);
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
    sm_access acc[5 + r->E];
    int n = 0;
    acc[n++] = SM_W(y);
    acc[n++] = SM_R(w);
    acc[n++] = SM_R(plan);
    for (int e = 0; e < r->E; e++) acc[n++] = SM_R(ye[e]);
    if (shared) acc[n++] = SM_R(shared);
    if (res) acc[n++] = SM_R(res);
    return sm_op_insert(c, &sm_cl_moe_combine, "combine", SM_COMM, -1, acc, n, &a, sizeof a,
                        2.0 * r->T * r->K * r->d);
}

/* buffers: dye, dge, dy, ye, w, plan */
static void sm_combine_bwd_cpu(void *b[], void *arg)
{
    const sm_moe_args *a = arg;
    sm_moe_combine_bwd(SM_BUF(b, 0, float), SM_BUF(b, 1, float), SM_BUF(b, 2, float),
                       SM_BUF(b, 3, float), SM_BUF(b, 4, float), SM_BUF(b, 5, int32_t), a->e,
                       a->r.T, a->r.K, a->r.E, a->r.d);
}
SM_CODELET(moe_combine_bwd, sm_combine_bwd_cpu);

int sm_insert_moe_combine_bwd(const sm_op_ctx *c, const sm_router_dims *r, int e, sm_tensor *dye,
                              sm_tensor *dge, sm_tensor *dy, sm_tensor *ye, sm_tensor *w,
                              sm_tensor *plan)
{
    sm_moe_args a = {.r = *r, .e = e};
    sm_access acc[] = {SM_W(dye), SM_W(dge), SM_R(dy), SM_R(ye), SM_R(w), SM_R(plan)};
    return sm_op_insert(c, &sm_cl_moe_combine_bwd, "combine_bwd", SM_COMM, e, acc, 6, &a,
                        sizeof a, 3.0 * r->T * r->K / r->E * r->d);
}
