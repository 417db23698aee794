/* The GEMM wrapper and scratch allocation shared by the kernel files. */
#include "tasks/kernel_util.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

void sm_gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M == 0 || N == 0) return;
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                transB ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void *sm_kcheck(void *p, size_t bytes, const char *what)
{
    if (!p) {
        fprintf(stderr, "starmoe: out of memory allocating %zu bytes for %s\n", bytes, what);
        abort();
    }
    return p;
}

void *sm_kcalloc(size_t n, size_t size, const char *what)
{
    return sm_kcheck(calloc(n ? n : 1, size), n * size, what);
}

float *sm_kfloats(size_t n, const char *what)
{
    return sm_kcheck(malloc((n ? n : 1) * sizeof(float)), n * sizeof(float), what);
}
