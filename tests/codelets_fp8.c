/* Codelet cases of FP8 training's casts and GEMMs (tasks/fp8.h): each cast against the
 * quantisers of base/fp8_quant.h and include/starmoe/fp8.h on shapes with partial tiles and
 * blocks, the transposed blocks against quantising W^T itself, and the GEMMs against the fast
 * kernels (with a residual, accumulating). */
#include <stdlib.h>
#include <string.h>
#include <starmoe/fp8.h>
#include "base/fp8_quant.h"
#include "tasks/fp8.h"
#include "tasks/fp8_kernels.h"
#include "tests/codelet_harness.h"

/* rows and columns with partial 128-groups */
enum { R = 130, C = 200, M = 3, N = 130, K = 200 };

static int g(int n) { return (n + SM_FP8_GROUP - 1) / SM_FP8_GROUP; }

/* A quantised operand of the case: codes [rows, cols] and their scales (tiles along rows, or
 * blocks), from random floats. */
typedef struct q8 {
    ct *codes, *scales;
} q8;

static q8 fx_q8(fx *f, const char *name, int rows, int cols, int blocks)
{
    float *x = malloc((size_t)rows * cols * sizeof *x);
    size_t ns = (size_t)(blocks ? g(rows) : rows) * g(cols);
    uint8_t *codes = malloc((size_t)rows * cols);
    float *scales = malloc(ns * sizeof *scales);
    tu_fill(&f->rng, x, (size_t)rows * cols, 1.0f);
    if (blocks) sm_fp8_quantize_blocks(x, rows, cols, codes, scales);
    else sm_fp8_quantize_tiles(x, rows, cols, codes, scales);
    char n[64];
    snprintf(n, sizeof n, "%s.fp8", name);
    q8 q = {fx_tensor(f, n, SM_U8, (size_t)rows * cols, codes), NULL};
    snprintf(n, sizeof n, "%s.scales", name);
    q.scales = fx_tensor(f, n, SM_F32, ns, scales);
    free(x);
    free(codes);
    free(scales);
    return q;
}

#define U8(x) ((uint8_t *)(x)->ref)

static const sm_fp8_rows FIXED_R = {R, 0};

static void case_fp8_quant_tiles(fx *f)
{
    ct *x = fx_rand(f, "x", R * C), *codes = fx_tensor(f, "codes", SM_U8, R * C, NULL);
    ct *scales = fx_rand(f, "scales", R * g(C));
    int rc = sm_insert_fp8_quant_tiles(&f->c, SM_FORWARD, codes->t, scales->t, x->t, FIXED_R, C);
    sm_fp8_quantize_tiles(RF(x), R, C, U8(codes), RF(scales));
    fx_check(f, "fp8_quant_tiles", rc,
             WANT("fp8_quant_tiles", 2.0 * R * C, SM_W(codes->t), SM_W(scales->t), SM_R(x->t)));
    /* a routed expert's rows: the outputs take the size of the rows x holds (R), not the
     * expected count given (7) */
    x = fx_rows(f, "x", R, C);
    codes = fx_rows_of(f, "codes", SM_U8, 0, C, NULL);
    scales = fx_rows_of(f, "scales", SM_F32, 0, g(C), NULL);
    rc = sm_insert_fp8_quant_tiles(&f->c, SM_FORWARD, codes->t, scales->t, x->t,
                                   (sm_fp8_rows){7, 1}, C);
    fx_resize(codes, R * C);
    fx_resize(scales, R * g(C));
    sm_fp8_quantize_tiles(RF(x), R, C, U8(codes), RF(scales));
    fx_check(f, "fp8_quant_tiles of rows", rc,
             WANT("fp8_quant_tiles", 2.0 * 7 * C, SM_W(codes->t), SM_W(scales->t), SM_R(x->t)));
}

