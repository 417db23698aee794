/* Codelets and insert helpers of FP8 training's casts and GEMMs (fp8.h) over the kernels of
 * fp8_kernels.c and include/starmoe/fp8.h. */
#include "tasks/fp8.h"

#include <stdlib.h>
#include <string.h>
#include <starmoe/fp8.h>
#include "base/fp8_quant.h"
#include "graph/resizable.h"
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

/* Buffer `slot` written by the task, n elements: a resizable buffer takes that size. */
static void *sm_fp8_out(void *b[], int slot, int dynamic, size_t n)
{
    return dynamic ? sm_resizable_resize(b[slot], n) : (void *)STARPU_VECTOR_GET_PTR(b[slot]);
}

/* The rows of buffer `slot` of `cols` columns: fixed, or as many as it holds. */
static int64_t sm_fp8_rows_of(void *b[], int slot, int dynamic, int64_t rows, int64_t cols)
{
    return dynamic ? (int64_t)(STARPU_VECTOR_GET_NX(b[slot]) / (size_t)cols) : rows;
}

/* ---- casts ---- */
typedef struct { int rows, cols, dynamic; } sm_cast_args;
/* src_scales only for the casts of block- or tile-quantised sources */
enum { CAST_CODES, CAST_SCALES, CAST_SRC, CAST_SRC_SCALES, CAST_NBUF };

/* A cast's rows, and its outputs sized for them: codes rows x cols, scales of tiles along the
 * rows (transposed: tiles along the columns of codes [cols, rows]). */
typedef struct sm_cast_io {
    int64_t rows;
    uint8_t *codes;
    float *scales;
} sm_cast_io;

static sm_cast_io sm_cast_outputs(void *b[], const sm_cast_args *a, int transposed)
{
    sm_cast_io io = {sm_fp8_rows_of(b, CAST_SRC, a->dynamic, a->rows, a->cols), NULL, NULL};
    size_t nscales = transposed ? (size_t)a->cols * sm_fp8_groups(io.rows)
                                : (size_t)io.rows * sm_fp8_groups(a->cols);
    io.codes = sm_fp8_out(b, CAST_CODES, a->dynamic, (size_t)io.rows * a->cols);
    io.scales = sm_fp8_out(b, CAST_SCALES, a->dynamic, nscales);
    return io;
}

/* A float source quantised in tiles along its rows (transposed: along its columns, written
 * as codes [cols, rows]). */
static void sm_fp8_quant_float(void *b[], const sm_cast_args *a, int transposed)
{
    sm_cast_io io = sm_cast_outputs(b, a, transposed);
    (transposed ? sm_fp8_quantize_tiles_t : sm_fp8_quantize_tiles)(
        SM_BUF(b, CAST_SRC, float), io.rows, a->cols, io.codes, io.scales);
}

static void sm_fp8_quant_tiles_cpu(void *b[], void *arg) { sm_fp8_quant_float(b, arg, 0); }
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

static void sm_fp8_quant_tiles_t_cpu(void *b[], void *arg) { sm_fp8_quant_float(b, arg, 1); }
SM_CODELET(fp8_quant_tiles_t, sm_fp8_quant_tiles_t_cpu);

static void sm_fp8_requant_t_cpu(void *b[], void *arg)
{
    const sm_cast_args *a = arg;
    sm_cast_io io = sm_cast_outputs(b, a, 1);
    float *x = sm_kfloats((size_t)io.rows * a->cols, "fp8 re-quantisation");
    sm_fp8_dequantize_tiles(x, SM_BUF(b, CAST_SRC, uint8_t), SM_BUF(b, CAST_SRC_SCALES, float),
                            io.rows, a->cols);
    sm_fp8_quantize_tiles_t(x, io.rows, a->cols, io.codes, io.scales);
    free(x);
}
SM_CODELET(fp8_requant_t, sm_fp8_requant_t_cpu);

/* One cast task: codes and scales written from src (and src_scales when not NULL). */
static int sm_insert_cast(const sm_op_ctx *c, struct starpu_codelet *cl, const char *op,
                          sm_phase phase, sm_tensor *codes, sm_tensor *scales, sm_tensor *src,
                          sm_tensor *src_scales, sm_fp8_rows rows, int cols)
{
    sm_cast_args a = {rows.n, cols, rows.dynamic};
    sm_access acc[CAST_NBUF] = {[CAST_CODES] = SM_W(codes), [CAST_SCALES] = SM_W(scales),
                                [CAST_SRC] = SM_R(src), [CAST_SRC_SCALES] = SM_R(src_scales)};
    return sm_op_insert(c, cl, op, phase, -1, acc, src_scales ? CAST_NBUF : CAST_SRC_SCALES, &a,
                        sizeof a, 2.0 * rows.n * cols);
}

int sm_insert_fp8_quant_tiles(const sm_op_ctx *c, sm_phase phase, sm_tensor *codes,
                              sm_tensor *scales, sm_tensor *x, sm_fp8_rows T, int K)
{
    return sm_insert_cast(c, &sm_cl_fp8_quant_tiles, "fp8_quant_tiles", phase, codes, scales, x,
                          NULL, T, K);
}

int sm_insert_fp8_quant_blocks(const sm_op_ctx *c, sm_tensor *codes, sm_tensor *scales,
                               sm_tensor *W, int N, int K)
{
    return sm_insert_cast(c, &sm_cl_fp8_quant_blocks, "fp8_quant_blocks", SM_FORWARD, codes,
                          scales, W, NULL, (sm_fp8_rows){N, 0}, K);
}

