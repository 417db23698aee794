/* Tests of tasks/dense_kernels.c. For every kernel: agreement with a plain double-precision
 * reference loop (including the accumulate paths), central finite differences of the scalar
 * loss sum(y * R) against every input and weight gradient, and bitwise determinism of two
 * identical runs. Cross-entropy is also checked on a hand-computable case. Sizes are small and
 * odd so that a swapped dimension or leading stride shows up. */
#include "tasks/dense_kernels.h"
#include "tests/tap.h"
#include "tests/testutil.h"

#include <stdlib.h>
#include <string.h>

/* Finite differences: the kernels run in float32, so the loss carries rounding noise of about
 * 1e-7 * sum|y R|; a step of 1e-2 keeps that noise (divided by 2h) near 1e-5 relative, while
 * the O(h^2) truncation error of these smooth ops stays near 1e-4. A 1e-2 relative tolerance
 * leaves a wide margin yet catches any wrong term (errors of order 1). */
#define FD_H 1e-2
#define FD_TOL 1e-2
#define FD_FLOOR 1e-3

static tu_rng rng;

/* Every buffer of a test is tracked here and released by free_all() at its end. */
static void *tracked[96];
static int ntracked;

static float *track(float *p)
{
    if (!p || ntracked == (int)(sizeof tracked / sizeof *tracked)) abort();
    return tracked[ntracked++] = p;
}

static float *randn(size_t n, float std) { return track(tu_alloc_randn(&rng, n, std)); }
static float *zeros(size_t n) { return track(tu_alloc_zero(n)); }

static float *dup(const float *x, size_t n)
{
    float *p = track(malloc(n * sizeof *p));
    memcpy(p, x, n * sizeof *p);
    return p;
}

static void free_all(void)
{
    while (ntracked) free(tracked[--ntracked]);
}

/* sum_i a_i b_i in double: the scalar loss sum(y * R). */
static double dotd(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* got vs the reference, error measured relative to max(1, max|want|). */
static void check_ref(const char *name, const float *got, const float *want, size_t n, double tol)
{
    double scale = tu_max_abs(want, n);
    double err = tu_max_abs_diff(got, want, n) / (scale > 1 ? scale : 1);
    tap_ok(err <= tol, "%s matches double reference (err %.2e <= %.0e)", name, err, tol);
}

static void check_same(const char *name, const float *a, const float *b, size_t n)
{
    tap_ok(memcmp(a, b, n * sizeof *a) == 0, "%s is bitwise deterministic", name);
}

static void check_fd(const char *name, float *x, const float *grad, size_t n, tu_loss_fn loss,
                     void *ctx)
{
    double err = tu_fd_check(x, grad, n, n, FD_H, FD_FLOOR, loss, ctx);
    tap_ok(err <= FD_TOL, "%s vs finite differences (rel err %.2e <= %.0e)", name, err, FD_TOL);
}

/* C[m, j] (= | +=) sum_k A[m, k] B[k, j] in double, A and B addressed through (row, column)
 * strides so that one loop serves every transpose. */
static void ref_gemm(float *C, const float *A, int ars, int acs, const float *B, int brs, int bcs,
                     int M, int N, int K, int accumulate)
{
    for (int m = 0; m < M; m++)
        for (int j = 0; j < N; j++) {
            double s = accumulate ? C[(size_t)m * N + j] : 0;
            for (int k = 0; k < K; k++)
                s += (double)A[(size_t)m * ars + (size_t)k * acs] *
                     B[(size_t)k * brs + (size_t)j * bcs];
            C[(size_t)m * N + j] = (float)s;
        }
}

/* ------------------------------------------------------------------------------------------ */
/* Embedding */

typedef struct {
    const int32_t *ids;
    const float *E, *R;
    float *x;
    int T, d;
} emb_ctx;

static double emb_loss(void *p)
{
    emb_ctx *c = p;
    sm_embedding_fwd(c->x, c->ids, c->E, c->T, c->d);
    return dotd(c->x, c->R, (size_t)c->T * c->d);
}

static void test_embedding(void)
{
    enum { V = 11, d = 7, T = 13 };
    int32_t ids[T];
    for (int t = 0; t < T; t++) ids[t] = (t * 5 + 3) % V; /* T > V: ids repeat */
    float *E = randn(V * d, 1), *R = randn(T * d, 1), *dE0 = randn(V * d, 1);
    float *x = zeros(T * d), *x2 = zeros(T * d), *want = zeros(T * d);

    sm_embedding_fwd(x, ids, E, T, d);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < d; i++) want[t * d + i] = E[ids[t] * d + i];
    check_ref("embedding fwd (exact)", x, want, T * d, 0);
    sm_embedding_fwd(x2, ids, E, T, d);
    check_same("embedding fwd", x, x2, T * d);

    float *dE = dup(dE0, V * d), *dE2 = dup(dE0, V * d), *dEw = dup(dE0, V * d);
    sm_embedding_bwd(dE, ids, R, T, d);
    for (int v = 0; v < V; v++)
        for (int i = 0; i < d; i++) {
            double s = dE0[v * d + i];
            for (int t = 0; t < T; t++)
                if (ids[t] == v) s += R[t * d + i];
            dEw[v * d + i] = (float)s;
        }
    check_ref("embedding bwd dE += (tol 1e-6)", dE, dEw, V * d, 1e-6);
    sm_embedding_bwd(dE2, ids, R, T, d);
    check_same("embedding bwd", dE, dE2, V * d);

    float *gE = zeros(V * d);
    sm_embedding_bwd(gE, ids, R, T, d);
    emb_ctx c = {ids, E, R, x, T, d};
    check_fd("embedding dE", E, gE, V * d, emb_loss, &c);
    free_all();
}