static void case_fp8_quant_blocks(fx *f)
{
    ct *w = fx_rand(f, "w", R * C), *codes = fx_tensor(f, "codes", SM_U8, R * C, NULL);
    ct *scales = fx_rand(f, "scales", g(R) * g(C));
    int rc = sm_insert_fp8_quant_blocks(&f->c, codes->t, scales->t, w->t, R, C);
    sm_fp8_quantize_blocks(RF(w), R, C, U8(codes), RF(scales));
    fx_check(f, "fp8_quant_blocks", rc,
             WANT("fp8_quant_blocks", 2.0 * R * C, SM_W(codes->t), SM_W(scales->t), SM_R(w->t)));
}

static void case_fp8_transpose_blocks(fx *f)
{
    ct *w = fx_rand(f, "w", R * C);
    float *wt = malloc((size_t)R * C * sizeof *wt);
    uint8_t *codes = malloc((size_t)R * C);
    float scales[g(R) * g(C)];
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) wt[j * R + i] = RF(w)[i * C + j];
    sm_fp8_quantize_blocks(RF(w), R, C, codes, scales);
    ct *q = fx_tensor(f, "q", SM_U8, R * C, codes), *qs = fx_tensor(f, "qs", SM_F32, g(R) * g(C),
                                                                      scales);
    ct *qt = fx_tensor(f, "qt", SM_U8, R * C, NULL), *qts = fx_rand(f, "qts", g(R) * g(C));
    int rc = sm_insert_fp8_transpose_blocks(&f->c, qt->t, qts->t, q->t, qs->t, R, C);
    sm_fp8_quantize_blocks(wt, C, R, U8(qt), RF(qts));  /* W^T quantised itself */
    fx_check(f, "fp8_transpose_blocks", rc,
             WANT("fp8_transpose_blocks", 2.0 * R * C, SM_W(qt->t), SM_W(qts->t), SM_R(q->t),
                  SM_R(qs->t)));
    free(wt);
    free(codes);
}

static void case_fp8_quant_tiles_t(fx *f)
{
    ct *x = fx_rand(f, "x", R * C), *codes = fx_tensor(f, "codes", SM_U8, R * C, NULL);
    ct *scales = fx_rand(f, "scales", C * g(R));
    int rc = sm_insert_fp8_quant_tiles_t(&f->c, codes->t, scales->t, x->t, FIXED_R, C);
    sm_fp8_quantize_tiles_t(RF(x), R, C, U8(codes), RF(scales));
    fx_check(f, "fp8_quant_tiles_t", rc,
             WANT("fp8_quant_tiles_t", 2.0 * R * C, SM_W(codes->t), SM_W(scales->t),
                  SM_R(x->t)));
}

static void case_fp8_requant_t(fx *f)
{
    q8 x = fx_q8(f, "x", R, C, 0);
    ct *codes = fx_tensor(f, "codes", SM_U8, R * C, NULL), *scales = fx_rand(f, "s", C * g(R));
    float *v = malloc((size_t)R * C * sizeof *v);
    int rc = sm_insert_fp8_requant_t(&f->c, codes->t, scales->t, x.codes->t, x.scales->t,
                                     FIXED_R, C);
    sm_fp8_dequantize_tiles(v, U8(x.codes), RF(x.scales), R, C);
    sm_fp8_quantize_tiles_t(v, R, C, U8(codes), RF(scales));
    fx_check(f, "fp8_requant_t", rc,
             WANT("fp8_requant_t", 2.0 * R * C, SM_W(codes->t), SM_W(scales->t),
                  SM_R(x.codes->t), SM_R(x.scales->t)));
    free(v);
}