int sm_insert_fp8_transpose_blocks(const sm_op_ctx *c, sm_tensor *codes_t, sm_tensor *scales_t,
                                   sm_tensor *codes, sm_tensor *scales, int N, int K)
{
    return sm_insert_cast(c, &sm_cl_fp8_transpose_blocks, "fp8_transpose_blocks",
                          SM_BACKWARD_INPUT, codes_t, scales_t, codes, scales,
                          (sm_fp8_rows){N, 0}, K);
}

int sm_insert_fp8_quant_tiles_t(const sm_op_ctx *c, sm_tensor *codes_t, sm_tensor *scales_t,
                                sm_tensor *x, sm_fp8_rows T, int K)
{
    return sm_insert_cast(c, &sm_cl_fp8_quant_tiles_t, "fp8_quant_tiles_t", SM_BACKWARD_WEIGHT,
                          codes_t, scales_t, x, NULL, T, K);
}

int sm_insert_fp8_requant_t(const sm_op_ctx *c, sm_tensor *codes_t, sm_tensor *scales_t,
                            sm_tensor *codes, sm_tensor *scales, sm_fp8_rows T, int K)
{
    return sm_insert_cast(c, &sm_cl_fp8_requant_t, "fp8_requant_t", SM_BACKWARD_WEIGHT, codes_t,
                          scales_t, codes, scales, T, K);
}

/* ---- GEMMs ---- */
/* dynamic: M (Fprop, Dgrad) or K (Wgrad) is as many rows as A's codes hold */
typedef struct { int M, N, K, accumulate, res, dynamic; } sm_fp8_gemm_args;
enum { GEMM_Y, GEMM_A, GEMM_AS, GEMM_B, GEMM_BS, GEMM_RES, GEMM_NBUF };

/* y = (or +=) the product, + res: the product goes straight to y unless something is added. */
static void sm_fp8_gemm_into(void *b[], const sm_fp8_gemm_args *a, int64_t M, int64_t K,
                             void (*gemm)(const uint8_t *, const float *, const uint8_t *,
                                          const float *, int64_t, int64_t, int64_t, float *))
{
    size_t n = (size_t)M * a->N;
    float *y = a->dynamic && !a->accumulate ? sm_fp8_out(b, GEMM_Y, 1, n)
                                            : SM_BUF(b, GEMM_Y, float);
    int add = a->accumulate || a->res;
    float *p = add ? sm_kfloats(n, "fp8 GEMM product") : y;
    gemm(SM_BUF(b, GEMM_A, uint8_t), SM_BUF(b, GEMM_AS, float), SM_BUF(b, GEMM_B, uint8_t),
         SM_BUF(b, GEMM_BS, float), M, a->N, K, p);
    if (!add) return;
    const float *r = a->res ? SM_BUF(b, GEMM_RES, float) : y;
    for (size_t i = 0; i < n; i++) y[i] = r[i] + p[i];
    free(p);
}

static void sm_fp8_gemm_cpu(void *b[], void *arg)
{
    const sm_fp8_gemm_args *a = arg;
    int64_t M = sm_fp8_rows_of(b, GEMM_A, a->dynamic, a->M, a->K);
    sm_fp8_gemm_into(b, a, M, a->K, sm_fp8_gemm_fast);
}
SM_CODELET(fp8_gemm, sm_fp8_gemm_cpu);

/* Wgrad: A [M, K] with K the tokens. */
static void sm_fp8_gemm_tiles_cpu(void *b[], void *arg)
{
    const sm_fp8_gemm_args *a = arg;
    int64_t K = a->dynamic ? (int64_t)(STARPU_VECTOR_GET_NX(b[GEMM_A]) / (size_t)a->M) : a->K;
    sm_fp8_gemm_into(b, a, a->M, K, sm_fp8_gemm_tiles_fast);
}
SM_CODELET(fp8_gemm_tiles, sm_fp8_gemm_tiles_cpu);

int sm_insert_fp8_gemm(const sm_op_ctx *c, sm_phase phase, sm_tensor *y, sm_tensor *a,
                       sm_tensor *a_scales, sm_tensor *b, sm_tensor *b_scales, sm_tensor *res,
                       sm_fp8_rows M, int N, int K, int accumulate)
{
    sm_fp8_gemm_args x = {M.n, N, K, accumulate, res != NULL, M.dynamic};
    if (M.dynamic && res)
        return sm_fail(c->err, "fp8_gemm: an output of rows known when the task runs has no "
                               "residual");
    sm_access acc[GEMM_NBUF] = {[GEMM_Y] = SM_ACC(y, accumulate), [GEMM_A] = SM_R(a),
                                [GEMM_AS] = SM_R(a_scales), [GEMM_B] = SM_R(b),
                                [GEMM_BS] = SM_R(b_scales), [GEMM_RES] = SM_R(res)};
    return sm_op_insert(c, &sm_cl_fp8_gemm, "fp8_gemm", phase, -1, acc,
                        res ? GEMM_NBUF : GEMM_RES, &x, sizeof x, 2.0 * M.n * N * K);
}

int sm_insert_fp8_gemm_tiles(const sm_op_ctx *c, sm_tensor *y, sm_tensor *a, sm_tensor *a_scales,
                             sm_tensor *b, sm_tensor *b_scales, int M, int N, sm_fp8_rows K)
{
    sm_fp8_gemm_args x = {M, N, K.n, 1, 0, K.dynamic};
    sm_access acc[GEMM_RES] = {[GEMM_Y] = SM_RW(y), [GEMM_A] = SM_R(a), [GEMM_AS] = SM_R(a_scales),
                               [GEMM_B] = SM_R(b), [GEMM_BS] = SM_R(b_scales)};
    return sm_op_insert(c, &sm_cl_fp8_gemm_tiles, "fp8_gemm_wgrad", SM_BACKWARD_WEIGHT, -1, acc,
                        GEMM_RES, &x, sizeof x, 2.0 * M * N * K.n);
}
