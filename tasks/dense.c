/* Codelets and insert helpers of the dense op families over the pure kernels of
 * dense_kernels.c: embedding, RMSNorm, linear, SwiGLU FFN (dense, shared and routed experts),
 * cross-entropy and the small utilities a step needs (scalar sums, zeroing, buckets). */
#include "tasks/dense.h"

#include <string.h>
#include "graph/resizable.h"
#include "tasks/dense_kernels.h"

/* ---- embedding ---- */
typedef struct { int T, d; } sm_embed_args;
enum { EMBEDDING_FWD_X, EMBEDDING_FWD_IDS, EMBEDDING_FWD_E, EMBEDDING_FWD_NBUF };
enum { EMBEDDING_BWD_DE, EMBEDDING_BWD_IDS, EMBEDDING_BWD_DX, EMBEDDING_BWD_NBUF };

static void sm_embedding_fwd_cpu(void *b[], void *arg)
{
    const sm_embed_args *a = arg;
    sm_embedding_fwd(SM_BUF(b, EMBEDDING_FWD_X, float), SM_BUF(b, EMBEDDING_FWD_IDS, int32_t),
                     SM_BUF(b, EMBEDDING_FWD_E, float), a->T, a->d);
}
SM_CODELET(embedding_fwd, sm_embedding_fwd_cpu);

static void sm_embedding_bwd_cpu(void *b[], void *arg)
{
    const sm_embed_args *a = arg;
    sm_embedding_bwd(SM_BUF(b, EMBEDDING_BWD_DE, float), SM_BUF(b, EMBEDDING_BWD_IDS, int32_t),
                     SM_BUF(b, EMBEDDING_BWD_DX, float), a->T, a->d);
}
SM_CODELET(embedding_bwd, sm_embedding_bwd_cpu);

int sm_insert_embedding_fwd(const sm_op_ctx *c, sm_tensor *x, sm_tensor *ids, sm_tensor *E,
                            int T, int d)
{
    sm_embed_args a = {T, d};
    sm_access acc[EMBEDDING_FWD_NBUF] = {
        [EMBEDDING_FWD_X] = SM_W(x), [EMBEDDING_FWD_IDS] = SM_R(ids), [EMBEDDING_FWD_E] = SM_R(E)};
    return sm_op_insert(c, &sm_cl_embedding_fwd, "embedding_fwd", SM_FORWARD, -1, acc,
                        EMBEDDING_FWD_NBUF, &a, sizeof a, (double)T * d);
}

int sm_insert_embedding_bwd(const sm_op_ctx *c, sm_tensor *dE, sm_tensor *ids, sm_tensor *dx,
                            int T, int d)
{
    sm_embed_args a = {T, d};
    sm_access acc[EMBEDDING_BWD_NBUF] = {
        [EMBEDDING_BWD_DE] = SM_RW(dE), [EMBEDDING_BWD_IDS] = SM_R(ids),
        [EMBEDDING_BWD_DX] = SM_R(dx)};
    return sm_op_insert(c, &sm_cl_embedding_bwd, "embedding_bwd", SM_BACKWARD_WEIGHT, -1, acc,
                        EMBEDDING_BWD_NBUF, &a, sizeof a, (double)T * d);
}

/* ---- RMSNorm ---- */
typedef struct { int T, n, ldx, lddx, accumulate; float eps; } sm_norm_args;
enum { RMSNORM_FWD_Y, RMSNORM_FWD_RSTD, RMSNORM_FWD_X, RMSNORM_FWD_G, RMSNORM_FWD_NBUF };
enum {
    RMSNORM_BWD_DX, RMSNORM_BWD_DG, RMSNORM_BWD_DY, RMSNORM_BWD_X, RMSNORM_BWD_G,
    RMSNORM_BWD_RSTD, RMSNORM_BWD_NBUF
};

static void sm_rmsnorm_fwd_cpu(void *b[], void *arg)
{
    const sm_norm_args *a = arg;
    sm_rmsnorm_fwd(SM_BUF(b, RMSNORM_FWD_Y, float), SM_BUF(b, RMSNORM_FWD_RSTD, float),
                   SM_BUF(b, RMSNORM_FWD_X, float), a->ldx, SM_BUF(b, RMSNORM_FWD_G, float), a->T,
                   a->n, a->eps);
}
SM_CODELET(rmsnorm_fwd, sm_rmsnorm_fwd_cpu);

static void sm_rmsnorm_bwd_cpu(void *b[], void *arg)
{
    const sm_norm_args *a = arg;
    sm_rmsnorm_bwd(SM_BUF(b, RMSNORM_BWD_DX, float), a->lddx, SM_BUF(b, RMSNORM_BWD_DG, float),
                   SM_BUF(b, RMSNORM_BWD_DY, float), SM_BUF(b, RMSNORM_BWD_X, float), a->ldx,
                   SM_BUF(b, RMSNORM_BWD_G, float), SM_BUF(b, RMSNORM_BWD_RSTD, float), a->T,
                   a->n, a->accumulate);
}
SM_CODELET(rmsnorm_bwd, sm_rmsnorm_bwd_cpu);

