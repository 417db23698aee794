/* Optimizer kernels: sum of squares, the clip decision (incl. non-finite loss and norm), AdamW
 * against a double reference over several steps, AdamW with BF16 moments against the float32
 * step rounded, and the auxiliary-loss-free bias update,
 * including that it drives a skewed router toward balanced loads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/dtype.h"
#include "tasks/moe_kernels.h"
#include "tasks/optim_kernels.h"
#include "tests/tap.h"
#include "tests/testutil.h"

static void test_sumsq_clip(tu_rng *rng)
{
    float *x = tu_alloc_randn(rng, 1001, 1);
    double want = 0;
    for (int i = 0; i < 1001; i++) want += (double)x[i] * x[i];
    tap_close(sm_sumsq(x, 1001), want, 1e-9 * want, "sumsq matches a double loop");
    double parts[2] = {9.0, 16.0};
    float clip[SM_CLIP_LEN];
    sm_clip_decide(clip, parts, 2, 1.0f, 2.5f);
    tap_close(clip[SM_CLIP_NORM], 5.0, 1e-6, "global norm is sqrt of the summed squares");
    tap_close(clip[SM_CLIP_SCALE], 0.2, 1e-7, "clip factor max_norm / norm");
    tap_ok(clip[SM_CLIP_APPLY] == 1.0f, "finite step is applied");
    sm_clip_decide(clip, parts, 2, 10.0f, 2.5f);
    tap_ok(clip[SM_CLIP_SCALE] == 1.0f, "no clipping below max_norm");
    sm_clip_decide(clip, parts, 2, 0.0f, 2.5f);
    tap_ok(clip[SM_CLIP_SCALE] == 1.0f, "max_norm 0 turns clipping off");
    parts[1] = NAN;
    sm_clip_decide(clip, parts, 2, 1.0f, 2.5f);
    tap_ok(clip[SM_CLIP_APPLY] == 0.0f, "NaN gradient skips the step");
    parts[1] = 1.0;
    sm_clip_decide(clip, parts, 2, 1.0f, INFINITY);
    tap_ok(clip[SM_CLIP_APPLY] == 0.0f, "infinite loss skips the step");
    free(x);
}

static void test_adamw(tu_rng *rng)
{
    enum { N = 37, STEPS = 4 };
    float *w = tu_alloc_randn(rng, N, 1), *m = tu_alloc_zero(N), *v = tu_alloc_zero(N);
    double rw[N], rm[N] = {0}, rv[N] = {0};
    for (int i = 0; i < N; i++) rw[i] = w[i];
    sm_adamw_hp hp = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                      .weight_decay = 0.1f};
    for (int t = 1; t <= STEPS; t++) {
        float *g = tu_alloc_randn(rng, N, 1);
        float gscale = 0.5f;
        hp.step = t;
        sm_adamw(w, m, v, g, N, gscale, &hp);
        for (int i = 0; i < N; i++) {
            double gi = (double)g[i] * gscale;
            rm[i] = 0.9 * rm[i] + 0.1 * gi;
            rv[i] = 0.95 * rv[i] + 0.05 * gi * gi;
            double mh = rm[i] / (1 - pow(0.9, t)), vh = rv[i] / (1 - pow(0.95, t));
            rw[i] -= 1e-2 * (mh / (sqrt(vh) + 1e-8) + 0.1 * rw[i]);
        }
        free(g);
    }
    double e = 0;
    for (int i = 0; i < N; i++) e = fmax(e, fabs(w[i] - rw[i]));
    tap_ok(e < 1e-6, "AdamW matches a double reference over %d steps (max err %.2g)", STEPS, e);
    free(w);
    free(m);
    free(v);
}

/* BF16 moments over several steps: each step equals the float32 step on the widened moments,
 * its moments rounded to nearest even (bitwise) and its weights bitwise equal; after the steps
 * the weights stay near a float32-moment run's (relative moment error ~2^-9 per step). */