/* ------------------------------------------------------------------------------------------ */
/* RMSNorm */

static void ref_rmsnorm_fwd(float *y, float *rstd, const float *x, int ldx, const float *g, int T,
                            int n, double eps)
{
    for (int t = 0; t < T; t++) {
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)x[t * ldx + i] * x[t * ldx + i];
        double r = 1 / sqrt(ss / n + eps);
        for (int i = 0; i < n; i++) y[t * n + i] = (float)(g[i] * x[t * ldx + i] * r);
        rstd[t] = (float)r;
    }
}

/* Through the full Jacobian: dy_i/dx_j = g_i (delta_ij r - x_i x_j r^3 / n). */
static void ref_rmsnorm_bwd(float *dx, int lddx, float *dg, const float *dy, const float *x,
                            int ldx, const float *g, int T, int n, double eps, int accumulate)
{
    for (int t = 0; t < T; t++) {
        const float *xt = x + t * ldx, *dyt = dy + t * n;
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)xt[i] * xt[i];
        double r = 1 / sqrt(ss / n + eps);
        for (int j = 0; j < n; j++) {
            double s = accumulate ? dx[t * lddx + j] : 0;
            for (int i = 0; i < n; i++)
                s += dyt[i] * g[i] * ((i == j) * r - (double)xt[i] * xt[j] * r * r * r / n);
            dx[t * lddx + j] = (float)s;
        }
        for (int i = 0; i < n; i++) dg[i] = (float)(dg[i] + (double)dyt[i] * xt[i] * r);
    }
}

typedef struct {
    const float *x, *g, *R;
    float *y, *rstd;
    int ldx, T, n;
} rms_ctx;

static double rms_loss(void *p)
{
    rms_ctx *c = p;
    sm_rmsnorm_fwd(c->y, c->rstd, c->x, c->ldx, c->g, c->T, c->n, 1e-6f);
    return dotd(c->y, c->R, (size_t)c->T * c->n);
}