int sm_insert_rmsnorm_fwd(const sm_op_ctx *c, sm_tensor *y, sm_tensor *rstd, sm_tensor *x,
                          int ldx, sm_tensor *g, int T, int n, float eps)
{
    sm_norm_args a = {.T = T, .n = n, .ldx = ldx, .eps = eps};
    sm_access acc[RMSNORM_FWD_NBUF] = {[RMSNORM_FWD_Y] = SM_W(y), [RMSNORM_FWD_RSTD] = SM_W(rstd),
                                       [RMSNORM_FWD_X] = SM_R(x), [RMSNORM_FWD_G] = SM_R(g)};
    return sm_op_insert(c, &sm_cl_rmsnorm_fwd, "rmsnorm_fwd", SM_FORWARD, -1, acc,
                        RMSNORM_FWD_NBUF, &a, sizeof a, 4.0 * T * n);
}

int sm_insert_rmsnorm_bwd(const sm_op_ctx *c, sm_tensor *dx, int lddx, sm_tensor *dg,
                          sm_tensor *dy, sm_tensor *x, int ldx, sm_tensor *g, sm_tensor *rstd,
                          int T, int n, int accumulate)
{
    sm_norm_args a = {.T = T, .n = n, .ldx = ldx, .lddx = lddx, .accumulate = accumulate};
    /* rows of dx wider than n keep their other columns: then dx is read too */
    sm_access acc[RMSNORM_BWD_NBUF] = {
        [RMSNORM_BWD_DX] = SM_ACC(dx, accumulate || lddx != n), [RMSNORM_BWD_DG] = SM_RW(dg),
        [RMSNORM_BWD_DY] = SM_R(dy), [RMSNORM_BWD_X] = SM_R(x), [RMSNORM_BWD_G] = SM_R(g),
        [RMSNORM_BWD_RSTD] = SM_R(rstd)};
    return sm_op_insert(c, &sm_cl_rmsnorm_bwd, "rmsnorm_bwd", SM_BACKWARD_INPUT, -1, acc,
                        RMSNORM_BWD_NBUF, &a, sizeof a, 8.0 * T * n);
}

/* ---- linear ---- */
typedef struct { int T, in, out, accumulate, residual; } sm_linear_args;
/* the residual is the last buffer, present only with a residual */
enum { LINEAR_FWD_Y, LINEAR_FWD_X, LINEAR_FWD_W, LINEAR_FWD_RES, LINEAR_FWD_NBUF };
enum { LINEAR_BWD_INPUT_DX, LINEAR_BWD_INPUT_DY, LINEAR_BWD_INPUT_W, LINEAR_BWD_INPUT_NBUF };
enum { LINEAR_BWD_WEIGHT_DW, LINEAR_BWD_WEIGHT_DY, LINEAR_BWD_WEIGHT_X, LINEAR_BWD_WEIGHT_NBUF };

static void sm_linear_fwd_cpu(void *b[], void *arg)
{
    const sm_linear_args *a = arg;
    float *y = SM_BUF(b, LINEAR_FWD_Y, float);
    sm_linear_fwd(y, SM_BUF(b, LINEAR_FWD_X, float), SM_BUF(b, LINEAR_FWD_W, float), a->T, a->in,
                  a->out);
    if (a->residual) {
        const float *res = SM_BUF(b, LINEAR_FWD_RES, float);
        for (size_t i = 0, n = (size_t)a->T * a->out; i < n; i++) y[i] += res[i];
    }
}
SM_CODELET(linear_fwd, sm_linear_fwd_cpu);

static void sm_linear_bwd_input_cpu(void *b[], void *arg)
{
    const sm_linear_args *a = arg;
    sm_linear_bwd_input(SM_BUF(b, LINEAR_BWD_INPUT_DX, float),
                        SM_BUF(b, LINEAR_BWD_INPUT_DY, float),
                        SM_BUF(b, LINEAR_BWD_INPUT_W, float), a->T, a->in, a->out, a->accumulate);
}
SM_CODELET(linear_bwd_input, sm_linear_bwd_input_cpu);

static void sm_linear_bwd_weight_cpu(void *b[], void *arg)
{
    const sm_linear_args *a = arg;
    sm_linear_bwd_weight(SM_BUF(b, LINEAR_BWD_WEIGHT_DW, float),
                         SM_BUF(b, LINEAR_BWD_WEIGHT_DY, float),
                         SM_BUF(b, LINEAR_BWD_WEIGHT_X, float), a->T, a->in, a->out);
}
SM_CODELET(linear_bwd_weight, sm_linear_bwd_weight_cpu);

int sm_insert_linear_fwd(const sm_op_ctx *c, sm_tensor *y, sm_tensor *x, sm_tensor *W,
                         sm_tensor *res, int T, int in, int out)
{
    sm_linear_args a = {.T = T, .in = in, .out = out, .residual = res != NULL};
    sm_access acc[LINEAR_FWD_NBUF] = {[LINEAR_FWD_Y] = SM_W(y), [LINEAR_FWD_X] = SM_R(x),
                                      [LINEAR_FWD_W] = SM_R(W), [LINEAR_FWD_RES] = SM_R(res)};
    return sm_op_insert(c, &sm_cl_linear_fwd, "linear_fwd", SM_FORWARD, -1, acc,
                        res ? LINEAR_FWD_NBUF : LINEAR_FWD_RES, &a, sizeof a, 2.0 * T * in * out);
}

