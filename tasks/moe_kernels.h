/* Pure float32 kernels of the MoE family (no StarPU): router scoring (sigmoid affinity, bias used
 * only for selection, group-limited top-k with the top-2-in-group group score, normalisation of
 * the unbiased scores, routed scaling), the dispatch plan, gather, combine and their backward.
 *
 * The plan of one (layer, micro-batch) is an int32 array of sm_moe_plan_len(T, K, E) entries:
 *   idx    [T*K]  chosen experts per token, in descending biased score (ties: lower index)
 *   count  [E]    tokens routed to each expert
 *   offset [E+1]  prefix sums of count
 *   rows   [T*K]  for each expert in turn, its tokens in increasing token order
 *   pos    [T*K]  pos[t*K+k] = row of (t, k) inside its expert's list (0 .. count-1)
 * Expert e's gathered input is [count[e], d], row r = token rows[offset[e] + r]; the kernels
 * below take one buffer of rows per expert. */
#ifndef STARMOE_MOE_KERNELS_H
#define STARMOE_MOE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

typedef struct sm_router_dims {
    int T, d, E, K, G, Gk;       /* tokens, hidden, experts, per token, groups, kept groups */
    float route_scale;           /* routed_scaling_factor */
    int norm_topk;               /* norm_topk_prob */
} sm_router_dims;

static inline int sm_moe_plan_len(int T, int K, int E) { return 3 * T * K + 2 * E + 1; }
static inline int32_t *sm_plan_idx(int32_t *p, int T, int K, int E) { (void)T; (void)K; (void)E; return p; }
static inline int32_t *sm_plan_count(int32_t *p, int T, int K, int E) { (void)E; return p + T * K; }
static inline int32_t *sm_plan_offset(int32_t *p, int T, int K, int E) { return p + T * K + E; }
static inline int32_t *sm_plan_rows(int32_t *p, int T, int K, int E) { return p + T * K + 2 * E + 1; }
static inline int32_t *sm_plan_pos(int32_t *p, int T, int K, int E) { return p + 2 * T * K + 2 * E + 1; }
/* Router forward on u [T, d] with gate weight Wg [E, d] and selection bias [E] (may be NULL):
 * s [T, E] = sigmoid(u Wg^T) (saved), w [T, K] = final mixing weights of the chosen experts,
 * and the whole plan (idx, count, offset, rows, pos). */
void sm_router_fwd(int32_t *plan, float *w, float *s, const float *u, const float *Wg,
                   const float *bias, const sm_router_dims *r);
/* Router backward from dw [T, K] (gradient w.r.t. the mixing weights) and, when ds_extra is
 * not NULL, a gradient w.r.t. the sigmoid scores s [T, E] from another loss (the balance
 * loss): du (=|+=) dlogits Wg, dWg += dlogits^T u. The mixing weights pass gradient only through
 * the chosen experts' unbiased scores. */
void sm_router_bwd(float *du, float *dWg, const float *dw, const float *ds_extra,
                   const float *s, const int32_t *plan, const float *u, const float *Wg,
                   const sm_router_dims *r, int accumulate);

/* Sequence-wise balance loss (docs/model.md §6.2) over the T/S sequences of S tokens of a plan:
 * returns coef * sum over sequences of sum_i f_i P_i, with f_i = E/(K S) * (tokens of the
 * sequence routed to i, by the actual biased, group-limited choice; a constant) and
 * P_i = mean over the sequence of s_t[i] / sum_j s_t[j]. When ds is not NULL it receives the
 * gradient w.r.t. s [T, E] (overwritten). coef = alpha / (sequences in the whole batch). */
double sm_balance_loss(float *ds, const float *s, const int32_t *plan, int T, int S, int K, int E,
                       float coef);

/* Dispatch of expert e: xe [count[e], d] = u[rows of e]. */
void sm_moe_gather(float *xe, const float *u, const int32_t *plan, int e, int T, int K, int E,
                   int d);
/* The rows plan p routes to experts [e0, e1): the sum of their counts. */
static inline int sm_plan_rows_between(const int32_t *p, int e0, int e1, int T, int K, int E)
{
    const int32_t *offset = sm_plan_offset((int32_t *)p, T, K, E);
    return offset[e1] - offset[e0];
}
/* Dispatch to the rank holding experts [e0, e1): each token choosing one of them once, in token
 * order, xs [n, d] (returns n, the tokens; xs must hold sm_plan_rows_between rows: at most that
 * many), and, unless xi is NULL, the index xi: first the e1 - e0 counts, then for each expert in
 * turn the rows of xs of its tokens, in its order (e1 - e0 + sm_plan_rows_between entries). */
int sm_moe_pack_for_rank(float *xs, int32_t *xi, const float *u, const int32_t *plan, int e0,
                         int e1, int T, int K, int E, int d);
/* ws = the mixing weights of the rows of experts [e0, e1), expert by expert in its order (the
 * order of an index xi of sm_moe_pack_for_rank). */
void sm_moe_pair_weights(float *ws, const float *w, const int32_t *plan, int e0, int e1, int T,
                         int K, int E);
/* On the rank holding the experts: expert j's (0 = e0) rows xe = xs[xi's rows of j], each
 * times its weight in ws (laid out as xi's rows) when ws is not NULL; returns their count. */
int sm_moe_take_rows(float *xe, const float *xs, const int32_t *xi, const float *ws,
                     int nexperts, int j, int d);
/* Expert j's row count in an index xi of nexperts experts. */
static inline int sm_moe_index_count(const int32_t *xi, int j) { return xi[j]; }

/* Backward of all dispatches: du (=|+=) sum over experts e = 0..E-1 (in that order) of the
 * rows of dxe[e] scattered back to their tokens. */
void sm_moe_gather_bwd(float *du, const float *const *dxe, const int32_t *plan, int T, int K,
                       int E, int d, int accumulate);
/* Combine: y[t] = (shared ? shared[t] : 0) + sum_k w[t,k] * ye[idx[t,k]][pos[t,k]], k in order. */
void sm_moe_combine(float *y, const float *const *ye, const float *shared, const float *w,
                    const int32_t *plan, int T, int K, int E, int d);
/* Combine backward for expert e: dye [count[e], d] = w * dy[token] (skipped when dye is NULL:
 * the rank holding the expert computes it) and dge [count[e]], the gradient of the mixing
 * weight of each of e's rows, dge[r] = dy[token] . ye[r]. */
void sm_moe_combine_bwd(float *dye, float *dge, const float *dy, const float *ye, const float *w,
                        const int32_t *plan, int e, int T, int K, int E, int d);
/* Collects the per-expert dge into dw [T, K]: dw[t*K+k] = dge[idx[t,k]][pos[t,k]]. */
void sm_moe_collect_dw(float *dw, const float *const *dge, const int32_t *plan, int T, int K,
                       int E);

#endif
