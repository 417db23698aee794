/* Pure float32 kernels of the MoE family (see moe_kernels.h): the router of the official Gate
 * (sigmoid affinities, selection-only bias, group limiting on the top-2 group score with -inf
 * for dropped groups, top-k, normalisation of the unbiased scores, routed scaling) and its
 * backward, the dispatch plan, gather, combine and their backward.
 *
 * Every top-k is one helper that orders by (value descending, index ascending), so ties go to
 * the lower index. The router's two products go through sm_gemm; every other loop runs in
 * a fixed order, so results are bitwise reproducible for a given BLAS thread count. */
#include "tasks/moe_kernels.h"
#include "tasks/kernel_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Read-only view of a plan (the header's accessors take non-const pointers). */
typedef struct plan_view {
    const int32_t *idx, *count, *offset, *rows, *pos;
} plan_view;

static plan_view plan_view_of(const int32_t *plan, int T, int K, int E)
{
    int32_t *p = (int32_t *)plan;
    plan_view v = {sm_plan_idx(p, T, K, E), sm_plan_count(p, T, K, E),
                   sm_plan_offset(p, T, K, E), sm_plan_rows(p, T, K, E),
                   sm_plan_pos(p, T, K, E)};
    return v;
}

/* Slot k of token t that routes to expert e (a token picks each expert at most once). */
static int slot_of(const int32_t *idx, int t, int K, int e)
{
    int k = 0;
    while (idx[t * K + k] != e) k++;
    return k;
}

/* ------------------------------------------------------------------------------------------ */
/* Router */

/* A NaN score ranks like -inf, so the order stays total and a poisoned step still routes to
 * valid experts (its non-finite loss then skips it). */
static float rank_key(float v) { return isnan(v) ? -INFINITY : v; }

/* Whether index a comes before index b in the order (x descending, index ascending). */
static int ranks_before(const float *x, int a, int b)
{
    float xa = rank_key(x[a]), xb = rank_key(x[b]);
    return xa > xb || (xa == xb && a < b);
}

/* idx[0..k) = the k first indices of x[0..n) in that order. */
static void topk(int32_t *idx, const float *x, int n, int k)
{
    int prev = -1;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < n; e++) {
            if (prev >= 0 && !ranks_before(x, prev, e)) continue;
            if (best < 0 || ranks_before(x, e, best)) best = e;
        }
        idx[j] = prev = best;
    }
}

/* Number of indices of x[0..n) that come before a in that order. */
static int rank_of(const float *x, int n, int a)
{
    int rank = 0;
    for (int b = 0; b < n; b++) rank += ranks_before(x, b, a);
    return rank;
}

/* Biased scores c [E] of one token with the experts of all but the Gk best groups (group score =
 * sum of its two largest c) set to -inf. gscore [G] is scratch. */
static void group_limited_scores(float *c, float *gscore, const float *s, const float *bias,
                                 const sm_router_dims *r)
{
    int per = r->E / r->G;
    int32_t top[2];
    for (int e = 0; e < r->E; e++) c[e] = s[e] + (bias ? bias[e] : 0.0f);
    for (int g = 0; g < r->G; g++) {
        topk(top, c + g * per, per, 2);
        gscore[g] = c[g * per + top[0]] + c[g * per + top[1]];
    }
    for (int g = 0; g < r->G; g++)
        if (rank_of(gscore, r->G, g) >= r->Gk)
            for (int e = g * per; e < (g + 1) * per; e++) c[e] = -INFINITY;
}

/* Mixing weights of one token: the unbiased scores at idx, normalised, times route_scale. */
static void mixing_weights(float *w, const float *s, const int32_t *idx, const sm_router_dims *r)
{
    float sum = 0.0f;
    for (int k = 0; k < r->K; k++) sum += (w[k] = s[idx[k]]);
    for (int k = 0; k < r->K; k++) {
        if (r->norm_topk) w[k] /= sum;
        w[k] *= r->route_scale;
    }
}

/* count, offset, rows and pos of the plan from its idx. */
static void build_plan(int32_t *plan, int T, int K, int E)
{
    const int32_t *idx = sm_plan_idx(plan, T, K, E);
    int32_t *count = sm_plan_count(plan, T, K, E), *offset = sm_plan_offset(plan, T, K, E);
    int32_t *rows = sm_plan_rows(plan, T, K, E), *pos = sm_plan_pos(plan, T, K, E);
    memset(count, 0, (size_t)E * sizeof *count);
    for (int i = 0; i < T * K; i++) count[idx[i]]++;
    offset[0] = 0;
    for (int e = 0; e < E; e++) offset[e + 1] = offset[e] + count[e];
    memset(count, 0, (size_t)E * sizeof *count);
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) {
            int e = idx[t * K + k];
            pos[t * K + k] = count[e];
            rows[offset[e] + count[e]++] = t;
        }
}

