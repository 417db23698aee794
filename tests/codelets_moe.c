/* Codelet cases of the MoE family (tasks/moe.h): router forward and backward (with and
 * without bias and balance loss), dispatch, combine and their backward passes, on plans routed
 * by the pure router kernel. Per-expert tensors are resizable row buffers, one per expert,
 * expert e's holding its count[e] rows of the plan; the buffer a task writes starts with other
 * rows, and must end with exactly count[e] rows. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "tasks/moe.h"
#include "tests/codelet_harness.h"

/* rows more than its count a written expert buffer starts with */
enum { MAXE = 8, STALE_ROWS = 2 };

/* The E per-expert row buffers of a case: x[e] (tensor t[e], reference rows[e]). */
typedef struct experts {
    ct *x[MAXE];
    sm_tensor *t[MAXE];
    const float *rows[MAXE];
} experts;

/* Buffers "<name>.<e>" of rows of `width` elements, expert e's with its count[e] rows of rt's
 * plan, except expert `written` (-1: none), the task's output: it starts with STALE_ROWS more
 * rows, and its reference with the count[e] rows the task must leave. */
static experts fx_experts(fx *f, const char *name, const routed *rt, const sm_router_dims *r,
                          int width, int written)
{
    experts x;
    const int32_t *count = sm_plan_count(RI(rt->plan), r->T, r->K, r->E);
    for (int e = 0; e < r->E; e++) {
        char buf[64];
        snprintf(buf, sizeof buf, "%s.%d", name, e);
        x.x[e] = fx_rows(f, buf, (size_t)count[e] + (e == written ? STALE_ROWS : 0), width);
        if (e == written) fx_resize(x.x[e], (size_t)count[e] * width);
        x.t[e] = x.x[e]->t;
        x.rows[e] = RF(x.x[e]);
    }
    return x;
}

/* The E buffers, read, as acc[0..E-1]. */
static void read_experts(sm_access *acc, const experts *x, const sm_router_dims *r)
{
    for (int e = 0; e < r->E; e++) acc[e] = SM_R(x->t[e]);
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
        experts dge = fx_experts(f, "dge", &rt, r, 1, -1);
        sm_access acc[6 + MAXE] = {SM_ACC(du->t, accumulate), SM_RW(dWg->t), SM_R(rt.s->t),
                                   SM_R(rt.plan->t), SM_R(rt.u->t), SM_R(rt.Wg->t)};
        read_experts(acc + 6, &dge, r);
        int rc = sm_insert_router_bwd(&f->c, r, &bal, du->t, dWg->t, dge.t, rt.s->t, rt.plan->t,
                                      rt.u->t, rt.Wg->t, accumulate);
        float dw[8 * 2], ds[8 * 8];
        sm_moe_collect_dw(dw, dge.rows, RI(rt.plan), r->T, r->K, r->E);
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
    experts xe = fx_experts(f, "xe", &rt, r, r->d, rt.e);
    int rc = sm_insert_moe_dispatch(&f->c, r, rt.e, xe.t[rt.e], rt.u->t, rt.plan->t);
    sm_moe_gather(RF(xe.x[rt.e]), RF(rt.u), RI(rt.plan), rt.e, r->T, r->K, r->E, r->d);
    fx_check(f, "moe_dispatch", rc,
             WANT("dispatch", (double)r->T * r->K / r->E * r->d, SM_W(xe.t[rt.e]),
                  SM_R(rt.u->t), SM_R(rt.plan->t)));
}

/* Expert j of [e0, e1) taken from a pack for its rank gives the rows of the per-expert
 * dispatch, for every j: the two paths to an expert's rows agree. */