static void test_rmsnorm(void)
{
    enum { T = 37, n = 19, ldx = 23, lddx = 29 };
    const float eps = 1e-6f;
    float *x = randn(T * ldx, 1.5f), *g = randn(n, 1), *dy = randn(T * n, 1);
    float *y = zeros(T * n), *rstd = zeros(T), *y2 = zeros(T * n), *rstd2 = zeros(T);
    float *yw = zeros(T * n), *rstdw = zeros(T);

    sm_rmsnorm_fwd(y, rstd, x, ldx, g, T, n, eps);
    ref_rmsnorm_fwd(yw, rstdw, x, ldx, g, T, n, eps);
    check_ref("rmsnorm fwd y, strided ldx (tol 1e-6)", y, yw, T * n, 1e-6);
    check_ref("rmsnorm fwd rstd (tol 1e-6)", rstd, rstdw, T, 1e-6);
    sm_rmsnorm_fwd(y2, rstd2, x, ldx, g, T, n, eps);
    check_same("rmsnorm fwd y", y, y2, T * n);
    check_same("rmsnorm fwd rstd", rstd, rstd2, T);

    /* dx starts as garbage: acc=0 must overwrite its rows, acc=1 add to them; the padding
     * columns of the lddx stride must stay untouched either way (the reference keeps them). */
    float *dx0 = randn(T * lddx, 1), *dg0 = randn(n, 1);
    for (int acc = 0; acc <= 1; acc++) {
        float *dx = dup(dx0, T * lddx), *dg = dup(dg0, n);
        float *dxw = dup(dx0, T * lddx), *dgw = dup(dg0, n);
        float *dx2 = dup(dx0, T * lddx), *dg2 = dup(dg0, n);
        sm_rmsnorm_bwd(dx, lddx, dg, dy, x, ldx, g, rstd, T, n, acc);
        ref_rmsnorm_bwd(dxw, lddx, dgw, dy, x, ldx, g, T, n, eps, acc);
        sm_rmsnorm_bwd(dx2, lddx, dg2, dy, x, ldx, g, rstd, T, n, acc);
        tap_diag("rmsnorm bwd accumulate=%d", acc);
        check_ref(acc ? "rmsnorm bwd dx += , strided lddx (tol 1e-5)"
                      : "rmsnorm bwd dx = , strided lddx (tol 1e-5)", dx, dxw, T * lddx, 1e-5);
        check_ref("rmsnorm bwd dg += (tol 1e-5)", dg, dgw, n, 1e-5);
        check_same("rmsnorm bwd dx", dx, dx2, T * lddx);
        check_same("rmsnorm bwd dg", dg, dg2, n);
    }

    /* Finite differences with dx on the same stride as x: its padding must get gradient 0. */
    float *R = randn(T * n, 1), *gx = zeros(T * ldx), *gg = zeros(n);
    sm_rmsnorm_fwd(y, rstd, x, ldx, g, T, n, eps);
    sm_rmsnorm_bwd(gx, ldx, gg, R, x, ldx, g, rstd, T, n, 0);
    rms_ctx c = {x, g, R, y2, rstd2, ldx, T, n};
    check_fd("rmsnorm dx", x, gx, T * ldx, rms_loss, &c);
    check_fd("rmsnorm dg", g, gg, n, rms_loss, &c);
    free_all();
}

/* ------------------------------------------------------------------------------------------ */
/* Linear */

typedef struct {
    const float *x, *W, *R;
    float *y;
    int T, in, out;
} lin_ctx;

static double lin_loss(void *p)
{
    lin_ctx *c = p;
    sm_linear_fwd(c->y, c->x, c->W, c->T, c->in, c->out);
    return dotd(c->y, c->R, (size_t)c->T * c->out);
}

static void test_linear(void)
{
    enum { T = 37, in = 13, out = 11 };
    float *x = randn(T * in, 1), *W = randn(out * in, 0.5f), *dy = randn(T * out, 1);
    float *y = zeros(T * out), *y2 = zeros(T * out), *yw = zeros(T * out);

    sm_linear_fwd(y, x, W, T, in, out);
    ref_gemm(yw, x, in, 1, W, 1, in, T, out, in, 0);
    check_ref("linear fwd (tol 1e-6)", y, yw, T * out, 1e-6);
    sm_linear_fwd(y2, x, W, T, in, out);
    check_same("linear fwd", y, y2, T * out);

    float *dx0 = randn(T * in, 1);
    for (int acc = 0; acc <= 1; acc++) {
        float *dx = dup(dx0, T * in), *dxw = dup(dx0, T * in), *dx2 = dup(dx0, T * in);
        sm_linear_bwd_input(dx, dy, W, T, in, out, acc);
        ref_gemm(dxw, dy, out, 1, W, in, 1, T, in, out, acc);
        sm_linear_bwd_input(dx2, dy, W, T, in, out, acc);
        check_ref(acc ? "linear bwd_input dx += (tol 1e-6)" : "linear bwd_input dx = (tol 1e-6)",
                  dx, dxw, T * in, 1e-6);
        check_same(acc ? "linear bwd_input dx +=" : "linear bwd_input dx =", dx, dx2, T * in);
    }

    float *dW0 = randn(out * in, 1);
    float *dW = dup(dW0, out * in), *dWw = dup(dW0, out * in), *dW2 = dup(dW0, out * in);
    sm_linear_bwd_weight(dW, dy, x, T, in, out);
    ref_gemm(dWw, dy, 1, out, x, in, 1, out, in, T, 1);
    sm_linear_bwd_weight(dW2, dy, x, T, in, out);
    check_ref("linear bwd_weight dW += (tol 1e-6)", dW, dWw, out * in, 1e-6);
    check_same("linear bwd_weight", dW, dW2, out * in);

    float *gx = zeros(T * in), *gW = zeros(out * in);
    sm_linear_bwd_input(gx, dy, W, T, in, out, 0);
    sm_linear_bwd_weight(gW, dy, x, T, in, out);
    lin_ctx c = {x, W, dy, y2, T, in, out};
    check_fd("linear dx", x, gx, T * in, lin_loss, &c);
    check_fd("linear dW", W, gW, out * in, lin_loss, &c);
    free_all();
}