int sm_insert_linear_bwd_input(const sm_op_ctx *c, sm_tensor *dx, sm_tensor *dy, sm_tensor *W,
                               int T, int in, int out, int accumulate)
{
    sm_linear_args a = {.T = T, .in = in, .out = out, .accumulate = accumulate};
    sm_access acc[LINEAR_BWD_INPUT_NBUF] = {[LINEAR_BWD_INPUT_DX] = SM_ACC(dx, accumulate),
                                            [LINEAR_BWD_INPUT_DY] = SM_R(dy),
                                            [LINEAR_BWD_INPUT_W] = SM_R(W)};
    return sm_op_insert(c, &sm_cl_linear_bwd_input, "linear_bwd_input", SM_BACKWARD_INPUT, -1,
                        acc, LINEAR_BWD_INPUT_NBUF, &a, sizeof a, 2.0 * T * in * out);
}

int sm_insert_linear_bwd_weight(const sm_op_ctx *c, sm_tensor *dW, sm_tensor *dy, sm_tensor *x,
                                int T, int in, int out)
{
    sm_linear_args a = {.T = T, .in = in, .out = out};
    sm_access acc[LINEAR_BWD_WEIGHT_NBUF] = {[LINEAR_BWD_WEIGHT_DW] = SM_RW(dW),
                                             [LINEAR_BWD_WEIGHT_DY] = SM_R(dy),
                                             [LINEAR_BWD_WEIGHT_X] = SM_R(x)};
    return sm_op_insert(c, &sm_cl_linear_bwd_weight, "linear_bwd_weight", SM_BACKWARD_WEIGHT, -1,
                        acc, LINEAR_BWD_WEIGHT_NBUF, &a, sizeof a, 2.0 * T * in * out);
}

/* ---- SwiGLU FFN (dense, shared, or one routed expert) ---- */
typedef struct { sm_ffn_shape s; int accumulate, residual; } sm_ffn_args;
/* the residual is present only with a residual */
enum {
    SWIGLU_FWD_Y, SWIGLU_FWD_H1, SWIGLU_FWD_H3, SWIGLU_FWD_X, SWIGLU_FWD_W1, SWIGLU_FWD_W3,
    SWIGLU_FWD_W2, SWIGLU_FWD_RES, SWIGLU_FWD_NBUF
};
enum {
    SWIGLU_BWD_INPUT_DX, SWIGLU_BWD_INPUT_DH1, SWIGLU_BWD_INPUT_DH3, SWIGLU_BWD_INPUT_DY,
    SWIGLU_BWD_INPUT_H1, SWIGLU_BWD_INPUT_H3, SWIGLU_BWD_INPUT_W1, SWIGLU_BWD_INPUT_W3,
    SWIGLU_BWD_INPUT_W2, SWIGLU_BWD_INPUT_NBUF
};
enum {
    SWIGLU_BWD_WEIGHT_DW1, SWIGLU_BWD_WEIGHT_DW3, SWIGLU_BWD_WEIGHT_DW2, SWIGLU_BWD_WEIGHT_DY,
    SWIGLU_BWD_WEIGHT_X, SWIGLU_BWD_WEIGHT_H1, SWIGLU_BWD_WEIGHT_H3, SWIGLU_BWD_WEIGHT_DH1,
    SWIGLU_BWD_WEIGHT_DH3, SWIGLU_BWD_WEIGHT_NBUF
};
enum {
    SWIGLU_BWD_DX, SWIGLU_BWD_DH1, SWIGLU_BWD_DH3, SWIGLU_BWD_DW1, SWIGLU_BWD_DW3, SWIGLU_BWD_DW2,
    SWIGLU_BWD_DY, SWIGLU_BWD_X, SWIGLU_BWD_H1, SWIGLU_BWD_H3, SWIGLU_BWD_W1, SWIGLU_BWD_W3,
    SWIGLU_BWD_W2, SWIGLU_BWD_NBUF
};

/* The rows a task works on: a routed expert's, as many as its row buffer `slot` (d columns)
 * holds; otherwise all n. */
static int sm_ffn_rows_of(void *b[], const sm_ffn_args *a, int slot)
{
    if (a->s.expert < 0) return a->s.n;
    return (int)(STARPU_VECTOR_GET_NX(b[slot]) / (size_t)a->s.d);
}

/* Row buffer `slot` written by the task, of n rows of d (wide = 0) or I (wide = 1) columns: a
 * routed expert's resizable buffer takes that size. */
static float *sm_ffn_out_buf(void *b[], int slot, const sm_ffn_args *a, int n, int wide)
{
    if (a->s.expert < 0) return SM_BUF(b, slot, float);
    return sm_resizable_resize(b[slot], (size_t)n * (wide ? a->s.I : a->s.d));
}

#define FFN_IN(slot) SM_BUF(b, slot, float)
#define FFN_OUT_D(slot) sm_ffn_out_buf(b, slot, a, n, 0)
#define FFN_OUT_I(slot) sm_ffn_out_buf(b, slot, a, n, 1)

static void sm_swiglu_fwd_cpu(void *b[], void *arg)
{
    const sm_ffn_args *a = arg;
    int n = sm_ffn_rows_of(b, a, SWIGLU_FWD_X);
    float *y = FFN_OUT_D(SWIGLU_FWD_Y);
    sm_swiglu_fwd(y, FFN_OUT_I(SWIGLU_FWD_H1), FFN_OUT_I(SWIGLU_FWD_H3), FFN_IN(SWIGLU_FWD_X),
                  SM_BUF(b, SWIGLU_FWD_W1, float), SM_BUF(b, SWIGLU_FWD_W3, float),
                  SM_BUF(b, SWIGLU_FWD_W2, float), n, a->s.d, a->s.I);
    if (a->residual) {
        const float *res = SM_BUF(b, SWIGLU_FWD_RES, float);
        for (size_t i = 0, m = (size_t)n * a->s.d; i < m; i++) y[i] += res[i];
    }
}
SM_CODELET(swiglu_fwd, sm_swiglu_fwd_cpu);

