/* Insert helpers of FP8 training's casts and GEMMs (docs/fp8.md; kernels in fp8_kernels.c and
 * the public include/starmoe/fp8.h). Codes are U8 tensors of E4M3 bytes, scales F32 tensors
 * of dequantisation multipliers. Every cast is a task of its own op: fp8_quant_tiles (an
 * activation or gradient, 1x128 tiles along its rows), fp8_quant_blocks (a weight, 128x128
 * blocks), fp8_transpose_blocks (a block-quantised weight transposed, for Dgrad: exact, a
 * block's amax does not change), fp8_quant_tiles_t and fp8_requant_t (a gradient, or a cached
 * FP8 activation dequantised, quantised along tokens for Wgrad). */
#ifndef STARMOE_FP8_TASKS_H
#define STARMOE_FP8_TASKS_H

#include "tasks/codelet.h"

/* The rows (tokens) of an activation or gradient operand: n, or (dynamic) as many as its
 * resizable buffer holds when the task runs — a routed expert's — n then being the expected
 * count for the flop estimate; the task sizes the resizable buffers it writes to match. */
typedef struct sm_fp8_rows {
    int n, dynamic;
} sm_fp8_rows;

/* codes [T, K], scales [T, ceil(K/128)] of x [T, K] (an activation in the forward pass, a
 * gradient in the backward: phase) */
int sm_insert_fp8_quant_tiles(const sm_op_ctx *c, sm_phase phase, sm_tensor *codes,
                              sm_tensor *scales, sm_tensor *x, sm_fp8_rows T, int K);
/* codes [N, K], scales [ceil(N/128), ceil(K/128)] of W [N, K] (forward phase) */
int sm_insert_fp8_quant_blocks(const sm_op_ctx *c, sm_tensor *codes, sm_tensor *scales,
                               sm_tensor *W, int N, int K);
/* the blocks of W^T [K, N] from those of W [N, K] (backward, input part) */
int sm_insert_fp8_transpose_blocks(const sm_op_ctx *c, sm_tensor *codes_t, sm_tensor *scales_t,
                                   sm_tensor *codes, sm_tensor *scales, int N, int K);
/* x^T [K, T] in tiles along T (codes_t [K, T], scales_t [K, ceil(T/128)]) of x [T, K]
 * (backward, weight part) */
int sm_insert_fp8_quant_tiles_t(const sm_op_ctx *c, sm_tensor *codes_t, sm_tensor *scales_t,
                                sm_tensor *x, sm_fp8_rows T, int K);
/* the same of x given in 1x128 tiles along K (codes [T, K], scales [T, ceil(K/128)]) */
int sm_insert_fp8_requant_t(const sm_op_ctx *c, sm_tensor *codes_t, sm_tensor *scales_t,
                            sm_tensor *codes, sm_tensor *scales, sm_fp8_rows T, int K);
/* y [M, N] = (accumulate: +=) A B^T (+ res when not NULL): A [M, K] in 1x128 tiles, B [N, K]
 * in 128x128 blocks (Fprop and Dgrad) */
int sm_insert_fp8_gemm(const sm_op_ctx *c, sm_phase phase, sm_tensor *y, sm_tensor *a,
                       sm_tensor *a_scales, sm_tensor *b, sm_tensor *b_scales, sm_tensor *res,
                       sm_fp8_rows M, int N, int K, int accumulate);
/* y [M, N] += A B^T with A [M, K] and B [N, K] both in 1x128 tiles along K, the tokens
 * (Wgrad) */
int sm_insert_fp8_gemm_tiles(const sm_op_ctx *c, sm_tensor *y, sm_tensor *a, sm_tensor *a_scales,
                             sm_tensor *b, sm_tensor *b_scales, int M, int N, sm_fp8_rows K);

#endif
