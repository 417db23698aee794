/* Codelet cases of the optimizer step (tasks/optim.h): gradient sums of squares, the clip
 * decision (finite and NaN loss), AdamW (F32 and BF16 moments) and the bias update, applied
 * and skipped. */
#include <math.h>
#include <stddef.h>
#include "base/dtype.h"
#include "tasks/optim.h"
#include "tests/codelet_harness.h"

enum { NG = 3 };
static const int group_sizes[NG] = {5, 7, 3};

static void case_grad_sumsq(fx *f)
{
    ct *sumsq = fx_tensor(f, "sumsq", SM_F64, 1, (double[]){7.0});
    sm_tensor *g[NG];
    sm_access acc[1 + NG] = {SM_W(sumsq->t)};
    double s = 0, numel = 0;
    for (int i = 0; i < NG; i++) {
        ct *x = fx_rand(f, "g", group_sizes[i]);
        g[i] = x->t;
        acc[1 + i] = SM_R(x->t);
        s += sm_sumsq(RF(x), group_sizes[i]);
        numel += group_sizes[i];
    }
    sm_param_group grp = {.n = NG, .g = g};
    int rc = sm_insert_grad_sumsq(&f->c, &grp, sumsq->t);
    RD(sumsq)[0] = s;
    fx_check(f, "grad_sumsq", rc, (want){"grad_sumsq", 2 * numel, 1 + NG, acc});
}

static void case_clip_decide(fx *f)
{
    for (int finite = 0; finite < 2; finite++) {
        ct *clip = fx_rand(f, "clip", SM_CLIP_LEN);
        ct *loss = fx_tensor(f, "loss", SM_F32, 1, (float[]){finite ? 2.5f : NAN});
        sm_tensor *sumsq[NG];
        double s[NG];
        sm_access acc[2 + NG] = {SM_W(clip->t), SM_R(loss->t)};
        for (int i = 0; i < NG; i++) {
            s[i] = 0.5 + i;
            sumsq[i] = fx_tensor(f, "sumsq", SM_F64, 1, &s[i])->t;
            acc[2 + i] = SM_R(sumsq[i]);
        }
        int rc = sm_insert_clip_decide(&f->c, clip->t, sumsq, NG, loss->t, 1.0f);
        sm_clip_decide(RF(clip), s, NG, 1.0f, RF(loss)[0]);
        fx_check(f, finite ? "clip_decide" : "clip_decide NaN loss", rc,
                 (want){"clip_decide", NG, 2 + NG, acc});
    }
}

/* clip values: the step applied with gradients scaled by 0.7, or skipped */
static ct *fx_clip(fx *f, int apply)
{
    float clip[SM_CLIP_LEN] = {[SM_CLIP_NORM] = 1.4f, [SM_CLIP_SCALE] = 0.7f,
                               [SM_CLIP_APPLY] = (float)apply, [SM_CLIP_LOSS] = 2.0f};
    return fx_tensor(f, "clip", SM_F32, SM_CLIP_LEN, clip);
}

/* n BF16 moments: normal(0, std) values (with a shift s, s + |x|) rounded */
static ct *fx_bf16_moments(fx *f, const char *name, int n, float std, float shift)
{
    uint16_t h[n];
    float x[n];
    tu_fill(&f->rng, x, n, std);
    for (int i = 0; i < n; i++) h[i] = sm_f32_to_bf16(shift ? shift + fabsf(x[i]) : x[i]);
    return fx_tensor(f, name, SM_BF16, n, h);
}

/* The reference step of a group's tensor i, moments F32 or BF16. */
static void adamw_ref(ct *w, ct *g, ct *m, ct *v, int n, const sm_adamw_hp *hp, int bf16)
{
    if (bf16) sm_adamw_bf16(RF(w), m->ref, v->ref, RF(g), n, 0.7f, hp);
    else sm_adamw(RF(w), RF(m), RF(v), RF(g), n, 0.7f, hp);
}