static void sm_swiglu_bwd_input_cpu(void *b[], void *arg)
{
    const sm_ffn_args *a = arg;
    int n = sm_ffn_rows_of(b, a, SWIGLU_BWD_INPUT_DY);
    sm_swiglu_bwd_input(FFN_OUT_D(SWIGLU_BWD_INPUT_DX), FFN_OUT_I(SWIGLU_BWD_INPUT_DH1),
                        FFN_OUT_I(SWIGLU_BWD_INPUT_DH3), FFN_IN(SWIGLU_BWD_INPUT_DY),
                        FFN_IN(SWIGLU_BWD_INPUT_H1), FFN_IN(SWIGLU_BWD_INPUT_H3),
                        SM_BUF(b, SWIGLU_BWD_INPUT_W1, float),
                        SM_BUF(b, SWIGLU_BWD_INPUT_W3, float),
                        SM_BUF(b, SWIGLU_BWD_INPUT_W2, float), n, a->s.d, a->s.I,
                        a->accumulate);
}
SM_CODELET(swiglu_bwd_input, sm_swiglu_bwd_input_cpu);

static void sm_swiglu_bwd_weight_cpu(void *b[], void *arg)
{
    const sm_ffn_args *a = arg;
    sm_swiglu_bwd_weight(SM_BUF(b, SWIGLU_BWD_WEIGHT_DW1, float),
                         SM_BUF(b, SWIGLU_BWD_WEIGHT_DW3, float),
                         SM_BUF(b, SWIGLU_BWD_WEIGHT_DW2, float), FFN_IN(SWIGLU_BWD_WEIGHT_DY),
                         FFN_IN(SWIGLU_BWD_WEIGHT_X), FFN_IN(SWIGLU_BWD_WEIGHT_H1),
                         FFN_IN(SWIGLU_BWD_WEIGHT_H3), FFN_IN(SWIGLU_BWD_WEIGHT_DH1),
                         FFN_IN(SWIGLU_BWD_WEIGHT_DH3), sm_ffn_rows_of(b, a, SWIGLU_BWD_WEIGHT_DY),
                         a->s.d, a->s.I);
}
SM_CODELET(swiglu_bwd_weight, sm_swiglu_bwd_weight_cpu);

/* Both backwards in one task (no pipeline defers W): the activations and their gradients are
 * still in cache for the weight gradients. Same kernels, same order: same results as the two
 * tasks. */
static void sm_swiglu_bwd_cpu(void *b[], void *arg)
{
    const sm_ffn_args *a = arg;
    int n = sm_ffn_rows_of(b, a, SWIGLU_BWD_DY);
    float *dh1 = FFN_OUT_I(SWIGLU_BWD_DH1), *dh3 = FFN_OUT_I(SWIGLU_BWD_DH3);
    const float *dy = FFN_IN(SWIGLU_BWD_DY), *x = FFN_IN(SWIGLU_BWD_X);
    const float *h1 = FFN_IN(SWIGLU_BWD_H1), *h3 = FFN_IN(SWIGLU_BWD_H3);
    sm_swiglu_bwd_input(FFN_OUT_D(SWIGLU_BWD_DX), dh1, dh3, dy, h1, h3,
                        SM_BUF(b, SWIGLU_BWD_W1, float), SM_BUF(b, SWIGLU_BWD_W3, float),
                        SM_BUF(b, SWIGLU_BWD_W2, float), n, a->s.d, a->s.I, a->accumulate);
    sm_swiglu_bwd_weight(SM_BUF(b, SWIGLU_BWD_DW1, float), SM_BUF(b, SWIGLU_BWD_DW3, float),
                         SM_BUF(b, SWIGLU_BWD_DW2, float), dy, x, h1, h3, dh1, dh3, n, a->s.d,
                         a->s.I);
}
SM_CODELET(swiglu_bwd, sm_swiglu_bwd_cpu);

/* A routed expert's input gradient cannot accumulate: its buffer takes the size of its rows. */
static int sm_ffn_check_accumulate(const sm_op_ctx *c, const sm_ffn_shape *s, int accumulate)
{
    return s->expert >= 0 && accumulate
               ? sm_fail(c->err, "swiglu backward of routed expert %d: an expert's input "
                                 "gradient is written, never accumulated", s->expert)
               : 0;
}

static double sm_ffn_flops(const sm_ffn_shape *s, double gemms)
{
    return gemms * 2.0 * s->n * s->d * s->I;
}

/* The op name of a SwiGLU task: "expert_<what>" for a routed expert, "ffn_<what>" otherwise. */
static const char *sm_ffn_op(const sm_ffn_shape *s, const char *expert_op, const char *ffn_op)
{
    return s->expert >= 0 ? expert_op : ffn_op;
}

/* ---- the SwiGLU activation alone ---- */
enum { SWIGLU_ACT_OUT, SWIGLU_ACT_H1, SWIGLU_ACT_H3, SWIGLU_ACT_NBUF };
enum { SWIGLU_GRAD_DH1, SWIGLU_GRAD_DH3, SWIGLU_GRAD_H1, SWIGLU_GRAD_H3, SWIGLU_GRAD_NBUF };

