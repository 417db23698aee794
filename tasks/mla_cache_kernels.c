/* Pure kernels of MLA inference over the latent cache (see mla_cache_kernels.h): appending a
 * step's latents and rotated rope keys, and the absorbed attention. Per head the work is five
 * sgemms (absorb W_UK, the latent and rope scores, the latent sum, W_UV) reading the cache and
 * kv_b_proj's weight in place through their leading dimensions; the rotation and the softmax
 * are attention_kernels.c's. */
#include "tasks/mla_cache_kernels.h"
#include "tasks/attention_kernels.h"
#include "tasks/kernel_util.h"

#include <stdlib.h>
#include <string.h>

void sm_mla_cache_append(float *cache, const float *kvn, const float *kv, const float *cos_t,
                         const float *sin_t, const sm_mla_cache_dims *m)
{
    int ld = m->dc + m->dr, half = m->dr / 2;
    for (int i = 0; i < m->n; i++) {
        int t = m->pos + i;
        float *row = cache + (size_t)t * ld;
        memcpy(row, kvn + (size_t)i * m->dc, m->dc * sizeof *row);
        sm_rope_rotate(row + m->dc, kv + (size_t)i * ld + m->dc, cos_t + (size_t)t * half,
                       sin_t + (size_t)t * half, m->dr, 1.0f);
    }
}

void sm_mla_absorbed_attn(float *o, const float *q, const float *cache, const float *wkvb,
                          const float *cos_t, const float *sin_t, const sm_mla_cache_dims *m)
{
    int n = m->n, keys = m->pos + n, dc = m->dc, dr = m->dr, ld = dc + dr, half = dr / 2;
    int dqk = m->dn + dr, ldq = m->H * dqk, ldo = m->H * m->dv, head_rows = m->dn + m->dv;
    float *qt = sm_kfloats((size_t)n * dc, "absorbed attention query latents");
    float *qr = sm_kfloats((size_t)n * dr, "absorbed attention rotated query");
    float *p = sm_kfloats((size_t)n * keys, "absorbed attention probabilities");
    float *ob = sm_kfloats((size_t)n * dc, "absorbed attention latent sums");
    for (int h = 0; h < m->H; h++) {
        const float *qh = q + (size_t)h * dqk;
        const float *w_uk = wkvb + (size_t)h * head_rows * dc, *w_uv = w_uk + (size_t)m->dn * dc;
        for (int i = 0; i < n; i++) {
            size_t t = (size_t)(m->pos + i) * half;
            sm_rope_rotate(qr + (size_t)i * dr, qh + (size_t)i * ldq + m->dn, cos_t + t,
                           sin_t + t, dr, 1.0f);
        }
        sm_gemm(0, 0, n, dc, m->dn, 1.0f, qh, ldq, w_uk, dc, 0.0f, qt, dc);
        sm_gemm(0, 1, n, keys, dc, m->scale, qt, dc, cache, ld, 0.0f, p, keys);
        sm_gemm(0, 1, n, keys, dr, m->scale, qr, dr, cache + dc, ld, 1.0f, p, keys);
        for (int i = 0; i < n; i++) sm_softmax_prefix(p + (size_t)i * keys, m->pos + i + 1, keys);
        sm_gemm(0, 0, n, dc, keys, 1.0f, p, keys, cache, ld, 0.0f, ob, dc);
        sm_gemm(0, 1, n, m->dv, dc, 1.0f, ob, dc, w_uv, dc, 0.0f, o + (size_t)h * m->dv, ldo);
    }
    free(qt);
    free(qr);
    free(p);
    free(ob);
}

double sm_mla_absorbed_flops(const sm_mla_cache_dims *m)
{
    double keys = m->pos + m->n;
    return 2.0 * m->H * m->n * (m->dc * (m->dn + m->dv) + keys * (2.0 * m->dc + m->dr));
}