static void case_adamw(fx *f)
{
    enum { N = 2 };
    static const int sizes[N] = {6, 4};
    for (int run = 0; run < 4; run++) {
        int apply = run & 1, bf16 = run >> 1;
        ct *clip = fx_clip(f, apply), *w[N], *g[N], *m[N], *v[N];
        sm_tensor *tw[N], *tg[N], *tm[N], *tv[N];
        float decay[N] = {1, 0};
        sm_access acc[1 + 4 * N] = {SM_R(clip->t)};
        double numel = 0;
        for (int i = 0; i < N; i++) {
            tw[i] = (w[i] = fx_rand(f, "w", sizes[i]))->t;
            tg[i] = (g[i] = fx_rand(f, "g", sizes[i]))->t;
            m[i] = bf16 ? fx_bf16_moments(f, "m", sizes[i], 0.1f, 0)
                        : fx_randn(f, "m", sizes[i], 0.1f, 0);
            v[i] = bf16 ? fx_bf16_moments(f, "v", sizes[i], 0.1f, 0.01f)
                        : fx_randn(f, "v", sizes[i], 0.1f, 0.01f);
            tm[i] = m[i]->t;
            tv[i] = v[i]->t;
            acc[1 + i] = SM_RW(tw[i]);
            acc[1 + N + i] = SM_R(tg[i]);
            acc[1 + 2 * N + i] = SM_RW(tm[i]);
            acc[1 + 3 * N + i] = SM_RW(tv[i]);
            numel += sizes[i];
        }
        sm_param_group grp = {.n = N, .w = tw, .g = tg, .m = tm, .v = tv, .decay = decay};
        sm_adamw_hp hp = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                          .weight_decay = 0.1f, .step = 3};
        int rc = sm_insert_adamw(&f->c, &grp, clip->t, &hp);
        for (int i = 0; apply && i < N; i++) {
            sm_adamw_hp h = hp;
            h.weight_decay *= decay[i];
            adamw_ref(w[i], g[i], m[i], v[i], sizes[i], &h, bf16);
        }
        static const char *const label[4] = {"adamw skipped step", "adamw",
                                             "adamw_bf16 skipped step", "adamw_bf16"};
        fx_check(f, label[run], rc,
                 (want){bf16 ? "adamw_bf16" : "adamw", 12 * numel, 1 + 4 * N, acc});
    }
}

static void case_bias_update(fx *f)
{
    const sm_router_dims *r = &fx_router_dims;
    enum { N = 2 };
    for (int apply = 0; apply < 2; apply++) {
        ct *bias = fx_randn(f, "bias", r->E, 0.1f, 0), *load = fx_rand(f, "load", r->E);
        ct *clip = fx_clip(f, apply);
        sm_tensor *plans[N];
        const int32_t *counts[N];
        /* the load keeps its values on a skipped step: read-write */
        sm_access acc[3 + N] = {SM_RW(bias->t), SM_RW(load->t), SM_R(clip->t)};
        for (int i = 0; i < N; i++) {
            routed rt = fx_route(f, r);
            plans[i] = rt.plan->t;
            counts[i] = sm_plan_count(RI(rt.plan), r->T, r->K, r->E);
            acc[3 + i] = SM_R(plans[i]);
        }
        int rc = sm_insert_bias_update(&f->c, bias->t, load->t, plans, N, r->T, r->K, r->E,
                                       1e-3f, clip->t);
        if (apply) sm_bias_update(RF(bias), RF(load), counts, N, r->E, 1e-3f);
        fx_check(f, apply ? "bias_update" : "bias_update skipped step", rc,
                 (want){"bias_update", (double)N * r->E, 3 + N, acc});
    }
}

const helper_case codelet_cases_optim[] = {
    HELPER_CASE(grad_sumsq), HELPER_CASE(clip_decide), HELPER_CASE(adamw),
    HELPER_CASE(bias_update), {NULL, NULL}};
