/* Pure float32 kernels of the dense op families (no StarPU): embedding, RMSNorm, linear,
 * SwiGLU FFN and cross-entropy. Row-major, T rows of tokens. Forward and backward side by side;
 * saved tensors are explicit arguments. Every weight-gradient kernel ACCUMULATES (+=) into its
 * dW so micro-batches add up; `accumulate` flags choose between dx = contribution and
 * dx += contribution. Loops run in a fixed order: results never depend on threading. */
#ifndef STARMOE_DENSE_KERNELS_H
#define STARMOE_DENSE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* x[t] = E[ids[t]] ; E is [V, d]. ids are checked by the caller. */
void sm_embedding_fwd(float *x, const int32_t *ids, const float *E, int T, int d);
/* dE[ids[t]] += dx[t], t in increasing order. */
void sm_embedding_bwd(float *dE, const int32_t *ids, const float *dx, int T, int d);

/* y[t] = g * x[t] / sqrt(mean(x[t]^2) + eps); x rows have stride ldx, y is [T, n]; saves
 * rstd[t] = 1/sqrt(mean + eps). */
void sm_rmsnorm_fwd(float *y, float *rstd, const float *x, int ldx, const float *g, int T, int n,
                    float eps);
/* dx (stride lddx) = or += d/dx; dg += d/dg. */
void sm_rmsnorm_bwd(float *dx, int lddx, float *dg, const float *dy, const float *x, int ldx,
                    const float *g, const float *rstd, int T, int n, int accumulate);

/* y[T, out] = x[T, in] . W^T, W is [out, in] (CBLAS sgemm). */
void sm_linear_fwd(float *y, const float *x, const float *W, int T, int in, int out);
/* dx[T, in] (=|+=) dy[T, out] . W */
void sm_linear_bwd_input(float *dx, const float *dy, const float *W, int T, int in, int out,
                         int accumulate);
/* dW[out, in] += dy^T . x */
void sm_linear_bwd_weight(float *dW, const float *dy, const float *x, int T, int in, int out);

/* The SwiGLU's activation, elementwise over count entries: act = silu(h1) * h3; and its
 * backward, splitting dact (held in dh1) in place: dh3 = dact * silu(h1),
 * dh1 = dact * h3 * s (1 + h1 (1 - s)) with s = sigmoid(h1). */
void sm_swiglu_act(float *act, const float *h1, const float *h3, size_t count);
void sm_swiglu_grad(float *dh1, float *dh3, const float *h1, const float *h3, size_t count);

/* SwiGLU FFN: h1 = x W1^T, h3 = x W3^T, y = (silu(h1) * h3) W2^T. W1, W3 are [I, d], W2 is
 * [d, I]; x is [n, d]; saves h1, h3 [n, I] (the activation is recomputed in backward). */
void sm_swiglu_fwd(float *y, float *h1, float *h3, const float *x, const float *W1,
                   const float *W3, const float *W2, int n, int d, int I);
/* Backward for the input: writes dh1, dh3 [n, I] (kept for the weight pass) and
 * dx (=|+=) dh1 W1 + dh3 W3. */
void sm_swiglu_bwd_input(float *dx, float *dh1, float *dh3, const float *dy, const float *h1,
                         const float *h3, const float *W1, const float *W3, const float *W2,
                         int n, int d, int I, int accumulate);
/* Backward for the weights: dW1 += dh1^T x, dW3 += dh3^T x, dW2 += dy^T (silu(h1) * h3). */
void sm_swiglu_bwd_weight(float *dW1, float *dW3, float *dW2, const float *dy, const float *x,
                          const float *h1, const float *h3, const float *dh1, const float *dh3,
                          int n, int d, int I);

/* Cross-entropy over V classes for T rows. Returns sum_t -log softmax(logits[t])[targets[t]]
 * (accumulated in double) over the rows with a target (targets[t] >= 0; a negative target
 * means none: the row adds nothing and its gradient is 0). When dlogits is not NULL it
 * receives scale * (softmax(logits[t]) - onehot(targets[t])); dlogits may be logits (in
 * place). */
double sm_cross_entropy(float *dlogits, const float *logits, const int32_t *targets, int T, int V,
                        float scale);

/* out = src[0] + src[1] + ... + src[n-1], added left to right (a fixed order); with accumulate
 * out starts from its own value instead (out += src[0] + ...). src[i] must not alias out. */
void sm_sum_into(float *out, const float *const *src, int n, size_t numel, int accumulate);

/* Buckets (several tensors sent between ranks as one message): sm_pack writes
 * bucket = member[0] ++ member[1] ++ ... ++ member[n-1], member i holding numel[i] floats;
 * sm_unpack is its inverse, each member[i] = its slice of bucket. Exact copies. */
void sm_pack(float *bucket, const float *const *member, const size_t *numel, int n);
void sm_unpack(float *const *member, const size_t *numel, int n, const float *bucket);

/* Single-thread SGEMM speed on n x n matrices, timed for about `seconds`: the per-core peak the
 * trainer's MFU is measured against. */
double sm_sgemm_gflops(int n, double seconds);

#endif