/* ------------------------------------------------------------------------------------------ */
/* SwiGLU FFN */

static double ref_sigmoid(double z) { return 1 / (1 + exp(-z)); }

static void ref_swiglu_fwd(float *y, float *h1, float *h3, const float *x, const float *W1,
                           const float *W3, const float *W2, int n, int d, int I)
{
    float *act = malloc((size_t)n * I * sizeof *act);
    ref_gemm(h1, x, d, 1, W1, 1, d, n, I, d, 0);
    ref_gemm(h3, x, d, 1, W3, 1, d, n, I, d, 0);
    for (int i = 0; i < n * I; i++) act[i] = (float)(h1[i] * ref_sigmoid(h1[i]) * h3[i]);
    ref_gemm(y, act, I, 1, W2, 1, I, n, d, I, 0);
    free(act);
}

/* silu'(z) = s + z s (1 - s). */
static void ref_swiglu_bwd_input(float *dx, float *dh1, float *dh3, const float *dy,
                                 const float *h1, const float *h3, const float *W1,
                                 const float *W3, const float *W2, int n, int d, int I,
                                 int accumulate)
{
    float *dact = malloc((size_t)n * I * sizeof *dact);
    ref_gemm(dact, dy, d, 1, W2, I, 1, n, I, d, 0);
    for (int i = 0; i < n * I; i++) {
        double s = ref_sigmoid(h1[i]);
        dh3[i] = (float)(dact[i] * h1[i] * s);
        dh1[i] = (float)(dact[i] * h3[i] * (s + h1[i] * s * (1 - s)));
    }
    ref_gemm(dx, dh1, I, 1, W1, d, 1, n, d, I, accumulate);
    ref_gemm(dx, dh3, I, 1, W3, d, 1, n, d, I, 1);
    free(dact);
}

static void ref_swiglu_bwd_weight(float *dW1, float *dW3, float *dW2, const float *dy,
                                  const float *x, const float *h1, const float *h3,
                                  const float *dh1, const float *dh3, int n, int d, int I)
{
    float *act = malloc((size_t)n * I * sizeof *act);
    for (int i = 0; i < n * I; i++) act[i] = (float)(h1[i] * ref_sigmoid(h1[i]) * h3[i]);
    ref_gemm(dW1, dh1, 1, I, x, d, 1, I, d, n, 1);
    ref_gemm(dW3, dh3, 1, I, x, d, 1, I, d, n, 1);
    ref_gemm(dW2, dy, 1, d, act, I, 1, d, I, n, 1);
    free(act);
}

typedef struct {
    const float *x, *W1, *W3, *W2, *R;
    float *y, *h1, *h3;
    int n, d, I;
} swi_ctx;

static double swi_loss(void *p)
{
    swi_ctx *c = p;
    sm_swiglu_fwd(c->y, c->h1, c->h3, c->x, c->W1, c->W3, c->W2, c->n, c->d, c->I);
    return dotd(c->y, c->R, (size_t)c->n * c->d);
}

