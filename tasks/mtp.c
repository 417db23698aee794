/* Codelets and insert helpers of the MTP glue ops over the kernels of mtp_kernels.c. */
#include "tasks/mtp.h"

#include "tasks/mtp_kernels.h"

/* ---- the first positions of each sequence ---- */
typedef struct { int B, S, n, d, accumulate; } sm_seq_head_args;
enum { SEQ_HEAD_OUT, SEQ_HEAD_IN, SEQ_HEAD_NBUF };

static void sm_seq_head_fwd_cpu(void *b[], void *arg)
{
    const sm_seq_head_args *a = arg;
    sm_seq_head_fwd(SM_BUF(b, SEQ_HEAD_OUT, float), SM_BUF(b, SEQ_HEAD_IN, float), a->B, a->S,
                    a->n, a->d);
}
SM_CODELET(seq_head_fwd, sm_seq_head_fwd_cpu);

static void sm_seq_head_bwd_cpu(void *b[], void *arg)
{
    const sm_seq_head_args *a = arg;
    sm_seq_head_bwd(SM_BUF(b, SEQ_HEAD_OUT, float), SM_BUF(b, SEQ_HEAD_IN, float), a->B, a->S,
                    a->n, a->d, a->accumulate);
}
SM_CODELET(seq_head_bwd, sm_seq_head_bwd_cpu);

int sm_insert_seq_head_fwd(const sm_op_ctx *c, sm_tensor *dst, sm_tensor *src, int B, int S,
                           int n, int d)
{
    sm_seq_head_args a = {B, S, n, d, 0};
    sm_access acc[SEQ_HEAD_NBUF] = {[SEQ_HEAD_OUT] = SM_W(dst), [SEQ_HEAD_IN] = SM_R(src)};
    return sm_op_insert(c, &sm_cl_seq_head_fwd, "seq_head_fwd", SM_FORWARD, -1, acc,
                        SEQ_HEAD_NBUF, &a, sizeof a, 0);
}

int sm_insert_seq_head_bwd(const sm_op_ctx *c, sm_tensor *dsrc, sm_tensor *ddst, int B, int S,
                           int n, int d, int accumulate)
{
    sm_seq_head_args a = {B, S, n, d, accumulate};
    sm_access acc[SEQ_HEAD_NBUF] = {[SEQ_HEAD_OUT] = SM_ACC(dsrc, accumulate),
                                    [SEQ_HEAD_IN] = SM_R(ddst)};
    return sm_op_insert(c, &sm_cl_seq_head_bwd, "seq_head_bwd", SM_BACKWARD_INPUT, -1, acc,
                        SEQ_HEAD_NBUF, &a, sizeof a, accumulate ? (double)B * n * d : 0);
}

/* ---- [a | b] ---- */
typedef struct { int T, n, m; } sm_concat_args;
enum { CONCAT_OUT, CONCAT_A, CONCAT_B, CONCAT_NBUF };

static void sm_concat_cols_fwd_cpu(void *b[], void *arg)
{
    const sm_concat_args *a = arg;
    sm_concat_cols_fwd(SM_BUF(b, CONCAT_OUT, float), SM_BUF(b, CONCAT_A, float),
                       SM_BUF(b, CONCAT_B, float), a->T, a->n, a->m);
}
SM_CODELET(concat_cols_fwd, sm_concat_cols_fwd_cpu);

static void sm_concat_cols_bwd_cpu(void *b[], void *arg)
{
    const sm_concat_args *a = arg;
    sm_concat_cols_bwd(SM_BUF(b, CONCAT_A, float), SM_BUF(b, CONCAT_B, float),
                       SM_BUF(b, CONCAT_OUT, float), a->T, a->n, a->m);
}
SM_CODELET(concat_cols_bwd, sm_concat_cols_bwd_cpu);

int sm_insert_concat_cols_fwd(const sm_op_ctx *c, sm_tensor *out, sm_tensor *a, sm_tensor *b,
                              int T, int n, int m)
{
    sm_concat_args x = {T, n, m};
    sm_access acc[CONCAT_NBUF] = {[CONCAT_OUT] = SM_W(out), [CONCAT_A] = SM_R(a),
                                  [CONCAT_B] = SM_R(b)};
    return sm_op_insert(c, &sm_cl_concat_cols_fwd, "concat_cols_fwd", SM_FORWARD, -1, acc,
                        CONCAT_NBUF, &x, sizeof x, 0);
}

int sm_insert_concat_cols_bwd(const sm_op_ctx *c, sm_tensor *da, sm_tensor *db,
                              sm_tensor *dout, int T, int n, int m)
{
    sm_concat_args x = {T, n, m};
    sm_access acc[CONCAT_NBUF] = {[CONCAT_OUT] = SM_R(dout), [CONCAT_A] = SM_W(da),
                                  [CONCAT_B] = SM_W(db)};
    return sm_op_insert(c, &sm_cl_concat_cols_bwd, "concat_cols_bwd", SM_BACKWARD_INPUT, -1,
                        acc, CONCAT_NBUF, &x, sizeof x, 0);
}