void sm_router_fwd(int32_t *plan, float *w, float *s, const float *u, const float *Wg,
                   const float *bias, const sm_router_dims *r)
{
    int32_t *idx = sm_plan_idx(plan, r->T, r->K, r->E);
    float *c = sm_kcalloc((size_t)r->E + r->G, sizeof *c, "router scores");
    sm_gemm(0, 1, r->T, r->E, r->d, 1.0f, u, r->d, Wg, r->d, 0.0f, s, r->E);
    for (size_t i = 0; i < (size_t)r->T * r->E; i++) s[i] = 1.0f / (1.0f + expf(-s[i]));
    for (int t = 0; t < r->T; t++) {
        const float *st = s + (size_t)t * r->E;
        group_limited_scores(c, c + r->E, st, bias, r);
        topk(idx + t * r->K, c, r->E, r->K);
        mixing_weights(w + t * r->K, st, idx + t * r->K, r);
    }
    build_plan(plan, r->T, r->K, r->E);
    free(c);
}

/* Gradient of one token's logits at its chosen experts from dw (dense row dlogit [E], zero
 * elsewhere): back through route_scale, the normalisation and the sigmoid. */
static void router_token_bwd(float *dlogit, const float *dw, const float *s, const int32_t *idx,
                             const sm_router_dims *r)
{
    float sum = 0.0f, dot = 0.0f;
    for (int k = 0; k < r->K; k++) {
        sum += s[idx[k]];
        dot += dw[k] * s[idx[k]];
    }
    for (int k = 0; k < r->K; k++) {
        float sk = s[idx[k]];
        float ds = r->norm_topk ? r->route_scale * (dw[k] / sum - dot / (sum * sum))
                                : r->route_scale * dw[k];
        dlogit[idx[k]] = ds * sk * (1.0f - sk);
    }
}

void sm_router_bwd(float *du, float *dWg, const float *dw, const float *ds_extra,
                   const float *s, const int32_t *plan, const float *u, const float *Wg,
                   const sm_router_dims *r, int accumulate)
{
    const int32_t *idx = plan_view_of(plan, r->T, r->K, r->E).idx;
    float *dlogits = sm_kcalloc((size_t)r->T * r->E, sizeof *dlogits, "router dlogits");
    for (int t = 0; t < r->T; t++)
        router_token_bwd(dlogits + (size_t)t * r->E, dw + t * r->K, s + (size_t)t * r->E,
                         idx + t * r->K, r);
    for (size_t i = 0, n = (size_t)r->T * r->E; ds_extra && i < n; i++)
        dlogits[i] += ds_extra[i] * s[i] * (1.0f - s[i]);
    sm_gemm(0, 0, r->T, r->d, r->E, 1.0f, dlogits, r->E, Wg, r->d, accumulate ? 1.0f : 0.0f, du, r->d);
    sm_gemm(1, 0, r->E, r->d, r->T, 1.0f, dlogits, r->E, u, r->d, 1.0f, dWg, r->d);
    free(dlogits);
}

/* One sequence of S tokens: f_i = E/(K*S) * (tokens routed to i), P_i = mean over tokens of
 * s_t[i] / sum_j s_t[j]; returns coef * sum_i f_i P_i and, when ds is set, its gradient
 * w.r.t. s: coef / (S * sum_t) * (f_j - sum_i f_i s'_t[i]). */
static double balance_sequence(float *ds, const float *s, const int32_t *idx, int S, int K, int E,
                               float coef, double *f)
{
    memset(f, 0, (size_t)E * sizeof *f);
    for (int t = 0; t < S; t++)
        for (int k = 0; k < K; k++) f[idx[t * K + k]] += (double)E / ((double)K * S);
    double loss = 0;
    for (int t = 0; t < S; t++) {
        const float *st = s + (size_t)t * E;
        double sum = 0, fs = 0;
        for (int e = 0; e < E; e++) sum += st[e];
        for (int e = 0; e < E; e++) fs += f[e] * st[e];
        loss += fs / sum / S;
        for (int e = 0; ds && e < E; e++)
            ds[(size_t)t * E + e] = (float)(coef / (S * sum) * (f[e] - fs / sum));
    }
    return coef * loss;
}

double sm_balance_loss(float *ds, const float *s, const int32_t *plan, int T, int S, int K, int E,
                       float coef)
{
    const int32_t *idx = plan_view_of(plan, T, K, E).idx;
    double *f = sm_kcalloc((size_t)E, sizeof *f, "balance loss counts");
    double loss = 0;
    for (int t0 = 0; t0 + S <= T; t0 += S)
        loss += balance_sequence(ds ? ds + (size_t)t0 * E : NULL, s + (size_t)t0 * E,
                                 idx + (size_t)t0 * K, S, K, E, coef, f);
    free(f);
    return loss;
}

/* ------------------------------------------------------------------------------------------ */
/* Dispatch (gather) and combine */