static void test_swiglu(void)
{
    enum { n = 37, d = 13, I = 17, nd = n * d, nI = n * I, Id = I * d };
    float *x = randn(nd, 1), *dy = randn(nd, 1);
    float *W1 = randn(Id, 0.5f), *W3 = randn(Id, 0.5f), *W2 = randn(Id, 0.5f);
    float *y = zeros(nd), *h1 = zeros(nI), *h3 = zeros(nI);
    float *yw = zeros(nd), *h1w = zeros(nI), *h3w = zeros(nI);
    float *y2 = zeros(nd), *h12 = zeros(nI), *h32 = zeros(nI);

    sm_swiglu_fwd(y, h1, h3, x, W1, W3, W2, n, d, I);
    ref_swiglu_fwd(yw, h1w, h3w, x, W1, W3, W2, n, d, I);
    sm_swiglu_fwd(y2, h12, h32, x, W1, W3, W2, n, d, I);
    check_ref("swiglu fwd y (tol 1e-5)", y, yw, nd, 1e-5);
    check_ref("swiglu fwd h1 (tol 1e-6)", h1, h1w, nI, 1e-6);
    check_ref("swiglu fwd h3 (tol 1e-6)", h3, h3w, nI, 1e-6);
    check_same("swiglu fwd y", y, y2, nd);
    check_same("swiglu fwd h1", h1, h12, nI);
    check_same("swiglu fwd h3", h3, h32, nI);

    float *dx0 = randn(nd, 1), *dh1 = zeros(nI), *dh3 = zeros(nI);
    for (int acc = 0; acc <= 1; acc++) {
        float *dx = dup(dx0, nd), *dxw = dup(dx0, nd), *dx2 = dup(dx0, nd);
        float *dh1w = zeros(nI), *dh3w = zeros(nI), *dh12 = zeros(nI), *dh32 = zeros(nI);
        sm_swiglu_bwd_input(dx, dh1, dh3, dy, h1, h3, W1, W3, W2, n, d, I, acc);
        ref_swiglu_bwd_input(dxw, dh1w, dh3w, dy, h1, h3, W1, W3, W2, n, d, I, acc);
        sm_swiglu_bwd_input(dx2, dh12, dh32, dy, h1, h3, W1, W3, W2, n, d, I, acc);
        tap_diag("swiglu bwd_input accumulate=%d", acc);
        check_ref(acc ? "swiglu bwd_input dx += (tol 1e-5)" : "swiglu bwd_input dx = (tol 1e-5)",
                  dx, dxw, nd, 1e-5);
        check_ref("swiglu bwd_input dh1 (tol 1e-5)", dh1, dh1w, nI, 1e-5);
        check_ref("swiglu bwd_input dh3 (tol 1e-5)", dh3, dh3w, nI, 1e-5);
        check_same("swiglu bwd_input dx", dx, dx2, nd);
        check_same("swiglu bwd_input dh1", dh1, dh12, nI);
        check_same("swiglu bwd_input dh3", dh3, dh32, nI);
    }

    float *dW10 = randn(Id, 1), *dW30 = randn(Id, 1), *dW20 = randn(Id, 1);
    float *dW1 = dup(dW10, Id), *dW3 = dup(dW30, Id), *dW2 = dup(dW20, Id);
    float *dW1w = dup(dW10, Id), *dW3w = dup(dW30, Id), *dW2w = dup(dW20, Id);
    float *dW12 = dup(dW10, Id), *dW32 = dup(dW30, Id), *dW22 = dup(dW20, Id);
    sm_swiglu_bwd_weight(dW1, dW3, dW2, dy, x, h1, h3, dh1, dh3, n, d, I);
    ref_swiglu_bwd_weight(dW1w, dW3w, dW2w, dy, x, h1, h3, dh1, dh3, n, d, I);
    sm_swiglu_bwd_weight(dW12, dW32, dW22, dy, x, h1, h3, dh1, dh3, n, d, I);
    check_ref("swiglu bwd_weight dW1 += (tol 1e-6)", dW1, dW1w, Id, 1e-6);
    check_ref("swiglu bwd_weight dW3 += (tol 1e-6)", dW3, dW3w, Id, 1e-6);
    check_ref("swiglu bwd_weight dW2 += (tol 1e-6)", dW2, dW2w, Id, 1e-6);
    check_same("swiglu bwd_weight dW1", dW1, dW12, Id);
    check_same("swiglu bwd_weight dW3", dW3, dW32, Id);
    check_same("swiglu bwd_weight dW2", dW2, dW22, Id);

    float *gx = zeros(nd), *gW1 = zeros(Id), *gW3 = zeros(Id), *gW2 = zeros(Id);
    sm_swiglu_bwd_input(gx, dh1, dh3, dy, h1, h3, W1, W3, W2, n, d, I, 0);
    sm_swiglu_bwd_weight(gW1, gW3, gW2, dy, x, h1, h3, dh1, dh3, n, d, I);
    swi_ctx c = {x, W1, W3, W2, dy, y2, h12, h32, n, d, I};
    check_fd("swiglu dx", x, gx, nd, swi_loss, &c);
    check_fd("swiglu dW1", W1, gW1, Id, swi_loss, &c);
    check_fd("swiglu dW3", W3, gW3, Id, swi_loss, &c);
    check_fd("swiglu dW2", W2, gW2, Id, swi_loss, &c);
    free_all();
}