/* The entries of an activation task: its rows (a routed expert's: h1's) times I. */
static size_t sm_act_count(void *b[], const sm_ffn_args *a, int h1_slot)
{
    return a->s.expert >= 0 ? STARPU_VECTOR_GET_NX(b[h1_slot]) : (size_t)a->s.n * a->s.I;
}

static void sm_swiglu_act_cpu(void *b[], void *arg)
{
    const sm_ffn_args *a = arg;
    size_t n = sm_act_count(b, a, SWIGLU_ACT_H1);
    float *act = a->s.expert >= 0 ? sm_resizable_resize(b[SWIGLU_ACT_OUT], n)
                                  : SM_BUF(b, SWIGLU_ACT_OUT, float);
    sm_swiglu_act(act, SM_BUF(b, SWIGLU_ACT_H1, float), SM_BUF(b, SWIGLU_ACT_H3, float), n);
}
SM_CODELET(swiglu_act, sm_swiglu_act_cpu);

static void sm_swiglu_grad_cpu(void *b[], void *arg)
{
    const sm_ffn_args *a = arg;
    size_t n = sm_act_count(b, a, SWIGLU_GRAD_H1);
    float *dh3 = a->s.expert >= 0 ? sm_resizable_resize(b[SWIGLU_GRAD_DH3], n)
                                  : SM_BUF(b, SWIGLU_GRAD_DH3, float);
    sm_swiglu_grad(SM_BUF(b, SWIGLU_GRAD_DH1, float), dh3, SM_BUF(b, SWIGLU_GRAD_H1, float),
                   SM_BUF(b, SWIGLU_GRAD_H3, float), n);
}
SM_CODELET(swiglu_grad, sm_swiglu_grad_cpu);

int sm_insert_swiglu_act(const sm_op_ctx *c, const sm_ffn_shape *s, sm_tensor *act,
                         sm_tensor *h1, sm_tensor *h3)
{
    sm_ffn_args a = {.s = *s};
    sm_access acc[SWIGLU_ACT_NBUF] = {[SWIGLU_ACT_OUT] = SM_W(act), [SWIGLU_ACT_H1] = SM_R(h1),
                                      [SWIGLU_ACT_H3] = SM_R(h3)};
    return sm_op_insert(c, &sm_cl_swiglu_act, "swiglu_act", SM_FORWARD, s->expert, acc,
                        SWIGLU_ACT_NBUF, &a, sizeof a, 6.0 * s->n * s->I);
}

int sm_insert_swiglu_grad(const sm_op_ctx *c, const sm_ffn_shape *s, sm_tensor *dh1,
                          sm_tensor *dh3, sm_tensor *h1, sm_tensor *h3)
{
    sm_ffn_args a = {.s = *s};
    sm_access acc[SWIGLU_GRAD_NBUF] = {[SWIGLU_GRAD_DH1] = SM_RW(dh1),
                                       [SWIGLU_GRAD_DH3] = SM_W(dh3),
                                       [SWIGLU_GRAD_H1] = SM_R(h1), [SWIGLU_GRAD_H3] = SM_R(h3)};
    return sm_op_insert(c, &sm_cl_swiglu_grad, "swiglu_grad", SM_BACKWARD_INPUT, s->expert, acc,
                        SWIGLU_GRAD_NBUF, &a, sizeof a, 10.0 * s->n * s->I);
}

int sm_insert_swiglu_fwd(const sm_op_ctx *c, const sm_ffn_shape *s, sm_tensor *y, sm_tensor *h1,
                         sm_tensor *h3, sm_tensor *x, sm_tensor *W1, sm_tensor *W3, sm_tensor *W2,
                         sm_tensor *res)
{
    sm_ffn_args a = {.residual = res != NULL};
    sm_access acc[SWIGLU_FWD_NBUF] = {
        [SWIGLU_FWD_Y] = SM_W(y), [SWIGLU_FWD_H1] = SM_W(h1),
        [SWIGLU_FWD_H3] = SM_W(h3),
        [SWIGLU_FWD_X] = SM_R(x), [SWIGLU_FWD_W1] = SM_R(W1), [SWIGLU_FWD_W3] = SM_R(W3),
        [SWIGLU_FWD_W2] = SM_R(W2), [SWIGLU_FWD_RES] = SM_R(res)};
    a.s = *s;
    return sm_op_insert(c, &sm_cl_swiglu_fwd, sm_ffn_op(s, "expert_fwd", "ffn_fwd"), SM_FORWARD,
                        s->expert, acc, res ? SWIGLU_FWD_NBUF : SWIGLU_FWD_RES, &a, sizeof a,
                        sm_ffn_flops(s, 3));
}

int sm_insert_swiglu_bwd_input(const sm_op_ctx *c, const sm_ffn_shape *s, sm_tensor *dx,
                               sm_tensor *dh1, sm_tensor *dh3, sm_tensor *dy, sm_tensor *h1,
                               sm_tensor *h3, sm_tensor *W1, sm_tensor *W3, sm_tensor *W2,
                               int accumulate)
{
    if (sm_ffn_check_accumulate(c, s, accumulate)) return -1;
    sm_ffn_args a = {.accumulate = accumulate};
    sm_access acc[SWIGLU_BWD_INPUT_NBUF] = {
        [SWIGLU_BWD_INPUT_DX] = SM_ACC(dx, accumulate),
        [SWIGLU_BWD_INPUT_DH1] = SM_W(dh1),
        [SWIGLU_BWD_INPUT_DH3] = SM_W(dh3), [SWIGLU_BWD_INPUT_DY] = SM_R(dy),
        [SWIGLU_BWD_INPUT_H1] = SM_R(h1), [SWIGLU_BWD_INPUT_H3] = SM_R(h3),
        [SWIGLU_BWD_INPUT_W1] = SM_R(W1), [SWIGLU_BWD_INPUT_W3] = SM_R(W3),
        [SWIGLU_BWD_INPUT_W2] = SM_R(W2)};
    a.s = *s;
    return sm_op_insert(c, &sm_cl_swiglu_bwd_input,
                        sm_ffn_op(s, "expert_bwd_input", "ffn_bwd_input"), SM_BACKWARD_INPUT,
                        s->expert, acc, SWIGLU_BWD_INPUT_NBUF, &a, sizeof a, sm_ffn_flops(s, 3));
}