static void test_adamw_bf16(tu_rng *rng)
{
    enum { N = 257, STEPS = 6 };
    float *w = tu_alloc_randn(rng, N, 1), *w32 = malloc(N * sizeof *w32);
    float *wf = malloc(N * sizeof *wf), *mf = malloc(N * sizeof *mf), *vf = malloc(N * sizeof *vf);
    float *m32 = tu_alloc_zero(N), *v32 = tu_alloc_zero(N);
    uint16_t m[N] = {0}, v[N] = {0};
    int moments_same = 1, weights_same = 1;
    memcpy(w32, w, N * sizeof *w);
    sm_adamw_hp hp = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                      .weight_decay = 0.1f};
    for (int t = 1; t <= STEPS; t++) {
        float *g = tu_alloc_randn(rng, N, 1);
        hp.step = t;
        memcpy(wf, w, N * sizeof *w);
        for (int i = 0; i < N; i++) mf[i] = sm_bf16_to_f32(m[i]), vf[i] = sm_bf16_to_f32(v[i]);
        sm_adamw(wf, mf, vf, g, N, 0.5f, &hp);
        sm_adamw_bf16(w, m, v, g, N, 0.5f, &hp);
        sm_adamw(w32, m32, v32, g, N, 0.5f, &hp);
        for (int i = 0; i < N; i++) {
            moments_same &= m[i] == sm_f32_to_bf16(mf[i]) && v[i] == sm_f32_to_bf16(vf[i]);
            weights_same &= memcmp(&w[i], &wf[i], sizeof *w) == 0;
        }
        free(g);
    }
    double e = 0;
    for (int i = 0; i < N; i++) e = fmax(e, fabs(w[i] - w32[i]));
    tap_ok(moments_same, "BF16 moments == the float32 step's moments rounded to BF16 (%d steps)",
           STEPS);
    tap_ok(weights_same, "BF16-moment AdamW's weights == the float32 step's on the same moments");
    /* each step moves a weight by at most ~lr; the rounded moments change it by ~2^-8 of that */
    tap_ok(e < STEPS * 1e-2 * 1e-2, "weights after %d steps near the float32-moment run's "
           "(max diff %.2g)", STEPS, e);
    free(w);
    free(w32);
    free(wf);
    free(mf);
    free(vf);
    free(m32);
    free(v32);
}

static void test_bias_signs(void)
{
    int32_t c0[4] = {10, 2, 4, 0}, c1[4] = {0, 2, 4, 2};
    const int32_t *counts[2] = {c0, c1};
    float bias[4] = {0}, load[4];
    sm_bias_update(bias, load, counts, 2, 4, 0.5f);
    /* loads 10, 4, 8, 2: mean 6 */
    tap_ok(load[0] == 10 && load[1] == 4 && load[2] == 8 && load[3] == 2,
           "loads summed over micro-batches");
    tap_ok(bias[0] == -0.5f && bias[1] == 0.5f && bias[2] == -0.5f && bias[3] == 0.5f,
           "overloaded experts go down by gamma, underloaded up");
    int32_t eq[4] = {3, 3, 3, 3};
    const int32_t *ce[1] = {eq};
    float b2[4] = {0};
    sm_bias_update(b2, load, ce, 1, 4, 0.5f);
    tap_ok(b2[0] == 0 && b2[3] == 0, "balanced loads leave the bias alone");
}

static double max_over_mean(const float *load, int E)
{
    double mx = 0, sum = 0;
    for (int e = 0; e < E; e++) {
        mx = fmax(mx, load[e]);
        sum += load[e];
    }
    return mx / (sum / E);
}

/* A router whose gate favours two experts for every token: repeated bias updates (gamma 1e-2)
 * must spread the load. */
static void test_bias_balances(tu_rng *rng)
{
    sm_router_dims r = {.T = 256, .d = 8, .E = 16, .K = 2, .G = 4, .Gk = 2, .route_scale = 1,
                        .norm_topk = 1};
    float *u = tu_alloc_randn(rng, (size_t)r.T * r.d, 1), *Wg = tu_alloc_randn(rng, r.E * r.d, 0.1f);
    for (int j = 0; j < r.d; j++) Wg[0 * r.d + j] += 0.5f, Wg[5 * r.d + j] += 0.5f;
    for (int t = 0; t < r.T; t++)
        for (int j = 0; j < r.d; j++) u[t * r.d + j] = fabsf(u[t * r.d + j]);
    int32_t *plan = calloc(sm_moe_plan_len(r.T, r.K, r.E), sizeof *plan);
    float *w = calloc((size_t)r.T * r.K, sizeof *w), *s = calloc((size_t)r.T * r.E, sizeof *s);
    float bias[16] = {0}, load[16];
    double first = 0, last = 0;
    for (int it = 0; it < 300; it++) {
        sm_router_fwd(plan, w, s, u, Wg, bias, &r);
        const int32_t *counts[1] = {sm_plan_count(plan, r.T, r.K, r.E)};
        sm_bias_update(bias, load, counts, 1, r.E, 1e-2f);
        if (it == 0) first = max_over_mean(load, r.E);
        last = max_over_mean(load, r.E);
    }
    tap_ok(first > 3 && last < 0.5 * first,
           "bias update moves a skewed router toward balance (max/mean load %.2f -> %.2f)", first,
           last);
    free(u);
    free(Wg);
    free(plan);
    free(w);
    free(s);
}

int main(void)
{
    tu_rng rng;
    tu_seed(&rng, 11);
    test_sumsq_clip(&rng);
    test_adamw(&rng);
    test_adamw_bf16(&rng);
    test_bias_signs();
    test_bias_balances(&rng);
    return tap_done();
}
