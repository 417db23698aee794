/* Pure float32 kernels of MLA's core (see attention_kernels.h): RoPE frequencies with the YaRN
 * correction of the official precompute_freqs_cis, the cos/sin table, the softmax scale, and
 * causal attention forward and backward.
 *
 * Per sequence, the rope slices of q (every head) and the shared k_rope are rotated once into
 * contiguous buffers; per head, the scores are two sgemms, nope part plus rope part, reading
 * q and kvu in place through their leading dimensions. The probabilities are not saved: the
 * forward computes them one causal block of queries at a time into a [block, S] scratch, the
 * backward recomputes a head's [S, S] with the same calls (same sgemm shapes, same softmax
 * order), so both see the same bits. Backward recomputes the rotations, rotates the rope
 * gradients back by the opposite angle, and sums the k_rope gradient over heads in increasing
 * head order. No threading of our own: results are bitwise reproducible for a given BLAS
 * thread count. */
#include "tasks/attention_kernels.h"
#include "tasks/kernel_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* RoPE frequencies, table and softmax scale */

static int yarn_active(const sm_yarn *yarn) { return yarn && yarn->factor > 1.0; }

/* Pair index whose wavelength completes r rotations within the original context. */
static double yarn_corr(double r, int dim, double base, int orig)
{
    return dim * log(orig / (2.0 * 3.14159265358979323846 * r)) / (2.0 * log(base));
}

void sm_rope_freqs(double *theta, int dr, double base, const sm_yarn *yarn)
{
    int half = dr / 2;
    for (int j = 0; j < half; j++) theta[j] = pow(base, -2.0 * j / dr);
    if (!yarn_active(yarn)) return;
    int orig = yarn->original_max_position_embeddings;
    double low = fmax(floor(yarn_corr(yarn->beta_fast, dr, base, orig)), 0.0);
    double high = fmin(ceil(yarn_corr(yarn->beta_slow, dr, base, orig)), dr - 1.0);
    if (low == high) high += 0.001;
    for (int j = 0; j < half; j++) {
        double ramp = fmin(fmax((j - low) / (high - low), 0.0), 1.0);
        theta[j] = theta[j] / yarn->factor * ramp + theta[j] * (1.0 - ramp);
    }
}

void sm_rope_table(float *cos_t, float *sin_t, const double *theta, int S, int dr)
{
    int half = dr / 2;
    for (int s = 0; s < S; s++)
        for (int j = 0; j < half; j++) {
            double phi = s * theta[j];
            cos_t[s * half + j] = (float)cos(phi);
            sin_t[s * half + j] = (float)sin(phi);
        }
}

double sm_mla_softmax_scale(int dqk, const sm_yarn *yarn)
{
    double scale = 1.0 / sqrt((double)dqk);
    if (yarn_active(yarn)) {
        double mscale = 0.1 * yarn->mscale_all_dim * log(yarn->factor) + 1.0;
        scale *= mscale * mscale;
    }
    return scale;
}

