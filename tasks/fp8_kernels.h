/* Fast FP8 GEMMs (no StarPU): the per-128 promotion of the reference GEMMs of base/fp8_quant.h
 * kept, each 128-wide K block's codes decoded to float once and multiplied by SGEMM, the
 * block's scales applied after, blocks added in increasing order. Within a block SGEMM may sum
 * in another order, so the result is not bitwise the reference's: a fast path must stay within
 * 1e-6 * sum_k |a_k b_k| (decoded codes times their scales) of it, which tests/test_fp8.c
 * checks on random shapes; docs/fp8.md. Row-major, y [M, N] = A B^T. */
#ifndef STARMOE_FP8_KERNELS_H
#define STARMOE_FP8_KERNELS_H

#include <stdint.h>

/* sm_fp8_gemm's operands: A [M, K] in 1x128 tiles, B [N, K] in 128x128 blocks. */
void sm_fp8_gemm_fast(const uint8_t *a, const float *a_scales, const uint8_t *b,
                      const float *b_scales, int64_t M, int64_t N, int64_t K, float *y);
/* sm_fp8_gemm_tiles's operands: A [M, K] and B [N, K] both in 1x128 tiles (Wgrad). */
void sm_fp8_gemm_tiles_fast(const uint8_t *a, const float *a_scales, const uint8_t *b,
                            const float *b_scales, int64_t M, int64_t N, int64_t K, float *y);

#endif