/* A routed expert's: A's rows (M) known when the task runs; y takes that size. */
static void fp8_gemm_rows(fx *f)
{
    q8 b = fx_q8(f, "b", N, K, 1);
    ct *y = fx_rows_of(f, "y", SM_F32, 0, N, NULL);
    float *x = malloc((size_t)M * K * sizeof *x);
    uint8_t codes[M * K];
    float scales[M * g(K)];
    tu_fill(&f->rng, x, (size_t)M * K, 1.0f);
    sm_fp8_quantize_tiles(x, M, K, codes, scales);
    ct *a = fx_rows_of(f, "a", SM_U8, M, K, codes), *as = fx_rows_of(f, "as", SM_F32, M, g(K),
                                                                     scales);
    int rc = sm_insert_fp8_gemm(&f->c, SM_FORWARD, y->t, a->t, as->t, b.codes->t, b.scales->t,
                                NULL, (sm_fp8_rows){1, 1}, N, K, 0);
    fx_resize(y, M * N);
    sm_fp8_gemm_fast(U8(a), RF(as), U8(b.codes), RF(b.scales), M, N, K, RF(y));
    fx_check(f, "fp8_gemm of rows", rc,
             WANT("fp8_gemm", 2.0 * 1 * N * K, SM_W(y->t), SM_R(a->t), SM_R(as->t),
                  SM_R(b.codes->t), SM_R(b.scales->t)));
    free(x);
}

static void case_fp8_gemm(fx *f)
{
    for (int mode = 0; mode < 3; mode++) {   /* y =, y = . + res, y += */
        q8 a = fx_q8(f, "a", M, K, 0), b = fx_q8(f, "b", N, K, 1);
        ct *y = fx_rand(f, "y", M * N), *res = fx_rand(f, "res", M * N);
        float p[M * N];
        int rc = sm_insert_fp8_gemm(&f->c, SM_FORWARD, y->t, a.codes->t, a.scales->t, b.codes->t,
                                    b.scales->t, mode == 1 ? res->t : NULL, (sm_fp8_rows){M, 0},
                                    N, K, mode == 2);
        sm_fp8_gemm_fast(U8(a.codes), RF(a.scales), U8(b.codes), RF(b.scales), M, N, K, p);
        for (int i = 0; i < M * N; i++)
            RF(y)[i] = mode == 1 ? RF(res)[i] + p[i] : mode == 2 ? RF(y)[i] + p[i] : p[i];
        const char *name = mode == 1 ? "fp8_gemm with a residual" : mode == 2
                                                                        ? "fp8_gemm accumulate"
                                                                        : "fp8_gemm";
        sm_access yacc = mode == 2 ? SM_RW(y->t) : SM_W(y->t);
        if (mode == 1)
            fx_check(f, name, rc,
                     WANT("fp8_gemm", 2.0 * M * N * K, yacc, SM_R(a.codes->t), SM_R(a.scales->t),
                          SM_R(b.codes->t), SM_R(b.scales->t), SM_R(res->t)));
        else
            fx_check(f, name, rc,
                     WANT("fp8_gemm", 2.0 * M * N * K, yacc, SM_R(a.codes->t), SM_R(a.scales->t),
                          SM_R(b.codes->t), SM_R(b.scales->t)));
    }
    fp8_gemm_rows(f);
}

static void case_fp8_gemm_tiles(fx *f)
{
    q8 a = fx_q8(f, "a", M, K, 0), b = fx_q8(f, "b", N, K, 0);
    ct *y = fx_rand(f, "y", M * N);
    float p[M * N];
    int rc = sm_insert_fp8_gemm_tiles(&f->c, y->t, a.codes->t, a.scales->t, b.codes->t,
                                      b.scales->t, M, N, (sm_fp8_rows){K, 0});
    sm_fp8_gemm_tiles_fast(U8(a.codes), RF(a.scales), U8(b.codes), RF(b.scales), M, N, K, p);
    for (int i = 0; i < M * N; i++) RF(y)[i] += p[i];
    fx_check(f, "fp8_gemm_tiles", rc,
             WANT("fp8_gemm_wgrad", 2.0 * M * N * K, SM_RW(y->t), SM_R(a.codes->t),
                  SM_R(a.scales->t), SM_R(b.codes->t), SM_R(b.scales->t)));
}

const helper_case codelet_cases_fp8[] = {
    HELPER_CASE(fp8_quant_tiles),  HELPER_CASE(fp8_quant_blocks), HELPER_CASE(fp8_transpose_blocks),
    HELPER_CASE(fp8_quant_tiles_t), HELPER_CASE(fp8_requant_t),  HELPER_CASE(fp8_gemm),
    HELPER_CASE(fp8_gemm_tiles),   {NULL, NULL}};