int sm_insert_swiglu_bwd_weight(const sm_op_ctx *c, const sm_ffn_shape *s, sm_tensor *dW1,
                                sm_tensor *dW3, sm_tensor *dW2, sm_tensor *dy, sm_tensor *x,
                                sm_tensor *h1, sm_tensor *h3, sm_tensor *dh1, sm_tensor *dh3)
{
    sm_ffn_args a = {0};
    sm_access acc[SWIGLU_BWD_WEIGHT_NBUF] = {
        [SWIGLU_BWD_WEIGHT_DW1] = SM_RW(dW1), [SWIGLU_BWD_WEIGHT_DW3] = SM_RW(dW3),
        [SWIGLU_BWD_WEIGHT_DW2] = SM_RW(dW2), [SWIGLU_BWD_WEIGHT_DY] = SM_R(dy),
        [SWIGLU_BWD_WEIGHT_X] = SM_R(x), [SWIGLU_BWD_WEIGHT_H1] = SM_R(h1),
        [SWIGLU_BWD_WEIGHT_H3] = SM_R(h3), [SWIGLU_BWD_WEIGHT_DH1] = SM_R(dh1),
        [SWIGLU_BWD_WEIGHT_DH3] = SM_R(dh3)};
    a.s = *s;
    return sm_op_insert(c, &sm_cl_swiglu_bwd_weight,
                        sm_ffn_op(s, "expert_bwd_weight", "ffn_bwd_weight"), SM_BACKWARD_WEIGHT,
                        s->expert, acc, SWIGLU_BWD_WEIGHT_NBUF, &a, sizeof a,
                        sm_ffn_flops(s, 3));
}

int sm_insert_swiglu_bwd(const sm_op_ctx *c, const sm_ffn_shape *s, const sm_ffn_grads *g,
                         sm_tensor *dy, sm_tensor *x, sm_tensor *h1, sm_tensor *h3, sm_tensor *W1,
                         sm_tensor *W3, sm_tensor *W2, int accumulate)
{
    if (sm_ffn_check_accumulate(c, s, accumulate)) return -1;
    sm_ffn_args a = {.accumulate = accumulate};
    sm_access acc[SWIGLU_BWD_NBUF] = {
        [SWIGLU_BWD_DX] = SM_ACC(g->dx, accumulate),
        [SWIGLU_BWD_DH1] = SM_W(g->dh1), [SWIGLU_BWD_DH3] = SM_W(g->dh3),
        [SWIGLU_BWD_DW1] = SM_RW(g->dW1),
        [SWIGLU_BWD_DW3] = SM_RW(g->dW3), [SWIGLU_BWD_DW2] = SM_RW(g->dW2),
        [SWIGLU_BWD_DY] = SM_R(dy), [SWIGLU_BWD_X] = SM_R(x), [SWIGLU_BWD_H1] = SM_R(h1),
        [SWIGLU_BWD_H3] = SM_R(h3), [SWIGLU_BWD_W1] = SM_R(W1), [SWIGLU_BWD_W3] = SM_R(W3),
        [SWIGLU_BWD_W2] = SM_R(W2)};
    a.s = *s;
    return sm_op_insert(c, &sm_cl_swiglu_bwd, sm_ffn_op(s, "expert_bwd", "ffn_bwd"),
                        SM_BACKWARD_INPUT, s->expert, acc, SWIGLU_BWD_NBUF, &a, sizeof a,
                        sm_ffn_flops(s, 6));
}

/* ---- loss and utilities ---- */
typedef struct { int T, V, with_grad, in_place; float scale; } sm_ce_args;
/* dlogits is present only with a gradient that does not overwrite the logits */
enum {
    CROSS_ENTROPY_LOSS, CROSS_ENTROPY_LOGITS, CROSS_ENTROPY_TARGETS, CROSS_ENTROPY_DLOGITS,
    CROSS_ENTROPY_NBUF
};

static void sm_cross_entropy_cpu(void *b[], void *arg)
{
    const sm_ce_args *a = arg;
    float *logits = SM_BUF(b, CROSS_ENTROPY_LOGITS, float);
    float *dlogits = a->in_place    ? logits
                     : a->with_grad ? SM_BUF(b, CROSS_ENTROPY_DLOGITS, float)
                                    : NULL;
    SM_BUF(b, CROSS_ENTROPY_LOSS, float)[0] =
        (float)sm_cross_entropy(dlogits, logits,
                                SM_BUF(b, CROSS_ENTROPY_TARGETS, int32_t), a->T, a->V, a->scale);
}
SM_CODELET(cross_entropy, sm_cross_entropy_cpu);

