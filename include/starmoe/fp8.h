/* FP8 (DeepSeek-V3's fine-grained mixed precision, docs/fp8.md): exact software casts between
 * float32 and the E4M3 / E5M2 formats, the quantisers of activations (1x128 tiles along a row)
 * and weights (128x128 blocks), and the FP8 GEMM with per-128 promotion to float32 in the
 * documented order, so a CUDA kernel can be checked against it bit for bit. Row-major arrays;
 * `scales` hold the dequantisation multipliers (a checkpoint's `weight_scale_inv`). */
#ifndef STARMOE_FP8_H
#define STARMOE_FP8_H

#include <stdint.h>
#include <starmoe/export.h>

/* The tile and block edge of DeepSeek-V3's quantisation. */
#define SM_FP8_GROUP 128
/* The largest finite E4M3 value. */
#define SM_FP8_E4M3_MAX 448.0f

/* float32 -> FP8, round to nearest, ties to even, on the format's grid (subnormals included).
 * saturate = 1: overflow and infinities become the largest finite value of their sign; 0: NaN
 * (E4M3, which has no infinity) or infinity (E5M2). NaN gives a NaN code; the sign of zero is
 * kept. */
SM_API uint8_t sm_fp8_e4m3_from_f32(float x, int saturate);
SM_API uint8_t sm_fp8_e5m2_from_f32(float x, int saturate);
/* FP8 -> float32, exact. */
SM_API float sm_fp8_e4m3_to_f32(uint8_t code);
SM_API float sm_fp8_e5m2_to_f32(uint8_t code);

/* x [rows, cols] in 1x128 tiles along each row (the last tile of a row may be shorter):
 * scale = max(amax, 1e-4f) / 448 per tile, code = e4m3(x / scale) saturated, each a correctly
 * rounded float32 division; codes [rows, cols], scales [rows][ceil(cols / 128)]. */
SM_API void sm_fp8_quantize_tiles(const float *x, int64_t rows, int64_t cols, uint8_t *codes,
                                  float *scales);
/* w [rows, cols] in 128x128 blocks (edge blocks smaller), the same rule per block; scales
 * [ceil(rows / 128)][ceil(cols / 128)]. */
SM_API void sm_fp8_quantize_blocks(const float *w, int64_t rows, int64_t cols, uint8_t *codes,
                                   float *scales);

/* y [M, N] = A B^T with A [M, K] in 1x128 tiles (a_scales [M][ceil(K/128)]) and B [N, K] in
 * 128x128 blocks (b_scales [ceil(N/128)][ceil(K/128)]): per 128-wide block kb of K, the exact
 * products of the decoded codes summed in float32 in increasing k, then
 * acc += (P * a_scale) * b_scale in float32, kb increasing (the official kernel.py's order):
 * the reference, bit for bit. */
SM_API void sm_fp8_gemm(const uint8_t *a, const float *a_scales, const uint8_t *b,
                        const float *b_scales, int64_t M, int64_t N, int64_t K, float *y);

#endif