static int pack_matches_gather(const float *xs, const int32_t *xi, const routed *rt,
                               const sm_router_dims *r, int e0, int e1)
{
    const int32_t *count = sm_plan_count(RI(rt->plan), r->T, r->K, r->E);
    int same = 1;
    for (int e = e0; e < e1; e++) {
        float a[64 * 16], b[64 * 16];
        int n = sm_moe_take_rows(a, xs, xi, NULL, e1 - e0, e - e0, r->d);
        sm_moe_gather(b, RF(rt->u), RI(rt->plan), e, r->T, r->K, r->E, r->d);
        same &= n == count[e] && memcmp(a, b, (size_t)n * r->d * sizeof *a) == 0;
    }
    return same;
}

static void case_moe_dispatch_rank(fx *f)
{
    const sm_router_dims *r = &fx_router_dims;
    routed rt = fx_route(f, r);
    int e0 = r->E / 2, e1 = r->E;
    int pairs = sm_plan_rows_between(RI(rt.plan), e0, e1, r->T, r->K, r->E);
    ct *xs = fx_rows(f, "xs", STALE_ROWS, r->d);
    ct *xi = fx_rows_of(f, "xi", SM_I32, STALE_ROWS, 1, (int32_t[]){-5, -5});
    fx_resize(xs, (size_t)pairs * r->d);
    fx_resize(xi, (size_t)(e1 - e0) + pairs);
    int rc = sm_insert_moe_dispatch_rank(&f->c, r, e0, e1, xs->t, xi->t, rt.u->t, rt.plan->t);
    int n = sm_moe_pack_for_rank(RF(xs), RI(xi), RF(rt.u), RI(rt.plan), e0, e1, r->T, r->K,
                                 r->E, r->d);
    fx_resize(xs, (size_t)n * r->d);
    fx_expect(f, n > 0 && n <= pairs && n <= r->T, "moe_dispatch_rank: each token sent once");
    fx_expect(f, pack_matches_gather(RF(xs), RI(xi), &rt, r, e0, e1),
              "moe_dispatch_rank: every expert's rows taken from the pack are its dispatch");
    fx_check(f, "moe_dispatch_rank", rc,
             WANT("dispatch_rank", (double)r->T * r->K * (e1 - e0) / r->E * r->d, SM_W(xs->t),
                  SM_W(xi->t), SM_R(rt.u->t), SM_R(rt.plan->t)));
}

static void case_moe_take_rows(fx *f)
{
    const sm_router_dims *r = &fx_router_dims;
    routed rt = fx_route(f, r);
    int e0 = 0, e1 = r->E / 2, j = 1;
    float xs_v[64 * 16];
    int32_t xi_v[64 * 8];
    int n = sm_moe_pack_for_rank(xs_v, xi_v, RF(rt.u), RI(rt.plan), e0, e1, r->T, r->K, r->E,
                                 r->d);
    int nidx = e1 - e0;
    for (int e = e0; e < e1; e++) nidx += xi_v[e - e0];
    ct *xs = fx_rows_of(f, "xs", SM_F32, (size_t)n, r->d, xs_v);
    ct *xi = fx_rows_of(f, "xi", SM_I32, (size_t)nidx, 1, xi_v);
    ct *xe = fx_rows(f, "xe", (size_t)xi_v[j] + STALE_ROWS, r->d);
    fx_resize(xe, (size_t)xi_v[j] * r->d);
    int rc = sm_insert_moe_take_rows(&f->c, r, e0 + j, j, e1 - e0, xe->t, xs->t, xi->t, NULL);
    sm_moe_take_rows(RF(xe), RF(xs), RI(xi), NULL, e1 - e0, j, r->d);
    fx_check(f, "moe_take_rows", rc,
             WANT("take_rows", (double)r->T * r->K / r->E * r->d, SM_W(xe->t), SM_R(xs->t),
                  SM_R(xi->t)));
    /* with weights: the output gradients of expert j, each row times its weight */
    rt = fx_route(f, r);
    n = sm_moe_pack_for_rank(xs_v, xi_v, RF(rt.u), RI(rt.plan), e0, e1, r->T, r->K, r->E, r->d);
    nidx = e1 - e0;
    for (int e = e0; e < e1; e++) nidx += xi_v[e - e0];
    float ws_v[64];
    sm_moe_pair_weights(ws_v, RF(rt.w), RI(rt.plan), e0, e1, r->T, r->K, r->E);
    xs = fx_rows_of(f, "gs", SM_F32, (size_t)n, r->d, xs_v);
    xi = fx_rows_of(f, "xi", SM_I32, (size_t)nidx, 1, xi_v);
    ct *ws = fx_rows_of(f, "ws", SM_F32, (size_t)(nidx - (e1 - e0)), 1, ws_v);
    xe = fx_rows(f, "dye", (size_t)xi_v[j] + STALE_ROWS, r->d);
    fx_resize(xe, (size_t)xi_v[j] * r->d);
    rc = sm_insert_moe_take_rows(&f->c, r, e0 + j, j, e1 - e0, xe->t, xs->t, xi->t, ws->t);
    sm_moe_take_rows(RF(xe), RF(xs), RI(xi), RF(ws), e1 - e0, j, r->d);
    fx_check(f, "moe_take_rows weighted", rc,
             WANT("take_grads", 2.0 * r->T * r->K / r->E * r->d, SM_W(xe->t), SM_R(xs->t),
                  SM_R(xi->t), SM_R(ws->t)));
}

