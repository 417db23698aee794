/* Insert helpers of the Multi-Token Prediction modules' glue ops (kernels in mtp_kernels.c):
 * the previous depth's hidden state at the positions a depth predicts from, and eh_proj's
 * input [enorm(emb) | hnorm(h)]. */
#ifndef STARMOE_MTP_H
#define STARMOE_MTP_H

#include "tasks/codelet.h"

/* dst = the first n of each of B sequences of S rows of src (d wide). */
int sm_insert_seq_head_fwd(const sm_op_ctx *c, sm_tensor *dst, sm_tensor *src, int B, int S,
                           int n, int d);
/* dsrc (=|+=) its backward (rows past n zeroed without accumulate). */
int sm_insert_seq_head_bwd(const sm_op_ctx *c, sm_tensor *dsrc, sm_tensor *ddst, int B, int S,
                           int n, int d, int accumulate);
/* out = [a | b], T rows of n + m values; backward: da, db = out's halves of dout. */
int sm_insert_concat_cols_fwd(const sm_op_ctx *c, sm_tensor *out, sm_tensor *a, sm_tensor *b,
                              int T, int n, int m);
int sm_insert_concat_cols_bwd(const sm_op_ctx *c, sm_tensor *da, sm_tensor *db,
                              sm_tensor *dout, int T, int n, int m);

#endif