/* |h1| in the hundreds saturates the sigmoid (expf overflows): everything must stay finite. An
 * expert that receives no token (n = 0) must leave the accumulated weight gradients alone. */
static void test_swiglu_edges(void)
{
    enum { n = 5, d = 13, I = 17, nd = n * d, nI = n * I, Id = I * d };
    float *x = randn(nd, 300), *dy = randn(nd, 1);
    float *W1 = randn(Id, 0.5f), *W3 = randn(Id, 0.5f), *W2 = randn(Id, 0.5f);
    float *y = zeros(nd), *h1 = zeros(nI), *h3 = zeros(nI), *dx = zeros(nd);
    float *dh1 = zeros(nI), *dh3 = zeros(nI);
    sm_swiglu_fwd(y, h1, h3, x, W1, W3, W2, n, d, I);
    sm_swiglu_bwd_input(dx, dh1, dh3, dy, h1, h3, W1, W3, W2, n, d, I, 0);
    tap_ok(tu_max_abs(h1, nI) > 100 && isfinite(tu_max_abs(y, nd)) &&
               isfinite(tu_max_abs(dx, nd)) && isfinite(tu_max_abs(dh1, nI)),
           "swiglu stays finite with |h1| up to %.0f", tu_max_abs(h1, nI));

    float *dW1 = dup(W1, Id), *dW3 = dup(W3, Id), *dW2 = dup(W2, Id);
    sm_swiglu_fwd(y, h1, h3, x, W1, W3, W2, 0, d, I);
    sm_swiglu_bwd_input(dx, dh1, dh3, dy, h1, h3, W1, W3, W2, 0, d, I, 1);
    sm_swiglu_bwd_weight(dW1, dW3, dW2, dy, x, h1, h3, dh1, dh3, 0, d, I);
    tap_ok(!memcmp(dW1, W1, Id * sizeof *W1) && !memcmp(dW3, W3, Id * sizeof *W3) &&
               !memcmp(dW2, W2, Id * sizeof *W2),
           "swiglu with n = 0 leaves dW1, dW3, dW2 unchanged");
    free_all();
}

/* ------------------------------------------------------------------------------------------ */
/* Cross-entropy */

static double ref_cross_entropy(float *dlogits, const float *logits, const int32_t *targets,
                                int T, int V, double scale)
{
    double loss = 0;
    for (int t = 0; t < T; t++) {
        const float *l = logits + t * V;
        double m = l[0], s = 0;
        for (int i = 1; i < V; i++) m = l[i] > m ? l[i] : m;
        for (int i = 0; i < V; i++) s += exp(l[i] - m);
        loss += m + log(s) - l[targets[t]];
        for (int i = 0; i < V; i++)
            dlogits[t * V + i] = (float)(scale * (exp(l[i] - m) / s - (i == targets[t])));
    }
    return loss;
}

typedef struct {
    const float *logits;
    const int32_t *targets;
    int T, V;
    float scale;
} ce_ctx;

static double ce_loss(void *p)
{
    ce_ctx *c = p;
    return c->scale * sm_cross_entropy(NULL, c->logits, c->targets, c->T, c->V, c->scale);
}

static double max_row_sum(const float *a, int T, int V)
{
    double worst = 0;
    for (int t = 0; t < T; t++) {
        double s = 0;
        for (int i = 0; i < V; i++) s += a[t * V + i];
        worst = fabs(s) > worst ? fabs(s) : worst;
    }
    return worst;
}