static void case_moe_dispatch_bwd(fx *f)
{
    const sm_router_dims *r = &fx_router_dims;
    for (int accumulate = 0; accumulate < 2; accumulate++) {
        routed rt = fx_route(f, r);
        ct *du = fx_rand(f, "du", r->T * r->d);
        experts dxe = fx_experts(f, "dxe", &rt, r, r->d, -1);
        sm_access acc[2 + MAXE] = {SM_ACC(du->t, accumulate), SM_R(rt.plan->t)};
        read_experts(acc + 2, &dxe, r);
        int rc = sm_insert_moe_dispatch_bwd(&f->c, r, du->t, dxe.t, rt.plan->t, accumulate);
        sm_moe_gather_bwd(RF(du), dxe.rows, RI(rt.plan), r->T, r->K, r->E, r->d, accumulate);
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
        experts ye = fx_experts(f, "ye", &rt, r, r->d, -1);
        sm_access acc[5 + MAXE] = {SM_W(y->t), SM_R(rt.w->t), SM_R(rt.plan->t)};
        read_experts(acc + 3, &ye, r);
        int n = 3 + r->E;
        if (extras) {
            acc[n++] = SM_R(shared->t);
            acc[n++] = SM_R(res->t);
        }
        int rc = sm_insert_moe_combine(&f->c, r, y->t, ye.t, extras ? shared->t : NULL, rt.w->t,
                                       rt.plan->t, extras ? res->t : NULL);
        sm_moe_combine(RF(y), ye.rows, extras ? RF(shared) : NULL, RF(rt.w), RI(rt.plan), r->T, r->K,
                       r->E, r->d);
        for (int i = 0; extras && i < r->T * r->d; i++) RF(y)[i] += RF(res)[i];
        fx_check(f, extras ? "moe_combine shared residual" : "moe_combine", rc,
                 (want){"combine", 2.0 * r->T * r->K * r->d, n, acc});
    }
}

