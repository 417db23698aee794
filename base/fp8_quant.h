/* The FP8 quantisers and reference GEMMs behind <starmoe/fp8.h>, and their non-public
 * relatives: the dequantiser, the quantiser of columns in 128x1 tiles (Wgrad's re-quantisation
 * along tokens) and the GEMM whose B is in 1x128 tiles too. Pure scalar code, exact and in a
 * documented order (docs/fp8.md); the fast variants are in tasks/fp8_kernels.h. */
#ifndef STARMOE_BASE_FP8_QUANT_H
#define STARMOE_BASE_FP8_QUANT_H

#include <stdint.h>
#include <starmoe/fp8.h>

/* Tiles or blocks along an extent: ceil(n / SM_FP8_GROUP). */
static inline int64_t sm_fp8_groups(int64_t n) { return (n + SM_FP8_GROUP - 1) / SM_FP8_GROUP; }

/* x [rows, cols] quantised in tiles of 128 consecutive ROWS of one column (the last tile of a
 * column may be shorter), by the rule of sm_fp8_quantize_tiles, and written transposed: codes
 * [cols, rows], scales [cols][ceil(rows / 128)]. The result is what sm_fp8_quantize_tiles
 * makes of x^T. */
void sm_fp8_quantize_tiles_t(const float *x, int64_t rows, int64_t cols, uint8_t *codes,
                             float *scales);

/* dst [rows, cols] = decoded q times the scale of its br x bc block, scales
 * [ceil(rows / br)][ceil(cols / bc)] (edge blocks smaller): one float32 multiply each. */
void sm_fp8_dequant_blocks(float *dst, const uint8_t *q, const float *scales, int64_t rows,
                           int64_t cols, int br, int bc);
/* The two layouts of DeepSeek-V3: activations in 1x128 tiles, weights in 128x128 blocks. */
static inline void sm_fp8_dequantize_tiles(float *dst, const uint8_t *q, const float *scales,
                                           int64_t rows, int64_t cols)
{
    sm_fp8_dequant_blocks(dst, q, scales, rows, cols, 1, SM_FP8_GROUP);
}
static inline void sm_fp8_dequantize_blocks(float *dst, const uint8_t *q, const float *scales,
                                            int64_t rows, int64_t cols)
{
    sm_fp8_dequant_blocks(dst, q, scales, rows, cols, SM_FP8_GROUP, SM_FP8_GROUP);
}

/* sm_fp8_gemm with B [N, K] in 1x128 tiles along K too (b_scales [N][ceil(K / 128)]), as
 * Wgrad has it (both operands quantised along tokens by sm_fp8_quantize_tiles_t): the same
 * per-block order, bit for bit. */
void sm_fp8_gemm_tiles(const uint8_t *a, const float *a_scales, const uint8_t *b,
                       const float *b_scales, int64_t M, int64_t N, int64_t K, float *y);

/* The 256 decoded E4M3 codes. */
void sm_fp8_e4m3_table(float lut[256]);

#endif