static void test_cross_entropy(void)
{
    enum { T = 37, V = 23 };
    const float scale = 0.37f;
    int32_t targets[T];
    for (int t = 0; t < T; t++) targets[t] = (int32_t)(tu_uniform(&rng) * V);

    /* Uniform logits: every row costs log V and its gradient is scale (1/V - onehot). */
    float *flat = zeros(T * V), *dflat = zeros(T * V), *dflatw = zeros(T * V);
    for (int i = 0; i < T * V; i++) flat[i] = 0.7f;
    double loss = sm_cross_entropy(dflat, flat, targets, T, V, scale);
    tap_close(loss, T * log(V), 1e-9, "cross-entropy of uniform logits is T log V");
    for (int t = 0; t < T; t++)
        for (int i = 0; i < V; i++)
            dflatw[t * V + i] = (float)(scale * (1.0 / V - (i == targets[t])));
    check_ref("cross-entropy uniform dlogits = scale (1/V - onehot) (tol 1e-7)", dflat, dflatw,
              T * V, 1e-7);

    /* Random logits with row offsets up to 30 (T - 1): exp overflows unless max-subtracted. */
    float *logits = randn(T * V, 3), *dl = zeros(T * V), *dlw = zeros(T * V), *dl2 = zeros(T * V);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < V; i++) logits[t * V + i] += 30.0f * t;
    loss = sm_cross_entropy(dl, logits, targets, T, V, scale);
    double want = ref_cross_entropy(dlw, logits, targets, T, V, scale);
    tap_close(loss, want, 1e-9 * want, "cross-entropy loss matches double reference (rel 1e-9)");
    check_ref("cross-entropy dlogits (tol 1e-7)", dl, dlw, T * V, 1e-7);
    tap_close(max_row_sum(dl, T, V), 0, 1e-6, "cross-entropy dlogits rows sum to 0");
    double again = sm_cross_entropy(dl2, logits, targets, T, V, scale);
    tap_ok(again == loss, "cross-entropy loss is bitwise deterministic");
    check_same("cross-entropy dlogits", dl, dl2, T * V);
    tap_ok(sm_cross_entropy(NULL, logits, targets, T, V, scale) == loss,
           "cross-entropy without dlogits returns the same loss");

    /* A power-of-two scale multiplies every float result exactly. */
    float *d1 = zeros(T * V), *dq = zeros(T * V);
    sm_cross_entropy(d1, logits, targets, T, V, 1.0f);
    sm_cross_entropy(dq, logits, targets, T, V, 0.25f);
    for (int i = 0; i < T * V; i++) d1[i] *= 0.25f;
    tap_ok(memcmp(dq, d1, T * V * sizeof *d1) == 0,
           "cross-entropy dlogits with scale 0.25 are exactly 0.25 x those with scale 1");

    /* Finite differences of scale * loss on unshifted logits (a large offset would make the
     * float step h inexact). */
    float *lg = randn(T * V, 3), *glg = zeros(T * V);
    sm_cross_entropy(glg, lg, targets, T, V, scale);
    ce_ctx c = {lg, targets, T, V, scale};
    check_fd("cross-entropy dlogits", lg, glg, T * V, ce_loss, &c);

    /* Rows without a target (-1, the last positions of a Multi-Token Prediction depth) add no
     * loss and get a zero gradient; the others are as if those rows were absent. */
    int32_t some[T];
    int kept = 0;
    float *dsome = zeros(T * V), *dkept = zeros(T * V), *lkept = zeros(T * V);
    int32_t tkept[T];
    for (int t = 0; t < T; t++) {
        some[t] = t % 3 == 1 ? -1 : targets[t];
        if (some[t] < 0) continue;
        memcpy(lkept + kept * V, logits + t * V, V * sizeof *logits);
        tkept[kept++] = targets[t];
    }
    double part = sm_cross_entropy(dsome, logits, some, T, V, scale);
    tap_ok(part == sm_cross_entropy(dkept, lkept, tkept, kept, V, scale),
           "cross-entropy without the rows of target -1: the loss of the others alone");
    int zero = 1, same = 1;
    for (int t = 0, k = 0; t < T; t++) {
        for (int i = 0; i < V; i++)
            if (some[t] < 0) zero &= dsome[t * V + i] == 0.0f;
            else same &= dsome[t * V + i] == dkept[k * V + i];
        k += some[t] >= 0;
    }
    tap_ok(zero && same, "cross-entropy rows of target -1 have a zero gradient, the others the "
                         "same as alone");
    free_all();
}

int main(void)
{
    tu_seed(&rng, 20240611);
    test_embedding();
    test_rmsnorm();
    test_linear();
    test_swiglu();
    test_swiglu_edges();
    test_cross_entropy();
    return tap_done();
}
