/* The fast FP8 GEMMs: per 128-wide K block, decode the block of A and of B to float, one SGEMM
 * for the block's partial products, then y += (P * a_scale) * b_scale (tasks/fp8_kernels.h). */
#include "tasks/fp8_kernels.h"

#include <stdlib.h>

#include "base/fp8_quant.h"
#include "tasks/kernel_util.h"

/* dst [rows, kw] = the decoded codes of columns [k0, k0 + kw) of src [rows, K]. */
static void decode_columns(float *dst, const uint8_t *src, int64_t rows, int64_t K, int64_t k0,
                           int64_t kw, const float lut[256])
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < kw; k++) dst[r * kw + k] = lut[src[r * K + k0 + k]];
}

/* B's scale rows each cover b_group rows of B (128: blocks, 1: tiles). */
static void gemm_blocked(const uint8_t *a, const float *a_scales, const uint8_t *b,
                         const float *b_scales, int64_t M, int64_t N, int64_t K, int64_t b_group,
                         float *y)
{
    int64_t nkb = sm_fp8_groups(K);
    for (int64_t i = 0; i < M * N; i++) y[i] = 0.0f;
    if (M == 0 || N == 0 || K == 0) return;
    float lut[256];
    sm_fp8_e4m3_table(lut);
    float *ad = sm_kfloats((size_t)(M * SM_FP8_GROUP), "fp8 gemm: A block");
    float *bd = sm_kfloats((size_t)(N * SM_FP8_GROUP), "fp8 gemm: B block");
    float *p = sm_kfloats((size_t)(M * N), "fp8 gemm: block products");
    for (int64_t kb = 0; kb < nkb; kb++) {
        int64_t k0 = kb * SM_FP8_GROUP, kw = K - k0 < SM_FP8_GROUP ? K - k0 : SM_FP8_GROUP;
        decode_columns(ad, a, M, K, k0, kw, lut);
        decode_columns(bd, b, N, K, k0, kw, lut);
        sm_gemm(0, 1, (int)M, (int)N, (int)kw, 1.0f, ad, (int)kw, bd, (int)kw, 0.0f, p, (int)N);
        for (int64_t m = 0; m < M; m++) {
            float as = a_scales[m * nkb + kb];
            for (int64_t n = 0; n < N; n++)
                y[m * N + n] += (p[m * N + n] * as) * b_scales[(n / b_group) * nkb + kb];
        }
    }
    free(ad);
    free(bd);
    free(p);
}

void sm_fp8_gemm_fast(const uint8_t *a, const float *a_scales, const uint8_t *b,
                      const float *b_scales, int64_t M, int64_t N, int64_t K, float *y)
{
    gemm_blocked(a, a_scales, b, b_scales, M, N, K, SM_FP8_GROUP, y);
}

void sm_fp8_gemm_tiles_fast(const uint8_t *a, const float *a_scales, const uint8_t *b,
                            const float *b_scales, int64_t M, int64_t N, int64_t K, float *y)
{
    gemm_blocked(a, a_scales, b, b_scales, M, N, K, 1, y);
}