int sm_insert_cross_entropy(const sm_op_ctx *c, sm_tensor *loss_part, sm_tensor *dlogits,
                            sm_tensor *logits, sm_tensor *targets, int T, int V, float scale)
{
    int in_place = dlogits == logits, separate = dlogits && !in_place;
    sm_ce_args a = {T, V, dlogits != NULL, in_place, scale};
    sm_access acc[CROSS_ENTROPY_NBUF] = {
        [CROSS_ENTROPY_LOSS] = SM_W(loss_part),
        [CROSS_ENTROPY_LOGITS] = in_place ? SM_RW(logits) : SM_R(logits),
        [CROSS_ENTROPY_TARGETS] = SM_R(targets), [CROSS_ENTROPY_DLOGITS] = SM_W(dlogits)};
    return sm_op_insert(c, &sm_cl_cross_entropy, "cross_entropy", SM_FORWARD, -1, acc,
                        separate ? CROSS_ENTROPY_NBUF : CROSS_ENTROPY_DLOGITS, &a, sizeof a,
                        5.0 * T * V);
}

typedef struct { int n; float scale; } sm_sum_args;
/* parts[i] is slot SUM_SCALARS_PARTS + i */
enum { SUM_SCALARS_OUT, SUM_SCALARS_PARTS };

static void sm_sum_scalars_cpu(void *b[], void *arg)
{
    const sm_sum_args *a = arg;
    double s = 0;
    for (int i = 0; i < a->n; i++) s += SM_BUF(b, SUM_SCALARS_PARTS + i, float)[0];
    SM_BUF(b, SUM_SCALARS_OUT, float)[0] = (float)(s * a->scale);
}
SM_CODELET(sum_scalars, sm_sum_scalars_cpu);

int sm_insert_sum_scalars(const sm_op_ctx *c, sm_tensor *out, sm_tensor **parts, int n,
                          float scale)
{
    sm_sum_args a = {n, scale};
    sm_access acc[SUM_SCALARS_PARTS + n];
    acc[SUM_SCALARS_OUT] = SM_W(out);
    for (int i = 0; i < n; i++) acc[SUM_SCALARS_PARTS + i] = SM_R(parts[i]);
    return sm_op_insert(c, &sm_cl_sum_scalars, "sum_scalars", SM_FORWARD, -1, acc,
                        SUM_SCALARS_PARTS + n, &a, sizeof a, n);
}

/* parts[i] is slot WEIGHTED_PARTS + i */
#define SM_WEIGHTED_MAX 64
typedef struct { int n; float w[SM_WEIGHTED_MAX]; } sm_weighted_args;
enum { WEIGHTED_OUT, WEIGHTED_PARTS };

static void sm_weighted_scalars_cpu(void *b[], void *arg)
{
    const sm_weighted_args *a = arg;
    double s = 0;
    for (int i = 0; i < a->n; i++) s += (double)a->w[i] * SM_BUF(b, WEIGHTED_PARTS + i, float)[0];
    SM_BUF(b, WEIGHTED_OUT, float)[0] = (float)s;
}
SM_CODELET(weighted_scalars, sm_weighted_scalars_cpu);

int sm_insert_weighted_scalars(const sm_op_ctx *c, sm_tensor *out, sm_tensor **parts,
                               const float *weights, int n)
{
    sm_weighted_args a = {.n = n};
    if (n < 1 || n > SM_WEIGHTED_MAX)
        return sm_fail(c->err, "weighted sum: %d parts, expected 1 to %d", n, SM_WEIGHTED_MAX);
    sm_access acc[WEIGHTED_PARTS + n];
    acc[WEIGHTED_OUT] = SM_W(out);
    for (int i = 0; i < n; i++) {
        a.w[i] = weights[i];
        acc[WEIGHTED_PARTS + i] = SM_R(parts[i]);
    }
    return sm_op_insert(c, &sm_cl_weighted_scalars, "weighted_scalars", SM_FORWARD, -1, acc,
                        WEIGHTED_PARTS + n, &a, sizeof a, 2.0 * n);
}

enum { COPY_DST, COPY_SRC, COPY_NBUF };

static void sm_copy_cpu(void *b[], void *arg)
{
    (void)arg;
    memcpy(SM_BUF(b, COPY_DST, void), SM_BUF(b, COPY_SRC, void),
           (size_t)STARPU_VECTOR_GET_NX(b[COPY_DST]) * STARPU_VECTOR_GET_ELEMSIZE(b[COPY_DST]));
}
SM_CODELET(copy, sm_copy_cpu);

int sm_insert_copy(const sm_op_ctx *c, sm_phase phase, sm_tensor *dst, sm_tensor *src)
{
    sm_access acc[COPY_NBUF] = {[COPY_DST] = SM_W(dst), [COPY_SRC] = SM_R(src)};
    if (sm_tensor_bytes(dst) != sm_tensor_bytes(src))
        return sm_fail(c->err, "copy: %s (%zu bytes) and %s (%zu bytes) differ in size",
                       dst->name, sm_tensor_bytes(dst), src->name, sm_tensor_bytes(src));
    return sm_op_insert(c, &sm_cl_copy, "copy", phase, -1, acc, COPY_NBUF, NULL, 0, 0);
}

typedef struct { int n, accumulate; } sm_sum_tensors_args;
/* srcs[i] is slot SUM_TENSORS_SRCS + i */
enum { SUM_TENSORS_OUT, SUM_TENSORS_SRCS };