static void case_moe_combine_bwd(fx *f)
{
    const sm_router_dims *r = &fx_router_dims;
    for (int remote = 0; remote < 2; remote++) {
        routed rt = fx_route(f, r);
        int e = rt.e;
        experts dye = fx_experts(f, "dye", &rt, r, r->d, remote ? -1 : e);
        experts dge = fx_experts(f, "dge", &rt, r, 1, e);
        experts ye = fx_experts(f, "ye", &rt, r, r->d, -1);
        ct *dy = fx_rand(f, "dy", r->T * r->d);
        /* an expert on another rank: only the mixing-weight gradients, dye left as it was */
        sm_tensor *dye_t = remote ? NULL : dye.t[e];
        int rc = sm_insert_moe_combine_bwd(&f->c, r, e, dye_t, dge.t[e], dy->t, ye.t[e],
                                           rt.w->t, rt.plan->t);
        sm_moe_combine_bwd(remote ? NULL : RF(dye.x[e]), RF(dge.x[e]), RF(dy), ye.rows[e],
                           RF(rt.w), RI(rt.plan), e, r->T, r->K, r->E, r->d);
        double flops = (remote ? 2.0 : 3.0) * r->T * r->K / r->E * r->d;
        if (remote)
            fx_check(f, "moe_combine_bwd remote expert", rc,
                     WANT("combine_bwd", flops, SM_W(dge.t[e]), SM_R(dy->t), SM_R(ye.t[e]),
                          SM_R(rt.w->t), SM_R(rt.plan->t)));
        else
            fx_check(f, "moe_combine_bwd", rc,
                     WANT("combine_bwd", flops, SM_W(dge.t[e]), SM_R(dy->t), SM_R(ye.t[e]),
                          SM_R(rt.w->t), SM_R(rt.plan->t), SM_W(dye.t[e])));
    }
}

/* The output gradients sent to a rank and scaled there equal the combine backward's. */
static void case_moe_grads_for_rank(fx *f)
{
    const sm_router_dims *r = &fx_router_dims;
    routed rt = fx_route(f, r);
    int e0 = r->E / 2, e1 = r->E;
    int pairs = sm_plan_rows_between(RI(rt.plan), e0, e1, r->T, r->K, r->E);
    const int32_t *count = sm_plan_count(RI(rt.plan), r->T, r->K, r->E);
    ct *dy = fx_rand(f, "dy", r->T * r->d);
    ct *gs = fx_rows(f, "gs", STALE_ROWS, r->d), *ws = fx_rows(f, "ws", STALE_ROWS, 1);
    fx_resize(gs, (size_t)pairs * r->d);
    fx_resize(ws, (size_t)pairs);
    int rc = sm_insert_moe_grads_for_rank(&f->c, r, e0, e1, gs->t, ws->t, dy->t, rt.w->t,
                                          rt.plan->t);
    int32_t xi[8 + 64];
    int n = sm_moe_pack_for_rank(RF(gs), xi, RF(dy), RI(rt.plan), e0, e1, r->T, r->K, r->E,
                                 r->d);
    fx_resize(gs, (size_t)n * r->d);
    sm_moe_pair_weights(RF(ws), RF(rt.w), RI(rt.plan), e0, e1, r->T, r->K, r->E);
    int same = 1;
    for (int e = e0; e < e1; e++) {
        float taken[64 * 16], want[64 * 16], ye[64 * 16] = {0}, dge[64];
        int m = sm_moe_take_rows(taken, RF(gs), xi, RF(ws), e1 - e0, e - e0, r->d);
        sm_moe_combine_bwd(want, dge, RF(dy), ye, RF(rt.w), RI(rt.plan), e, r->T, r->K, r->E,
                           r->d);
        same &= m == count[e] && memcmp(taken, want, (size_t)m * r->d * sizeof *want) == 0;
    }
    fx_expect(f, same, "moe_grads_for_rank: every expert's output gradient taken and scaled "
                       "there is the combine backward's, bit for bit");
    fx_check(f, "moe_grads_for_rank", rc,
             WANT("grads_for_rank", (double)r->T * r->K * (e1 - e0) / r->E * r->d, SM_W(gs->t),
                  SM_W(ws->t), SM_R(dy->t), SM_R(rt.w->t), SM_R(rt.plan->t)));
}

const helper_case codelet_cases_moe[] = {
    HELPER_CASE(router_fwd), HELPER_CASE(router_bwd), HELPER_CASE(moe_dispatch),
    HELPER_CASE(moe_dispatch_rank), HELPER_CASE(moe_take_rows), HELPER_CASE(moe_grads_for_rank),
    HELPER_CASE(moe_dispatch_bwd), HELPER_CASE(moe_combine), HELPER_CASE(moe_combine_bwd),
    {NULL, NULL}};
