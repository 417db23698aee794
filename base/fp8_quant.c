/* FP8 quantisation (1x128 tiles, 128x128 blocks, 128x1 tiles written transposed), the
 * dequantiser and the reference FP8 GEMMs: the rules of docs/fp8.md, exactly. Compiled without
 * floating-point contraction, so no build fuses the GEMM's scale multiplies into the
 * accumulation and the documented order holds bit for bit. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#else
#pragma GCC optimize("fp-contract=off")
#endif

#include "base/fp8_quant.h"

#include <math.h>

/* The rule of every tile and block: amax clamped below by 1e-4, divided by E4M3's largest. */
static float group_scale(float amax) { return fmaxf(amax, 1e-4f) / SM_FP8_E4M3_MAX; }

/* Quantises x [rows, cols] in groups of gr x gc elements (edge groups smaller). Not
 * transposed: codes [rows, cols], scales [ceil(rows / gr)][ceil(cols / gc)]; transposed:
 * codes [cols, rows], scales [ceil(cols / gc)][ceil(rows / gr)]. */
static void quantize_groups(const float *x, int64_t rows, int64_t cols, int64_t gr, int64_t gc,
                            int transposed, uint8_t *codes, float *scales)
{
    int64_t nr = (rows + gr - 1) / gr, nc = (cols + gc - 1) / gc;
    for (int64_t bi = 0; bi < nr; bi++)
        for (int64_t bj = 0; bj < nc; bj++) {
            int64_t r0 = bi * gr, r1 = r0 + gr < rows ? r0 + gr : rows;
            int64_t c0 = bj * gc, c1 = c0 + gc < cols ? c0 + gc : cols;
            float amax = 0.0f;
            for (int64_t r = r0; r < r1; r++)
                for (int64_t c = c0; c < c1; c++) amax = fmaxf(amax, fabsf(x[r * cols + c]));
            float scale = group_scale(amax);
            scales[transposed ? bj * nr + bi : bi * nc + bj] = scale;
            for (int64_t r = r0; r < r1; r++)
                for (int64_t c = c0; c < c1; c++)
                    codes[transposed ? c * rows + r : r * cols + c] =
                        sm_fp8_e4m3_from_f32(x[r * cols + c] / scale, 1);
        }
}

void sm_fp8_quantize_tiles(const float *x, int64_t rows, int64_t cols, uint8_t *codes,
                           float *scales)
{
    quantize_groups(x, rows, cols, 1, SM_FP8_GROUP, 0, codes, scales);
}

void sm_fp8_quantize_blocks(const float *w, int64_t rows, int64_t cols, uint8_t *codes,
                            float *scales)
{
    quantize_groups(w, rows, cols, SM_FP8_GROUP, SM_FP8_GROUP, 0, codes, scales);
}

void sm_fp8_quantize_tiles_t(const float *x, int64_t rows, int64_t cols, uint8_t *codes,
                             float *scales)
{
    quantize_groups(x, rows, cols, SM_FP8_GROUP, 1, 1, codes, scales);
}

void sm_fp8_e4m3_table(float lut[256])
{
    for (int i = 0; i < 256; i++) lut[i] = sm_fp8_e4m3_to_f32((uint8_t)i);
}

void sm_fp8_dequant_blocks(float *dst, const uint8_t *q, const float *scales, int64_t rows,
                           int64_t cols, int br, int bc)
{
    float lut[256];
    int64_t nbc = (cols + bc - 1) / bc;
    sm_fp8_e4m3_table(lut);
    for (int64_t r = 0; r < rows; r++) {
        const float *srow = scales + (r / br) * nbc;
        for (int64_t c = 0; c < cols; c++) dst[r * cols + c] = lut[q[r * cols + c]] * srow[c / bc];
    }
}

/* y = A B^T in the reference order, B's scale rows each covering b_group rows of B (128 for
 * 128x128 blocks, 1 for 1x128 tiles). */
static void gemm_reference(const uint8_t *a, const float *a_scales, const uint8_t *b,
                           const float *b_scales, int64_t M, int64_t N, int64_t K,
                           int64_t b_group, float *y)
{
    float lut[256];
    int64_t nkb = sm_fp8_groups(K);
    sm_fp8_e4m3_table(lut);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            const uint8_t *ar = a + m * K, *br = b + n * K;
            const float *bs = b_scales + (n / b_group) * nkb;
            float acc = 0.0f;
            for (int64_t kb = 0; kb < nkb; kb++) {
                int64_t k1 = (kb + 1) * SM_FP8_GROUP < K ? (kb + 1) * SM_FP8_GROUP : K;
                float p = 0.0f;
                for (int64_t k = kb * SM_FP8_GROUP; k < k1; k++) p += lut[ar[k]] * lut[br[k]];
                acc += (p * a_scales[m * nkb + kb]) * bs[kb];
            }
            y[m * N + n] = acc;
        }
}

void sm_fp8_gemm(const uint8_t *a, const float *a_scales, const uint8_t *b, const float *b_scales,
                 int64_t M, int64_t N, int64_t K, float *y)
{
    gemm_reference(a, a_scales, b, b_scales, M, N, K, SM_FP8_GROUP, y);
}

void sm_fp8_gemm_tiles(const uint8_t *a, const float *a_scales, const uint8_t *b,
                       const float *b_scales, int64_t M, int64_t N, int64_t K, float *y)
{
    gemm_reference(a, a_scales, b, b_scales, M, N, K, 1, y);
}
