/* Codelet cases of the MoE family (tasks/moe.h): router forward and backward (with and
 * without bias and balance loss), dispatch, combine and their backward passes, on plans routed
 * by the pure router kernel. Per-expert tensors are views of buffers packed by the plan
 * (T*K rows), compared whole: a task must leave the other experts' rows as they were. */
#include <stddef.h>
#include "tasks/moe.h"
#include "tests/codelet_harness.h"

enum { MAXE = 8 };

/* Expert e's rows of packed case tensor x, rows of `width` elements. */
static float *rows_of(ct *x, const routed *rt, int e, const sm_router_dims *r, int width)
{
    return sm_plan_expert_rows(RF(x), RI(rt->plan), e, r->T, r->K, r->E, width);
}

/* A buffer packed by rt's plan (T*K rows of `width`) as E views (views[e]), with each
 * expert's rows in rows[e] and its views read in acc[0..E-1]. */
static ct *fx_packed(fx *f, const char *name, const routed *rt, const sm_router_dims *r,
                     int width, sm_tensor **views, const float **rows, sm_access *acc)
{
    ct *x = fx_views(f, name, (size_t)r->T * r->K * width, r->E, views);
    for (int e = 0; e < r->E; e++) {
        rows[e] = rows_of(x, rt, e, r, width);
        acc[e] = SM_R(views[e]);
    }
    return x;
}

static void case_router_fwd(fx *f)
{
    const sm_router_dims *r = &fx_router_dims;
    for (int variant = 0; variant < 2; variant++) {
        int with_bias = variant == 1;
        sm_balance bal = {.S = 4, .coef = variant ? 0.01f : 0};
        int np = sm_moe_plan_len(r->T, r->K, r->E);
        ct *plan = fx_ids(f, "plan", np, 100), *w = fx_rand(f, "w", r->T * r->K);
        ct *s = fx_rand(f, "s", r->T * r->E), *bl = fx_rand(f, "bal_loss", 1);
        ct *u = fx_rand(f, "u", r->T * r->d), *Wg = fx_rand(f, "Wg", r->E * r->d);
        ct *bias = fx_randn(f, "bias", r->E, 0.1f, 0);
        int rc = sm_insert_router_fwd(&f->c, r, &bal, plan->t, w->t, s->t, bl->t, u->t, Wg->t,
                                      with_bias ? bias->t : NULL);
        sm_router_fwd(RI(plan), RF(w), RF(s), RF(u), RF(Wg), with_bias ? RF(bias) : NULL, r);
        RF(bl)[0] = bal.coef > 0 ? (float)sm_balance_loss(NULL, RF(s), RI(plan), r->T, bal.S,
                                                          r->K, r->E, bal.coef)
                                 : 0.0f;
        double flops = 2.0 * r->T * r->d * r->E;
        if (with_bias)
            fx_check(f, "router_fwd bias balance", rc,
                     WANT("router_fwd", flops, SM_W(plan->t), SM_W(w->t), SM_W(s->t),
                          SM_W(bl->t), SM_R(u->t), SM_R(Wg->t), SM_R(bias->t)));
        else
            fx_check(f, "router_fwd", rc,
                     WANT("router_fwd", flops, SM_W(plan->t), SM_W(w->t), SM_W(s->t),
                          SM_W(bl->t), SM_R(u->t), SM_R(Wg->t)));
    }
}

static void case_router_bwd(fx *f)
{
    const sm_router_dims *r = &fx_router_dims;
    for (int variant = 0; variant < 2; variant++) {
        int accumulate = variant;
        sm_balance bal = {.S = 4, .coef = variant ? 0.01f : 0};
        routed rt = fx_route(f, r);
        ct *du = fx_rand(f, "du", r->T * r->d), *dWg = fx_rand(f, "dWg", r->E * r->d);
        sm_tensor *dget[MAXE];
        const float *dgep[MAXE];
        sm_access acc[6 + MAXE] = {SM_ACC(du->t, accumulate), SM_RW(dWg->t), SM_R(rt.s->t),
                                   SM_R(rt.plan->t), SM_R(rt.u->t), SM_R(rt.Wg->t)};
        fx_packed(f, "dge", &rt, r, 1, dget, dgep, acc + 6);
        int rc = sm_insert_router_bwd(&f->c, r, &bal, du->t, dWg->t, dget, rt.s->t, rt.plan->t,
                                      rt.u->t, rt.Wg->t, accumulate);
        float dw[8 * 2], ds[8 * 8];
        sm_moe_collect_dw(dw, dgep, RI(rt.plan), r->T, r->K, r->E);
        if (bal.coef > 0)
            sm_balance_loss(ds, RF(rt.s), RI(rt.plan), r->T, bal.S, r->K, r->E, bal.coef);
        sm_router_bwd(RF(du), RF(dWg), dw, bal.coef > 0 ? ds : NULL, RF(rt.s), RI(rt.plan),
                      RF(rt.u), RF(rt.Wg), r, accumulate);
        fx_check(f, variant ? "router_bwd accumulate balance" : "router_bwd", rc,
                 (want){"router_bwd", 4.0 * r->T * r->d * r->E, 6 + r->E, acc});
    }
}

