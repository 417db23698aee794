/* Insert helpers of the dense op families (embedding, RMSNorm, linear, SwiGLU FFN, loss and
 * small utilities). Each picks the weakest correct access modes, names the task and gives
 * its flop count; the kernels are in dense_kernels.c. */
#ifndef STARMOE_DENSE_H
#define STARMOE_DENSE_H

#include "tasks/codelet.h"

int sm_insert_embedding_fwd(const sm_op_ctx *c, sm_tensor *x, sm_tensor *ids, sm_tensor *E,
                            int T, int d);
int sm_insert_embedding_bwd(const sm_op_ctx *c, sm_tensor *dE, sm_tensor *ids, sm_tensor *dx,
                            int T, int d);

int sm_insert_rmsnorm_fwd(const sm_op_ctx *c, sm_tensor *y, sm_tensor *rstd, sm_tensor *x,
                          int ldx, sm_tensor *g, int T, int n, float eps);
/* dx (row stride lddx) = or += the input gradient; dg += the gain gradient. */
int sm_insert_rmsnorm_bwd(const sm_op_ctx *c, sm_tensor *dx, int lddx, sm_tensor *dg,
                          sm_tensor *dy, sm_tensor *x, int ldx, sm_tensor *g, sm_tensor *rstd,
                          int T, int n, int accumulate);

/* y = x W^T, plus res when res is not NULL (a residual connection fused into the GEMM task). */
int sm_insert_linear_fwd(const sm_op_ctx *c, sm_tensor *y, sm_tensor *x, sm_tensor *W,
                         sm_tensor *res, int T, int in, int out);
int sm_insert_linear_bwd_input(const sm_op_ctx *c, sm_tensor *dx, sm_tensor *dy, sm_tensor *W,
                               int T, int in, int out, int accumulate);
int sm_insert_linear_bwd_weight(const sm_op_ctx *c, sm_tensor *dW, sm_tensor *dy, sm_tensor *x,
                                int T, int in, int out);

/* A SwiGLU FFN over n rows, or, for a routed expert (expert >= 0), over the rows of its
 * resizable input buffer, whatever their number when the task runs: the buffers it writes take
 * that number of rows, and n is the mean count the flop estimate uses. */
typedef struct sm_ffn_shape {
    int n, d, I;
    int expert;                  /* routed expert, -1 for a dense/shared FFN */
} sm_ffn_shape;

/* y = swiglu(x) (+ res) ; saves h1, h3. */
int sm_insert_swiglu_fwd(const sm_op_ctx *c, const sm_ffn_shape *s, sm_tensor *y, sm_tensor *h1,
                         sm_tensor *h3, sm_tensor *x, sm_tensor *W1, sm_tensor *W3, sm_tensor *W2,
                         sm_tensor *res);
int sm_insert_swiglu_bwd_input(const sm_op_ctx *c, const sm_ffn_shape *s, sm_tensor *dx,
                               sm_tensor *dh1, sm_tensor *dh3, sm_tensor *dy, sm_tensor *h1,
                               sm_tensor *h3, sm_tensor *W1, sm_tensor *W3, sm_tensor *W2,
                               int accumulate);
int sm_insert_swiglu_bwd_weight(const sm_op_ctx *c, const sm_ffn_shape *s, sm_tensor *dW1,
                                sm_tensor *dW3, sm_tensor *dW2, sm_tensor *dy, sm_tensor *x,
                                sm_tensor *h1, sm_tensor *h3, sm_tensor *dh1, sm_tensor *dh3);

/* The SwiGLU's activation alone (FP8 training runs the three GEMMs as tasks of their own):
 * act = silu(h1) * h3 over the s->n rows of s->I (a routed expert's: as many as h1 holds;
 * the buffers written take that size); backward: dh1 holds dact and becomes dh1, dh3 is
 * written. */
int sm_insert_swiglu_act(const sm_op_ctx *c, const sm_ffn_shape *s, sm_tensor *act,
                         sm_tensor *h1, sm_tensor *h3);
int sm_insert_swiglu_grad(const sm_op_ctx *c, const sm_ffn_shape *s, sm_tensor *dh1,
                          sm_tensor *dh3, sm_tensor *h1, sm_tensor *h3);

/* Where the backward of a SwiGLU writes: its input gradient dx (= or +=), the hidden
 * gradients dh1, dh3 (overwritten) and the weight gradients (+=). */
typedef struct sm_ffn_grads {
    sm_tensor *dx, *dh1, *dh3, *dW1, *dW3, *dW2;
} sm_ffn_grads;

/* sm_insert_swiglu_bwd_input and _weight as one task, for a full backward (BW). */
int sm_insert_swiglu_bwd(const sm_op_ctx *c, const sm_ffn_shape *s, const sm_ffn_grads *g,
                         sm_tensor *dy, sm_tensor *x, sm_tensor *h1, sm_tensor *h3, sm_tensor *W1,
                         sm_tensor *W3, sm_tensor *W2, int accumulate);

/* loss_part[0] = sum of the rows' cross-entropy; dlogits (may be NULL: forward only; may be
 * logits: the gradient overwrites them) = scale * (softmax - onehot). */
int sm_insert_cross_entropy(const sm_op_ctx *c, sm_tensor *loss_part, sm_tensor *dlogits,
                            sm_tensor *logits, sm_tensor *targets, int T, int V, float scale);
/* out[0] = scale * sum of parts[i][0], i in order (a fixed reduction order). */
int sm_insert_sum_scalars(const sm_op_ctx *c, sm_tensor *out, sm_tensor **parts, int n,
                          float scale);
/* out[0] = sum of weights[i] * parts[i][0], i in order, in double (n <= 64): the total of
 * several losses. */
int sm_insert_weighted_scalars(const sm_op_ctx *c, sm_tensor *out, sm_tensor **parts,
                               const float *weights, int n);
/* dst = src (whole tensors of one size). */
int sm_insert_copy(const sm_op_ctx *c, sm_phase phase, sm_tensor *dst, sm_tensor *src);
/* out = (or, with accumulate, +=) srcs[0] + srcs[1] + ... in that order: the reduction of a
 * gradient's copies (DualPipe's two directions, deterministic per-micro-batch copies). */
int sm_insert_sum_tensors(const sm_op_ctx *c, sm_tensor *out, sm_tensor **srcs, int n,
                          int accumulate);
/* bucket = members[0] ++ members[1] ++ ... (float tensors whose sizes add up to the bucket's):
 * several tensors sent between ranks as one message (phase comm). */
int sm_insert_pack(const sm_op_ctx *c, sm_tensor *bucket, sm_tensor **members, int n);
/* Each of members[0..n) = its slice of bucket: the inverse of sm_insert_pack. */
int sm_insert_unpack(const sm_op_ctx *c, sm_tensor *bucket, sm_tensor **members, int n);
/* t = 0 (e.g. gradients at the start of a step). */
int sm_insert_zero(const sm_op_ctx *c, sm_tensor *t);
/* An empty task reading and writing t: measures the runtime's own cost per task. */
int sm_insert_nop(const sm_op_ctx *c, sm_tensor *t);

#endif
