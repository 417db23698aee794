/* Pure float32 kernels of the dense op families (see dense_kernels.h): embedding, RMSNorm,
 * linear, SwiGLU FFN and cross-entropy. Every matrix product goes through sm_gemm
 * (kernel_util.c); the other loops run over rows then columns in a fixed order, with row statistics
 * (RMS, log-sum-exp) accumulated in double, so results are bitwise reproducible for a given
 * BLAS thread count. */
#include "tasks/dense_kernels.h"
#include "tasks/kernel_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/clock.h"

/* ------------------------------------------------------------------------------------------ */
/* Embedding */

void sm_embedding_fwd(float *x, const int32_t *ids, const float *E, int T, int d)
{
    for (int t = 0; t < T; t++)
        memcpy(x + (size_t)t * d, E + (size_t)ids[t] * d, (size_t)d * sizeof *x);
}

SM_SIMD_KERNEL
void sm_embedding_bwd(float *dE, const int32_t *ids, const float *dx, int T, int d)
{
    for (int t = 0; t < T; t++) {
        float *row = dE + (size_t)ids[t] * d;
        const float *g = dx + (size_t)t * d;
        for (int i = 0; i < d; i++) row[i] += g[i];
    }
}

/* ------------------------------------------------------------------------------------------ */
/* RMSNorm */

SM_SIMD_KERNEL
void sm_rmsnorm_fwd(float *y, float *rstd, const float *x, int ldx, const float *g, int T, int n,
                    float eps)
{
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * ldx;
        float *yt = y + (size_t)t * n;
        double ss = sm_dotd(xt, xt, NULL, n);
        float r = (float)(1.0 / sqrt(ss / n + (double)eps));
        for (int i = 0; i < n; i++) yt[i] = g[i] * (xt[i] * r);
        rstd[t] = r;
    }
}

/* With y_i = g_i x_i r and r = (mean(x^2) + eps)^(-1/2):
 * dx_j = r g_j dy_j - x_j r^3 / n * sum_i dy_i g_i x_i,  dg_i += dy_i x_i r. */
