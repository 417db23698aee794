/* Codelets and insert helpers of FP8 training's casts and GEMMs (fp8.h) over the kernels of
 * fp8_kernels.c and include/starmoe/fp8.h. */
#include "tasks/fp8.h"

#include <stdlib.h>
#include <string.h>
#include <starmoe/fp8.h>
#include "base/fp8_quant.h"
#include "tasks/fp8_kernels.h"
#include "tasks/kernel_util.h"

/* W^T's 128x128 blocks [cols, rows] from W's [rows, cols]: the codes transposed and the scale
 * grid transposed (a block's amax, so its scale and codes, do not change). */
static void sm_fp8_transpose_blocks(const uint8_t *codes, const float *scales, int64_t rows,
                                    int64_t cols, uint8_t *codes_t, float *scales_t)
{
    int64_t br = sm_fp8_groups(rows), bc = sm_fp8_groups(cols);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) codes_t[j * rows + i] = codes[i * cols + j];
    for (int64_t i = 0; i < br; i++)
        for (int64_t j = 0; j < bc; j++) scales_t[j * br + i] = scales[i * bc + j];
}

/* ---- casts ---- */
typedef struct { int rows, cols; } sm_cast_args;
/* src_scales only for the casts of block- or tile-quantised sources */
enum { CAST_CODES, CAST_SCALES, CAST_SRC, CAST_SRC_SCALES, CAST_NBUF };

static void sm_fp8_quant_tiles_cpu(void *b[], void *arg)
{
    const sm_cast_args *a = arg;
    sm_fp8_quantize_tiles(SM_BUF(b, CAST_SRC, float), a->rows, a->cols,
                          SM_BUF(b, CAST_CODES, uint8_t), SM_BUF(b, CAST_SCALES, float));
}
SM_CODELET(fp8_quant_tiles, sm_fp8_quant_tiles_cpu);

static void sm_fp8_quant_blocks_cpu(void *b[], void *arg)
{
    const sm_cast_args *a = arg;
    sm_fp8_quantize_blocks(SM_BUF(b, CAST_SRC, float), a->rows, a->cols,
                           SM_BUF(b, CAST_CODES, uint8_t), SM_BUF(b, CAST_SCALES, float));
}
SM_CODELET(fp8_quant_blocks, sm_fp8_quant_blocks_cpu);

static void sm_fp8_transpose_blocks_cpu(void *b[], void *arg)
{
    const sm_cast_args *a = arg;
    sm_fp8_transpose_blocks(SM_BUF(b, CAST_SRC, uint8_t), SM_BUF(b, CAST_SRC_SCALES, float),
                            a->rows, a->cols, SM_BUF(b, CAST_CODES, uint8_t),
                            SM_BUF(b, CAST_SCALES, float));
}
SM_CODELET(fp8_transpose_blocks, sm_fp8_transpose_blocks_cpu);

static void sm_fp8_quant_tiles_t_cpu(void *b[], void *arg)
{
    const sm_cast_args *a = arg;
    sm_fp8_quantize_tiles_t(SM_BUF(b, CAST_SRC, float), a->rows, a->cols,
                            SM_BUF(b, CAST_CODES, uint8_t), SM_BUF(b, CAST_SCALES, float));
}
SM_CODELET(fp8_quant_tiles_t, sm_fp8_quant_tiles_t_cpu);

static void sm_fp8_requant_t_cpu(void *b[], void *arg)
{
    const sm_cast_args *a = arg;
    float *x = sm_kfloats((size_t)a->rows * a->cols, "fp8 re-quantisation");
    sm_fp8_dequantize_tiles(x, SM_BUF(b, CAST_SRC, uint8_t), SM_BUF(b, CAST_SRC_SCALES, float),
                            a->rows, a->cols);
    sm_fp8_quantize_tiles_t(x, a->rows, a->cols, SM_BUF(b, CAST_CODES, uint8_t),
                            SM_BUF(b, CAST_SCALES, float));
    free(x);
}
SM_CODELET(fp8_requant_t, sm_fp8_requant_t_cpu);

/* One cast task: codes and scales written from src (and src_scales when not NULL). */
static int sm_insert_cast(const sm_op_ctx *c, struct starpu_codelet *cl, const char *op,
                          sm_phase phase, sm_tensor *codes, sm_tensor *scales, sm_tensor *src,
                          sm_tensor *src_scales, int rows, int cols)
{
    sm_cast_args a = {rows, cols};
    sm_access acc[CAST_NBUF] = {[CAST_CODES] = SM_W(codes), [CAST_SCALES] = SM_W(scales),
                                [CAST_SRC] = SM_R(src), [CAST_SRC_SCALES] = SM_R(src_scales)};
    return sm_op_insert(c, cl, op, phase, -1, acc, src_scales ? CAST_NBUF : CAST_SRC_SCALES, &a,
                        sizeof a, 2.0 * rows * cols);
}

int sm_insert_fp8_quant_tiles(const sm_op_ctx *c, sm_phase phase, sm_tensor *codes,
                              sm_tensor *scales, sm_tensor *x, int T, int K)
{
    return sm_insert_cast(c, &sm_cl_fp8_quant_tiles, "fp8_quant_tiles", phase, codes, scales, x,
                          NULL, T, K);
}