static void case_moe_dispatch(fx *f)
{
    const sm_router_dims *r = &fx_router_dims;
    routed rt = fx_route(f, r);
    sm_tensor *xe[MAXE];
    ct *packed = fx_views(f, "xe", (size_t)r->T * r->K * r->d, r->E, xe);
    int rc = sm_insert_moe_dispatch(&f->c, r, rt.e, xe[rt.e], rt.u->t, rt.plan->t);
    sm_moe_gather(rows_of(packed, &rt, rt.e, r, r->d), RF(rt.u), RI(rt.plan), rt.e, r->T, r->K,
                  r->E, r->d);
    fx_check(f, "moe_dispatch", rc,
             WANT("dispatch", (double)r->T * r->K / r->E * r->d, SM_PART(xe[rt.e]),
                  SM_R(rt.u->t), SM_R(rt.plan->t)));
}

static void case_moe_dispatch_bwd(fx *f)
{
    const sm_router_dims *r = &fx_router_dims;
    for (int accumulate = 0; accumulate < 2; accumulate++) {
        routed rt = fx_route(f, r);
        ct *du = fx_rand(f, "du", r->T * r->d);
        sm_tensor *dxe[MAXE];
        const float *dxep[MAXE];
        sm_access acc[2 + MAXE] = {SM_ACC(du->t, accumulate), SM_R(rt.plan->t)};
        fx_packed(f, "dxe", &rt, r, r->d, dxe, dxep, acc + 2);
        int rc = sm_insert_moe_dispatch_bwd(&f->c, r, du->t, dxe, rt.plan->t, accumulate);
        sm_moe_gather_bwd(RF(du), dxep, RI(rt.plan), r->T, r->K, r->E, r->d, accumulate);
        fx_check(f, accumulate ? "moe_dispatch_bwd accumulate" : "moe_dispatch_bwd", rc,
                 (want){"dispatch_bwd", (double)r->T * r->K * r->d, 2 + r->E, acc});
    }
}

static void case_moe_combine(fx *f)
{
    const sm_router_dims *r = &fx_router_dims;
    for (int extras = 0; extras < 2; extras++) {
        routed rt = fx_route(f, r);
        ct *y = fx_rand(f, "y", r->T * r->d), *shared = fx_rand(f, "shared", r->T * r->d);
        ct *res = fx_rand(f, "res", r->T * r->d);
        sm_tensor *ye[MAXE];
        const float *yep[MAXE];
        sm_access acc[5 + MAXE] = {SM_W(y->t), SM_R(rt.w->t), SM_R(rt.plan->t)};
        fx_packed(f, "ye", &rt, r, r->d, ye, yep, acc + 3);
        int n = 3 + r->E;
        if (extras) {
            acc[n++] = SM_R(shared->t);
            acc[n++] = SM_R(res->t);
        }
        int rc = sm_insert_moe_combine(&f->c, r, y->t, ye, extras ? shared->t : NULL, rt.w->t,
                                       rt.plan->t, extras ? res->t : NULL);
        sm_moe_combine(RF(y), yep, extras ? RF(shared) : NULL, RF(rt.w), RI(rt.plan), r->T, r->K,
                       r->E, r->d);
        for (int i = 0; extras && i < r->T * r->d; i++) RF(y)[i] += RF(res)[i];
        fx_check(f, extras ? "moe_combine shared residual" : "moe_combine", rc,
                 (want){"combine", 2.0 * r->T * r->K * r->d, n, acc});
    }
}

static void case_moe_combine_bwd(fx *f)
{
    const sm_router_dims *r = &fx_router_dims;
    routed rt = fx_route(f, r);
    size_t routed_rows = (size_t)r->T * r->K;
    sm_tensor *dyev[MAXE], *dgev[MAXE], *yev[MAXE];
    ct *dye = fx_views(f, "dye", routed_rows * r->d, r->E, dyev);
    ct *dge = fx_views(f, "dge", routed_rows, r->E, dgev);
    ct *dy = fx_rand(f, "dy", r->T * r->d), *ye = fx_views(f, "ye", routed_rows * r->d, r->E, yev);
    int e = rt.e;
    int rc = sm_insert_moe_combine_bwd(&f->c, r, e, dyev[e], dgev[e], dy->t, yev[e], rt.w->t,
                                       rt.plan->t);
    sm_moe_combine_bwd(rows_of(dye, &rt, e, r, r->d), rows_of(dge, &rt, e, r, 1), RF(dy),
                       rows_of(ye, &rt, e, r, r->d), RF(rt.w), RI(rt.plan), e, r->T, r->K, r->E,
                       r->d);
    fx_check(f, "moe_combine_bwd", rc,
             WANT("combine_bwd", 3.0 * r->T * r->K / r->E * r->d, SM_PART(dyev[e]),
                  SM_PART(dgev[e]), SM_R(dy->t), SM_R(yev[e]), SM_R(rt.w->t),
                  SM_R(rt.plan->t)));
}

const helper_case codelet_cases_moe[] = {
    HELPER_CASE(router_fwd), HELPER_CASE(router_bwd), HELPER_CASE(moe_dispatch),
    HELPER_CASE(moe_dispatch_bwd), HELPER_CASE(moe_combine), HELPER_CASE(moe_combine_bwd),
    {NULL, NULL}};