SM_SIMD_KERNEL
void sm_rmsnorm_bwd(float *dx, int lddx, float *dg, const float *dy, const float *x, int ldx,
                    const float *g, const float *rstd, int T, int n, int accumulate)
{
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * ldx, *dyt = dy + (size_t)t * n;
        float *dxt = dx + (size_t)t * lddx;
        double r = rstd[t], dot = sm_dotd(dyt, g, xt, n);
        float a = (float)r, b = (float)(dot * r * r * r / n);
        for (int i = 0; i < n; i++) {
            float v = a * g[i] * dyt[i] - b * xt[i];
            dxt[i] = accumulate ? dxt[i] + v : v;
        }
        for (int i = 0; i < n; i++) dg[i] += dyt[i] * xt[i] * a;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Linear */

void sm_linear_fwd(float *y, const float *x, const float *W, int T, int in, int out)
{
    sm_gemm(0, 1, T, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
}

void sm_linear_bwd_input(float *dx, const float *dy, const float *W, int T, int in, int out,
                         int accumulate)
{
    sm_gemm(0, 0, T, in, out, 1.0f, dy, out, W, in, accumulate ? 1.0f : 0.0f, dx, in);
}

void sm_linear_bwd_weight(float *dW, const float *dy, const float *x, int T, int in, int out)
{
    sm_gemm(1, 0, out, in, T, 1.0f, dy, out, x, in, 1.0f, dW, in);
}

/* ------------------------------------------------------------------------------------------ */
/* SwiGLU FFN */

/* 1 / (1 + e^-z): saturates cleanly to 0 and 1 thanks to the clamp in sm_fast_expf. */
static inline float sigmoid(float z) { return 1.0f / (1.0f + sm_fast_expf(-z)); }

SM_SIMD_KERNEL
void sm_swiglu_act(float *restrict act, const float *restrict h1, const float *restrict h3,
                   size_t count)
{
    for (size_t i = 0; i < count; i++) act[i] = h1[i] * sigmoid(h1[i]) * h3[i];
}

void sm_swiglu_fwd(float *y, float *h1, float *h3, const float *x, const float *W1,
                   const float *W3, const float *W2, int n, int d, int I)
{
    size_t count = (size_t)n * I;
    float *act = sm_kfloats(count, "swiglu activation");
    sm_linear_fwd(h1, x, W1, n, d, I);
    sm_linear_fwd(h3, x, W3, n, d, I);
    sm_swiglu_act(act, h1, h3, count);
    sm_linear_fwd(y, act, W2, n, I, d);
    free(act);
}

SM_SIMD_KERNEL
void sm_swiglu_grad(float *restrict dh1, float *restrict dh3, const float *restrict h1,
                    const float *restrict h3, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        float s = sigmoid(h1[i]), dact = dh1[i];
        dh3[i] = dact * h1[i] * s;
        dh1[i] = dact * h3[i] * s * (1.0f + h1[i] * (1.0f - s));
    }
}

/* dact = dy W2 is computed into dh1, then split by sm_swiglu_grad. */
void sm_swiglu_bwd_input(float *dx, float *dh1, float *dh3, const float *dy, const float *h1,
                         const float *h3, const float *W1, const float *W3, const float *W2,
                         int n, int d, int I, int accumulate)
{
    size_t count = (size_t)n * I;
    sm_linear_bwd_input(dh1, dy, W2, n, I, d, 0);
    sm_swiglu_grad(dh1, dh3, h1, h3, count);
    sm_linear_bwd_input(dx, dh1, W1, n, d, I, accumulate);
    sm_linear_bwd_input(dx, dh3, W3, n, d, I, 1);
}

void sm_swiglu_bwd_weight(float *dW1, float *dW3, float *dW2, const float *dy, const float *x,
                          const float *h1, const float *h3, const float *dh1, const float *dh3,
                          int n, int d, int I)
{
    size_t count = (size_t)n * I;
    float *act = sm_kfloats(count, "swiglu activation");
    sm_swiglu_act(act, h1, h3, count);
    sm_linear_bwd_weight(dW1, dh1, x, n, d, I);
    sm_linear_bwd_weight(dW3, dh3, x, n, d, I);
    sm_linear_bwd_weight(dW2, dy, act, n, I, d);
    free(act);
}

/* ------------------------------------------------------------------------------------------ */
/* Cross-entropy */

/* e = exp(l - max l) (vectorised); returns the row's sum of e, added up in double. */
SM_SIMD_KERNEL
static double exp_row(float *restrict e, const float *restrict l, int V, float *mx)
{
    float m = l[0];
    for (int i = 1; i < V; i++) m = l[i] > m ? l[i] : m;
    for (int i = 0; i < V; i++) e[i] = sm_fast_expf(l[i] - m);
    double s = 0;
    for (int i = 0; i < V; i++) s += e[i];
    *mx = m;
    return s;
}

double sm_cross_entropy(float *dlogits, const float *logits, const int32_t *targets, int T, int V,
                        float scale)
{
    double loss = 0;
    /* the row's exponentials go to a scratch row, and a gradient row is written only after its
     * logits row has been read: dlogits may be logits */
    float *e = sm_kfloats((size_t)V, "cross-entropy row"), mx;
    for (int t = 0; t < T; t++) {
        const float *l = logits + (size_t)t * V;
        if (targets[t] < 0) {        /* no target: no loss, no gradient */
            if (dlogits) memset(dlogits + (size_t)t * V, 0, (size_t)V * sizeof *dlogits);
            continue;
        }
        double sum = exp_row(e, l, V, &mx);
        loss += mx + log(sum) - l[targets[t]];
        if (!dlogits) continue;
        float k = (float)(scale / sum), *g = dlogits + (size_t)t * V;
        for (int i = 0; i < V; i++) g[i] = e[i] * k;
        g[targets[t]] -= scale;
    }
    free(e);
    return loss;
}

/* ------------------------------------------------------------------------------------------ */
/* Buckets */

void sm_pack(float *bucket, const float *const *member, const size_t *numel, int n)
{
    for (int i = 0; i < n; bucket += numel[i], i++)
        memcpy(bucket, member[i], numel[i] * sizeof *bucket);
}

void sm_unpack(float *const *member, const size_t *numel, int n, const float *bucket)
{
    for (int i = 0; i < n; bucket += numel[i], i++)
        memcpy(member[i], bucket, numel[i] * sizeof *bucket);
}

/* ------------------------------------------------------------------------------------------ */
/* Machine peak */

SM_SIMD_KERNEL
void sm_sum_into(float *out, const float *const *src, int n, size_t numel, int accumulate)
{
    int k = 0;
    if (!accumulate) {
        if (n == 0) {
            memset(out, 0, numel * sizeof *out);
            return;
        }
        memcpy(out, src[0], numel * sizeof *out);
        k = 1;
    }
    for (; k < n; k++) {
        const float *s = src[k];
        for (size_t i = 0; i < numel; i++) out[i] += s[i];
    }
}

double sm_sgemm_gflops(int n, double seconds)
{
    float *a = sm_kfloats((size_t)n * n, "peak A"), *b = sm_kfloats((size_t)n * n, "peak B");
    float *c = sm_kfloats((size_t)n * n, "peak C");
    for (size_t i = 0; i < (size_t)n * n; i++) a[i] = b[i] = c[i] = 1.0f / (float)(1 + i % 7);
    sm_gemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); /* warm caches and OpenBLAS's buffers */
    long reps = 0;
    double elapsed = 0, t0 = sm_now();
    do {
        sm_gemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        reps++;
        elapsed = sm_now() - t0;
    } while (elapsed < seconds);
    free(a);
    free(b);
    free(c);
    return 2.0 * n * (double)n * n * reps / elapsed * 1e-9;
}