int sm_insert_fp8_quant_blocks(const sm_op_ctx *c, sm_tensor *codes, sm_tensor *scales,
                               sm_tensor *W, int N, int K)
{
    return sm_insert_cast(c, &sm_cl_fp8_quant_blocks, "fp8_quant_blocks", SM_FORWARD, codes,
                          scales, W, NULL, N, K);
}

int sm_insert_fp8_transpose_blocks(const sm_op_ctx *c, sm_tensor *codes_t, sm_tensor *scales_t,
                                   sm_tensor *codes, sm_tensor *scales, int N, int K)
{
    return sm_insert_cast(c, &sm_cl_fp8_transpose_blocks, "fp8_transpose_blocks",
                          SM_BACKWARD_INPUT, codes_t, scales_t, codes, scales, N, K);
}

int sm_insert_fp8_quant_tiles_t(const sm_op_ctx *c, sm_tensor *codes_t, sm_tensor *scales_t,
                                sm_tensor *x, int T, int K)
{
    return sm_insert_cast(c, &sm_cl_fp8_quant_tiles_t, "fp8_quant_tiles_t", SM_BACKWARD_WEIGHT,
                          codes_t, scales_t, x, NULL, T, K);
}

int sm_insert_fp8_requant_t(const sm_op_ctx *c, sm_tensor *codes_t, sm_tensor *scales_t,
                            sm_tensor *codes, sm_tensor *scales, int T, int K)
{
    return sm_insert_cast(c, &sm_cl_fp8_requant_t, "fp8_requant_t", SM_BACKWARD_WEIGHT, codes_t,
                          scales_t, codes, scales, T, K);
}

/* ---- GEMMs ---- */
typedef struct { int M, N, K, accumulate, res; } sm_fp8_gemm_args;
enum { GEMM_Y, GEMM_A, GEMM_AS, GEMM_B, GEMM_BS, GEMM_RES, GEMM_NBUF };

/* y = (or +=) the product, + res: the product goes straight to y unless something is added. */
static void sm_fp8_gemm_into(void *b[], const sm_fp8_gemm_args *a,
                             void (*gemm)(const uint8_t *, const float *, const uint8_t *,
                                          const float *, int64_t, int64_t, int64_t, float *))
{
    float *y = SM_BUF(b, GEMM_Y, float);
    size_t n = (size_t)a->M * a->N;
    int add = a->accumulate || a->res;
    float *p = add ? sm_kfloats(n, "fp8 GEMM product") : y;
    gemm(SM_BUF(b, GEMM_A, uint8_t), SM_BUF(b, GEMM_AS, float), SM_BUF(b, GEMM_B, uint8_t),
         SM_BUF(b, GEMM_BS, float), a->M, a->N, a->K, p);
    if (!add) return;
    const float *r = a->res ? SM_BUF(b, GEMM_RES, float) : y;
    for (size_t i = 0; i < n; i++) y[i] = r[i] + p[i];
    free(p);
}

static void sm_fp8_gemm_cpu(void *b[], void *arg) { sm_fp8_gemm_into(b, arg, sm_fp8_gemm_fast); }
SM_CODELET(fp8_gemm, sm_fp8_gemm_cpu);

static void sm_fp8_gemm_tiles_cpu(void *b[], void *arg)
{
    sm_fp8_gemm_into(b, arg, sm_fp8_gemm_tiles_fast);
}
SM_CODELET(fp8_gemm_tiles, sm_fp8_gemm_tiles_cpu);

int sm_insert_fp8_gemm(const sm_op_ctx *c, sm_phase phase, sm_tensor *y, sm_tensor *a,
                       sm_tensor *a_scales, sm_tensor *b, sm_tensor *b_scales, sm_tensor *res,
                       int M, int N, int K, int accumulate)
{
    sm_fp8_gemm_args x = {M, N, K, accumulate, res != NULL};
    sm_access acc[GEMM_NBUF] = {[GEMM_Y] = SM_ACC(y, accumulate), [GEMM_A] = SM_R(a),
                                [GEMM_AS] = SM_R(a_scales), [GEMM_B] = SM_R(b),
                                [GEMM_BS] = SM_R(b_scales), [GEMM_RES] = SM_R(res)};
    return sm_op_insert(c, &sm_cl_fp8_gemm, "fp8_gemm", phase, -1, acc,
                        res ? GEMM_NBUF : GEMM_RES, &x, sizeof x, 2.0 * M * N * K);
}

int sm_insert_fp8_gemm_tiles(const sm_op_ctx *c, sm_tensor *y, sm_tensor *a, sm_tensor *a_scales,
                             sm_tensor *b, sm_tensor *b_scales, int M, int N, int K)
{
    sm_fp8_gemm_args x = {M, N, K, 1, 0};
    sm_access acc[GEMM_RES] = {[GEMM_Y] = SM_RW(y), [GEMM_A] = SM_R(a), [GEMM_AS] = SM_R(a_scales),
                               [GEMM_B] = SM_R(b), [GEMM_BS] = SM_R(b_scales)};
    return sm_op_insert(c, &sm_cl_fp8_gemm_tiles, "fp8_gemm_wgrad", SM_BACKWARD_WEIGHT, -1, acc,
                        GEMM_RES, &x, sizeof x, 2.0 * M * N * K);
}
