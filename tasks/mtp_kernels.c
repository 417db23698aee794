/* The MTP glue kernels of mtp_kernels.h: exact copies and sums of rows. */
#include "tasks/mtp_kernels.h"

#include <string.h>

void sm_seq_head_fwd(float *dst, const float *src, int B, int S, int n, int d)
{
    for (int b = 0; b < B; b++)
        memcpy(dst + (size_t)b * n * d, src + (size_t)b * S * d, (size_t)n * d * sizeof *dst);
}

void sm_seq_head_bwd(float *dsrc, const float *ddst, int B, int S, int n, int d,
                     int accumulate)
{
    for (int b = 0; b < B; b++) {
        float *o = dsrc + (size_t)b * S * d;
        const float *g = ddst + (size_t)b * n * d;
        size_t head = (size_t)n * d;
        if (accumulate) {
            for (size_t i = 0; i < head; i++) o[i] += g[i];
            continue;
        }
        memcpy(o, g, head * sizeof *o);
        memset(o + head, 0, (size_t)(S - n) * d * sizeof *o);
    }
}

void sm_concat_cols_fwd(float *out, const float *a, const float *b, int T, int n, int m)
{
    for (int t = 0; t < T; t++) {
        float *o = out + (size_t)t * (n + m);
        memcpy(o, a + (size_t)t * n, (size_t)n * sizeof *o);
        memcpy(o + n, b + (size_t)t * m, (size_t)m * sizeof *o);
    }
}

void sm_concat_cols_bwd(float *da, float *db, const float *dout, int T, int n, int m)
{
    for (int t = 0; t < T; t++) {
        const float *g = dout + (size_t)t * (n + m);
        memcpy(da + (size_t)t * n, g, (size_t)n * sizeof *da);
        memcpy(db + (size_t)t * m, g + n, (size_t)m * sizeof *db);
    }
}