SM_SIMD_KERNEL
void sm_moe_gather(float *xe, const float *u, const int32_t *plan, int e, int T, int K, int E,
                   int d)
{
    plan_view p = plan_view_of(plan, T, K, E);
    for (int r = 0; r < p.count[e]; r++)
        memcpy(xe + (size_t)r * d, u + (size_t)p.rows[p.offset[e] + r] * d, (size_t)d * sizeof *xe);
}

int sm_moe_pack_for_rank(float *xs, int32_t *xi, const float *u, const int32_t *plan, int e0,
                         int e1, int T, int K, int E, int d)
{
    plan_view p = plan_view_of(plan, T, K, E);
    int32_t *row_of = sm_kcalloc((size_t)T, sizeof *row_of, "pack_for_rank: token rows");
    int n = 0;
    for (int t = 0; t < T; t++) {
        int chosen = 0;
        for (int k = 0; k < K; k++) chosen |= p.idx[t * K + k] >= e0 && p.idx[t * K + k] < e1;
        row_of[t] = chosen ? n : -1;
        if (chosen) memcpy(xs + (size_t)n++ * d, u + (size_t)t * d, (size_t)d * sizeof *xs);
    }
    int32_t *at = xi ? xi + (e1 - e0) : NULL;
    for (int e = e0; at && e < e1; e++) {
        xi[e - e0] = p.count[e];
        for (int r = 0; r < p.count[e]; r++) *at++ = row_of[p.rows[p.offset[e] + r]];
    }
    free(row_of);
    return n;
}

void sm_moe_pair_weights(float *ws, const float *w, const int32_t *plan, int e0, int e1, int T,
                         int K, int E)
{
    plan_view p = plan_view_of(plan, T, K, E);
    for (int e = e0; e < e1; e++)
        for (int r = 0; r < p.count[e]; r++) {
            int t = p.rows[p.offset[e] + r];
            *ws++ = w[t * K + slot_of(p.idx, t, K, e)];
        }
}

int sm_moe_take_rows(float *xe, const float *xs, const int32_t *xi, const float *ws,
                     int nexperts, int j, int d)
{
    size_t first = 0;
    for (int i = 0; i < j; i++) first += (size_t)xi[i];
    const int32_t *rows = xi + nexperts + first;
    for (int r = 0; r < xi[j]; r++) {
        const float *src = xs + (size_t)rows[r] * d;
        float *dst = xe + (size_t)r * d;
        if (!ws) {
            memcpy(dst, src, (size_t)d * sizeof *dst);
            continue;
        }
        float wk = ws[first + r];
        for (int i = 0; i < d; i++) dst[i] = wk * src[i];
    }
    return xi[j];
}

void sm_moe_gather_bwd(float *du, const float *const *dxe, const int32_t *plan, int T, int K,
                       int E, int d, int accumulate)
{
    plan_view p = plan_view_of(plan, T, K, E);
    if (!accumulate) memset(du, 0, (size_t)T * d * sizeof *du);
    for (int e = 0; e < E; e++)
        for (int r = 0; r < p.count[e]; r++) {
            float *dst = du + (size_t)p.rows[p.offset[e] + r] * d;
            const float *src = dxe[e] + (size_t)r * d;
            for (int i = 0; i < d; i++) dst[i] += src[i];
        }
}

SM_SIMD_KERNEL
void sm_moe_combine(float *y, const float *const *ye, const float *shared, const float *w,
                    const int32_t *plan, int T, int K, int E, int d)
{
    plan_view p = plan_view_of(plan, T, K, E);
    for (int t = 0; t < T; t++) {
        float *yt = y + (size_t)t * d;
        if (shared) memcpy(yt, shared + (size_t)t * d, (size_t)d * sizeof *yt);
        else memset(yt, 0, (size_t)d * sizeof *yt);
        for (int k = 0; k < K; k++) {
            const float *src = ye[p.idx[t * K + k]] + (size_t)p.pos[t * K + k] * d;
            float wk = w[t * K + k];
            for (int i = 0; i < d; i++) yt[i] += wk * src[i];
        }
    }
}

SM_SIMD_KERNEL
void sm_moe_combine_bwd(float *dye, float *dge, const float *dy, const float *ye, const float *w,
                        const int32_t *plan, int e, int T, int K, int E, int d)
{
    plan_view p = plan_view_of(plan, T, K, E);
    for (int r = 0; r < p.count[e]; r++) {
        int t = p.rows[p.offset[e] + r];
        float wk = w[t * K + slot_of(p.idx, t, K, e)];
        const float *g = dy + (size_t)t * d, *y = ye + (size_t)r * d;
        for (int i = 0; dye && i < d; i++) dye[(size_t)r * d + i] = wk * g[i];
        dge[r] = sm_dotf(g, y, d);
    }
}

void sm_moe_collect_dw(float *dw, const float *const *dge, const int32_t *plan, int T, int K,
                       int E)
{
    plan_view p = plan_view_of(plan, T, K, E);
    for (int i = 0; i < T * K; i++) dw[i] = dge[p.idx[i]][p.pos[i]];
}
