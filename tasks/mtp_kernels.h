/* Pure float32 kernels of the Multi-Token Prediction modules' glue (no StarPU): the first n
 * positions of every sequence (depth k reads the previous depth's hidden state at the S - k
 * positions that have a token k ahead), and the column concatenation [a | b] that eh_proj
 * reads. Forward and backward side by side; row-major, loops in a fixed order. */
#ifndef STARMOE_MTP_KERNELS_H
#define STARMOE_MTP_KERNELS_H

/* dst[b][i] = src[b][i] for i < n: the first n of each of B sequences of S rows of d values
 * (src [B*S, d], dst [B*n, d]). */
void sm_seq_head_fwd(float *dst, const float *src, int B, int S, int n, int d);
/* dsrc[b][i] (=|+=) ddst[b][i] for i < n; without accumulate the rows i >= n are zeroed. */
void sm_seq_head_bwd(float *dsrc, const float *ddst, int B, int S, int n, int d,
                     int accumulate);

/* out[t] = [a[t] | b[t]]: T rows, a's n values then b's m (out [T, n + m]). */
void sm_concat_cols_fwd(float *out, const float *a, const float *b, int T, int n, int m);
/* da[t] = dout[t][0, n), db[t] = dout[t][n, n + m). */
void sm_concat_cols_bwd(float *da, float *db, const float *dout, int T, int n, int m);

#endif