static void sm_sum_tensors_cpu(void *b[], void *arg)
{
    const sm_sum_tensors_args *a = arg;
    const float *src[a->n > 0 ? a->n : 1];
    for (int i = 0; i < a->n; i++) src[i] = SM_BUF(b, SUM_TENSORS_SRCS + i, float);
    sm_sum_into(SM_BUF(b, SUM_TENSORS_OUT, float), src, a->n,
                STARPU_VECTOR_GET_NX(b[SUM_TENSORS_OUT]), a->accumulate);
}
SM_CODELET(sum_tensors, sm_sum_tensors_cpu);

int sm_insert_sum_tensors(const sm_op_ctx *c, sm_tensor *out, sm_tensor **srcs, int n,
                          int accumulate)
{
    sm_sum_tensors_args a = {n, accumulate};
    sm_access acc[SUM_TENSORS_SRCS + n];
    acc[SUM_TENSORS_OUT] = SM_ACC(out, accumulate);
    for (int i = 0; i < n; i++) acc[SUM_TENSORS_SRCS + i] = SM_R(srcs[i]);
    return sm_op_insert(c, &sm_cl_sum_tensors, "grad_reduce", SM_COMM, -1, acc,
                        SUM_TENSORS_SRCS + n, &a, sizeof a, (double)n * out->numel);
}

/* ---- buckets: one message for several tensors ---- */
typedef struct { int n; } sm_bucket_args;
/* member i is slot BUCKET_MEMBERS + i */
enum { BUCKET_T, BUCKET_MEMBERS };

/* The members' pointers and sizes of a pack or unpack task's buffers. */
static void sm_bucket_members(void *b[], int n, float **member, size_t *numel)
{
    for (int i = 0; i < n; i++) {
        member[i] = SM_BUF(b, BUCKET_MEMBERS + i, float);
        numel[i] = STARPU_VECTOR_GET_NX(b[BUCKET_MEMBERS + i]);
    }
}

static void sm_pack_cpu(void *b[], void *arg)
{
    const sm_bucket_args *a = arg;
    float *member[a->n];
    size_t numel[a->n];
    sm_bucket_members(b, a->n, member, numel);
    sm_pack(SM_BUF(b, BUCKET_T, float), (const float *const *)member, numel, a->n);
}
SM_CODELET(pack, sm_pack_cpu);

static void sm_unpack_cpu(void *b[], void *arg)
{
    const sm_bucket_args *a = arg;
    float *member[a->n];
    size_t numel[a->n];
    sm_bucket_members(b, a->n, member, numel);
    sm_unpack(member, numel, a->n, SM_BUF(b, BUCKET_T, float));
}
SM_CODELET(unpack, sm_unpack_cpu);

/* Inserts a pack (pack = 1) or unpack task between bucket and its n members, whose sizes
 * must add up to the bucket's. */
static int sm_insert_bucket(const sm_op_ctx *c, int pack, sm_tensor *bucket, sm_tensor **members,
                            int n)
{
    sm_bucket_args a = {n};
    sm_access acc[BUCKET_MEMBERS + n];
    size_t numel = 0;
    acc[BUCKET_T] = pack ? SM_W(bucket) : SM_R(bucket);
    for (int i = 0; i < n; i++) {
        acc[BUCKET_MEMBERS + i] = pack ? SM_R(members[i]) : SM_W(members[i]);
        numel += members[i]->numel;
    }
    const char *op = pack ? "pack" : "unpack";
    if (n < 1 || numel != bucket->numel)
        return sm_fail(c->err, "%s: bucket %s holds %zu floats, its %d members %zu", op,
                       bucket->name, bucket->numel, n, numel);
    return sm_op_insert(c, pack ? &sm_cl_pack : &sm_cl_unpack, op, SM_COMM, -1, acc,
                        BUCKET_MEMBERS + n, &a, sizeof a, 0);
}

int sm_insert_pack(const sm_op_ctx *c, sm_tensor *bucket, sm_tensor **members, int n)
{
    return sm_insert_bucket(c, 1, bucket, members, n);
}

int sm_insert_unpack(const sm_op_ctx *c, sm_tensor *bucket, sm_tensor **members, int n)
{
    return sm_insert_bucket(c, 0, bucket, members, n);
}

enum { ZERO_T, ZERO_NBUF };

static void sm_zero_cpu(void *b[], void *arg)
{
    memset(SM_BUF(b, ZERO_T, void), 0,
           (size_t)STARPU_VECTOR_GET_NX(b[ZERO_T]) * STARPU_VECTOR_GET_ELEMSIZE(b[ZERO_T]));
}
SM_CODELET(zero, sm_zero_cpu);

int sm_insert_zero(const sm_op_ctx *c, sm_tensor *t)
{
    sm_access acc[ZERO_NBUF] = {[ZERO_T] = SM_W(t)};
    return sm_op_insert(c, &sm_cl_zero, "zero", SM_OPTIMIZER, -1, acc, ZERO_NBUF, NULL, 0, 0);
}

enum { NOP_T, NOP_NBUF };

static void sm_nop_cpu(void *b[], void *arg) { (void)b; (void)arg; }
SM_CODELET(nop, sm_nop_cpu);

int sm_insert_nop(const sm_op_ctx *c, sm_tensor *t)
{
    sm_access acc[NOP_NBUF] = {[NOP_T] = SM_RW(t)};
    return sm_op_insert(c, &sm_cl_nop, "nop", SM_FORWARD, -1, acc, NOP_NBUF, NULL, 0, 0);
}
