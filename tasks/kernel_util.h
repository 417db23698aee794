/* What every kernel file shares: the one CBLAS GEMM call (row-major, C = alpha op(A) op(B) +
 * beta C, nothing done for an empty output) and scratch allocation that aborts with a message
 * when memory runs out (the one failure a kernel cannot report). */
#ifndef STARMOE_KERNEL_UTIL_H
#define STARMOE_KERNEL_UTIL_H

#include <stddef.h>

void sm_gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc);
/* n zeroed elements of `size` bytes */
void *sm_kcalloc(size_t n, size_t size, const char *what);
/* n uninitialised floats */
float *sm_kfloats(size_t n, const char *what);

#endif
