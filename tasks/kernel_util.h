/* What every kernel file shares: the one CBLAS GEMM call (row-major, C = alpha op(A) op(B) +
 * beta C, nothing done for an empty output), scratch allocation that aborts with a message
 * when memory runs out (the one failure a kernel cannot report), a vectorisable exp, and the
 * mark of element-wise kernels compiled for AVX2/FMA too. */
#ifndef STARMOE_KERNEL_UTIL_H
#define STARMOE_KERNEL_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "build_config.h"

/* Marks an element-wise kernel: in a portable build GCC compiles it twice, for x86-64-v3
 * (AVX2, FMA) and the baseline, and the dynamic loader picks the clone the processor runs
 * (GNU ifunc). BLAS does the same for the GEMMs. Results are reproducible on one machine;
 * the two clones may differ in the last bit (FMA contraction). */
#ifdef SM_HAVE_TARGET_CLONES
#define SM_SIMD_KERNEL __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SM_SIMD_KERNEL
#endif

void sm_gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc);
/* n zeroed elements of `size` bytes */
void *sm_kcalloc(size_t n, size_t size, const char *what);
/* n uninitialised floats */
float *sm_kfloats(size_t n, const char *what);

/* Dot products with SM_LANES explicit partial sums (lane j takes the entries i = j mod
 * SM_LANES), added lane by lane at the end: the loops vectorize without reassociation, and
 * every build adds in the same order. */
enum { SM_LANES = 8 };

static inline float sm_dotf(const float *a, const float *b, size_t n)
{
    float acc[SM_LANES] = {0}, s = 0.0f;
    size_t i = 0;
    for (; i + SM_LANES <= n; i += SM_LANES)
        for (int j = 0; j < SM_LANES; j++) acc[j] += a[i + j] * b[i + j];
    for (; i < n; i++) acc[i % SM_LANES] += a[i] * b[i];
    for (int j = 0; j < SM_LANES; j++) s += acc[j];
    return s;
}

/* sum a[i] * b[i] * c[i] (c may be NULL: 1) in double. */
static inline double sm_dotd(const float *a, const float *b, const float *c, size_t n)
{
    double acc[SM_LANES] = {0}, s = 0;
    size_t i = 0;
    for (; i + SM_LANES <= n; i += SM_LANES)
        for (int j = 0; j < SM_LANES; j++)
            acc[j] += (double)a[i + j] * b[i + j] * (c ? c[i + j] : 1.0f);
    for (; i < n; i++) acc[i % SM_LANES] += (double)a[i] * b[i] * (c ? c[i] : 1.0f);
    for (int j = 0; j < SM_LANES; j++) s += acc[j];
    return s;
}

/* exp(x) without branches or calls, so loops over it vectorize: x clamped to [-87.3, 88.3]
 * (NaN passes through), n = round(x / ln 2) by the 1.5 * 2^23 trick, Cody-Waite reduction
 * and Cephes' degree-6 polynomial for e^r, |r| <= ln(2)/2; relative error below 2e-7. */
static inline float sm_fast_expf(float x)
{
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.3f ? 88.3f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#endif