/* The backward of a rotation is the opposite one. */
SM_SIMD_KERNEL
void sm_rope_rotate(float *y, const float *x, const float *c, const float *s, int dr,
                    float sign)
{
    for (int j = 0; j < dr / 2; j++) {
        float x0 = x[2 * j], x1 = x[2 * j + 1], sn = sign * s[j];
        y[2 * j] = x0 * c[j] - x1 * sn;
        y[2 * j + 1] = x0 * sn + x1 * c[j];
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Causal attention */

/* Per-call view of the layouts: leading dimensions and the rotated-rope buffers of one
 * sequence, qr [S, H*dr] (head h at column h*dr) and kr [S, dr]. */
typedef struct attn_ctx {
    const sm_mla_dims *m;
    int dqk, ldq, ldkv, ldkvu, ldo;
    float *qr, *kr;
} attn_ctx;

static attn_ctx attn_ctx_make(const sm_mla_dims *m)
{
    attn_ctx a = {.m = m, .dqk = m->dn + m->dr, .ldkv = m->dc + m->dr, .ldo = m->H * m->dv};
    a.ldq = m->H * a.dqk;
    a.ldkvu = m->H * (m->dn + m->dv);
    a.qr = sm_kfloats((size_t)m->S * m->H * m->dr, "attention rotated q");
    a.kr = sm_kfloats((size_t)m->S * m->dr, "attention rotated k");
    return a;
}

static void attn_ctx_free(attn_ctx *a)
{
    free(a->qr);
    free(a->kr);
}

/* Rotates S rows of H rope slices by +angle (sign 1) or -angle (sign -1) from src to dst; each
 * side has its own row stride and head stride (the MLA layouts or the compact [S, H*dr]). */
static void rope_rows(float *dst, size_t dld, size_t dhs, const float *src, size_t sld, size_t shs,
                      const sm_mla_dims *m, int H, const float *cos_t, const float *sin_t,
                      float sign)
{
    int half = m->dr / 2;
    for (int s = 0; s < m->S; s++)
        for (int h = 0; h < H; h++)
            sm_rope_rotate(dst + s * dld + h * dhs, src + s * sld + h * shs, cos_t + s * half,
                        sin_t + s * half, m->dr, sign);
}

/* Rotates the rope slices of q (all heads) and k_rope of sequence b into a->qr, a->kr. */
static void rotate_sequence(attn_ctx *a, int b, const float *q, const float *kv,
                            const float *cos_t, const float *sin_t)
{
    const sm_mla_dims *m = a->m;
    size_t t0 = (size_t)b * m->S;
    rope_rows(a->qr, (size_t)m->H * m->dr, m->dr, q + t0 * a->ldq + m->dn, a->ldq, a->dqk, m,
              m->H, cos_t, sin_t, 1.0f);
    rope_rows(a->kr, m->dr, 0, kv + t0 * a->ldkv + m->dc, a->ldkv, 0, m, 1, cos_t, sin_t, 1.0f);
}

/* Rotates the rope gradients of sequence b back by the opposite angle: dqr [S, H*dr] into the
 * rope columns of dq, dkr [S, dr] into dkpe. */
static void unrotate_sequence(const attn_ctx *a, int b, float *dq, float *dkpe, const float *dqr,
                              const float *dkr, const float *cos_t, const float *sin_t)
{
    const sm_mla_dims *m = a->m;
    size_t t0 = (size_t)b * m->S;
    rope_rows(dq + t0 * a->ldq + m->dn, a->ldq, a->dqk, dqr, (size_t)m->H * m->dr, m->dr, m,
              m->H, cos_t, sin_t, -1.0f);
    rope_rows(dkpe + t0 * m->dr, m->dr, 0, dkr, m->dr, 0, m, 1, cos_t, sin_t, -1.0f);
}

/* The largest of x[0..n), n >= 1 (exact in any order). */
static inline float row_max(const float *x, int n)
{
    float acc[SM_LANES], mx;
    int t = 0;
    for (int j = 0; j < SM_LANES; j++) acc[j] = x[0];
    for (; t + SM_LANES <= n; t += SM_LANES)
        for (int j = 0; j < SM_LANES; j++) acc[j] = x[t + j] > acc[j] ? x[t + j] : acc[j];
    for (; t < n; t++) acc[0] = x[t] > acc[0] ? x[t] : acc[0];
    mx = acc[0];
    for (int j = 1; j < SM_LANES; j++) mx = acc[j] > mx ? acc[j] : mx;
    return mx;
}

/* x[t] = exp(x[t] - mx) for t < n; returns their sum (lane partials, fixed order). */
static inline float row_exp_sum(float *x, int n, float mx)
{
    float acc[SM_LANES] = {0};
    int t = 0;
    for (; t + SM_LANES <= n; t += SM_LANES)
        for (int j = 0; j < SM_LANES; j++) {
            x[t + j] = sm_fast_expf(x[t + j] - mx);
            acc[j] += x[t + j];
        }
    for (; t < n; t++) {
        x[t] = sm_fast_expf(x[t] - mx);
        acc[t % SM_LANES] += x[t];
    }
    float sum = 0.0f;
    for (int j = 0; j < SM_LANES; j++) sum += acc[j];
    return sum;
}

SM_SIMD_KERNEL
void sm_softmax_prefix(float *row, int n, int width)
{
    float inv = 1.0f / row_exp_sum(row, n, row_max(row, n));
    for (int t = 0; t < n; t++) row[t] *= inv;
    for (int t = n; t < width; t++) row[t] = 0.0f;
}

/* Row-wise causal softmax in place on the score rows r0 <= s < r1 of an [S, S] matrix, p
 * pointing at row r0 (leading dimension S): entries t > s become 0. */
static void causal_softmax(float *p, int r0, int r1, int S)
{
    for (int s = r0; s < r1; s++) sm_softmax_prefix(p + (size_t)(s - r0) * S, s + 1, S);
}

/* In place on dP [S, S], whose entries t > s are not read (they may be unset): dscores =
 * scale * P * (dP - sum_t P dP) for t <= s, 0 beyond, row by row. */
SM_SIMD_KERNEL
static void softmax_bwd(float *dp, const float *p, int S, float scale)
{
    for (int s = 0; s < S; s++) {
        float *g = dp + (size_t)s * S;
        const float *pr = p + (size_t)s * S;
        float dot = sm_dotf(pr, g, s + 1);
        for (int t = 0; t <= s; t++) g[t] = scale * pr[t] * (g[t] - dot);
        for (int t = s + 1; t < S; t++) g[t] = 0.0f;
    }
}

/* Causal blocks: query rows [i*SM_ATTN_BLOCK, causal_end(i, S)) see only the keys below
 * causal_end(i, S), so every product with the scores skips the blocks above the diagonal. */
enum { SM_ATTN_BLOCK = 64 };

static int causal_end(int i, int S)
{
    int e = (i + 1) * SM_ATTN_BLOCK;
    return e < S ? e : S;
}

static int causal_blocks(int S) { return (S + SM_ATTN_BLOCK - 1) / SM_ATTN_BLOCK; }

/* One head of one sequence: its nope query and key columns (qn in q, kn in kvu) and its
 * rotated query rope columns (qr in a->qr). */
typedef struct attn_head {
    const float *qn, *qr, *kn;
} attn_head;

static attn_head attn_head_at(const attn_ctx *a, int b, int h, const float *q, const float *kvu)
{
    const sm_mla_dims *m = a->m;
    size_t t0 = (size_t)b * m->S;
    return (attn_head){q + t0 * a->ldq + (size_t)h * a->dqk, a->qr + (size_t)h * m->dr,
                       kvu + t0 * a->ldkvu + (size_t)h * (m->dn + m->dv)};
}

/* The probabilities of query block i of head hd into p (its row r0 = i*SM_ATTN_BLOCK first,
 * leading dimension S): scaled scores, nope part plus rotated rope part, then the causal
 * softmax. The forward's and the backward's one computation of P. */
static void block_probs(float *p, const attn_ctx *a, const attn_head *hd, int i)
{
    const sm_mla_dims *m = a->m;
    int S = m->S, ldqr = m->H * m->dr, r0 = i * SM_ATTN_BLOCK, c = causal_end(i, S), nr = c - r0;
    sm_gemm(0, 1, nr, c, m->dn, m->scale, hd->qn + (size_t)r0 * a->ldq, a->ldq, hd->kn,
            a->ldkvu, 0.0f, p, S);
    sm_gemm(0, 1, nr, c, m->dr, m->scale, hd->qr + (size_t)r0 * ldqr, ldqr, a->kr, m->dr, 1.0f, p,
            S);
    causal_softmax(p, r0, c, S);
}

void sm_mla_attn_fwd(float *o, const float *q, const float *kv, const float *kvu,
                     const float *cos_t, const float *sin_t, const sm_mla_dims *m)
{
    attn_ctx a = attn_ctx_make(m);
    int S = m->S, nb = causal_blocks(S);
    float *p = sm_kfloats((size_t)SM_ATTN_BLOCK * S, "attention probabilities");
    for (int b = 0; b < m->B; b++) {
        rotate_sequence(&a, b, q, kv, cos_t, sin_t);
        for (int h = 0; h < m->H; h++) {
            attn_head hd = attn_head_at(&a, b, h, q, kvu);
            float *out = o + (size_t)b * S * a.ldo + (size_t)h * m->dv;
            for (int i = 0; i < nb; i++) {
                int r0 = i * SM_ATTN_BLOCK, c = causal_end(i, S);
                block_probs(p, &a, &hd, i);
                sm_gemm(0, 0, c - r0, m->dv, c, 1.0f, p, S, hd.kn + m->dn, a.ldkvu, 0.0f,
                        out + (size_t)r0 * a.ldo, a.ldo);
            }
        }
    }
    free(p);
    attn_ctx_free(&a);
}

/* Per head, P recomputed block by block, then block by block below the diagonal: dV = P^T dO,
 * dP = dO V^T, dscores by the softmax backward, dq = dscores K (nope and rotated rope parts),
 * dK = dscores^T q. */
void sm_mla_attn_bwd(float *dq, float *dkpe, float *dkvu, const float *dout, const float *q,
                     const float *kv, const float *kvu, const float *cos_t, const float *sin_t,
                     const sm_mla_dims *m)
{
    attn_ctx a = attn_ctx_make(m);
    int S = m->S, ldqr = m->H * m->dr, nb = causal_blocks(S);
    float *p = sm_kfloats((size_t)S * S, "attention probabilities");
    float *ds = sm_kfloats((size_t)S * S, "attention dscores");
    float *dqr = sm_kfloats((size_t)S * ldqr, "attention rotated dq");
    float *dkr = sm_kfloats((size_t)S * m->dr, "attention rotated dk");
    for (int b = 0; b < m->B; b++) {
        rotate_sequence(&a, b, q, kv, cos_t, sin_t);
        size_t t0 = (size_t)b * S;
        for (int h = 0; h < m->H; h++) {
            attn_head hd = attn_head_at(&a, b, h, q, kvu);
            const float *go = dout + t0 * a.ldo + (size_t)h * m->dv;
            size_t kcol = t0 * a.ldkvu + (size_t)h * (m->dn + m->dv);
            const float *kn = hd.kn, *v = kn + m->dn, *qn = hd.qn, *qr = hd.qr;
            float *dqn = dq + t0 * a.ldq + (size_t)h * a.dqk, *dqrh = dqr + (size_t)h * m->dr;
            float *dkn = dkvu + kcol, *dv = dkn + m->dn;
            for (int i = 0; i < nb; i++) block_probs(p + (size_t)i * SM_ATTN_BLOCK * S, &a, &hd, i);
            for (int i = 0; i < nb; i++) {
                int r0 = i * SM_ATTN_BLOCK, c = causal_end(i, S), nr = c - r0;
                sm_gemm(1, 0, nr, m->dv, S - r0, 1.0f, p + (size_t)r0 * S + r0, S,
                        go + (size_t)r0 * a.ldo, a.ldo, 0.0f, dv + (size_t)r0 * a.ldkvu, a.ldkvu);
                sm_gemm(0, 1, nr, c, m->dv, 1.0f, go + (size_t)r0 * a.ldo, a.ldo, v, a.ldkvu, 0.0f,
                        ds + (size_t)r0 * S, S);
            }
            softmax_bwd(ds, p, S, m->scale);
            for (int i = 0; i < nb; i++) {
                int r0 = i * SM_ATTN_BLOCK, c = causal_end(i, S), nr = c - r0;
                const float *dsr = ds + (size_t)r0 * S, *dsc = ds + (size_t)r0 * S + r0;
                sm_gemm(0, 0, nr, m->dn, c, 1.0f, dsr, S, kn, a.ldkvu, 0.0f,
                        dqn + (size_t)r0 * a.ldq, a.ldq);
                sm_gemm(0, 0, nr, m->dr, c, 1.0f, dsr, S, a.kr, m->dr, 0.0f,
                        dqrh + (size_t)r0 * ldqr, ldqr);
                sm_gemm(1, 0, nr, m->dn, S - r0, 1.0f, dsc, S, qn + (size_t)r0 * a.ldq, a.ldq,
                        0.0f, dkn + (size_t)r0 * a.ldkvu, a.ldkvu);
                sm_gemm(1, 0, nr, m->dr, S - r0, 1.0f, dsc, S, qr + (size_t)r0 * ldqr, ldqr,
                        h ? 1.0f : 0.0f, dkr + (size_t)r0 * m->dr, m->dr);
            }
        }
        unrotate_sequence(&a, b, dq, dkpe, dqr, dkr, cos_t, sin_t);
    }
    free(p);
    free(ds);
    free(dqr);
    free(dkr);
    attn_ctx_free(&a);
}
