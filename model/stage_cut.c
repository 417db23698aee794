/* Where a pipeline cuts the model: contiguous spans of layers per stage, the embedding with the
 * first stage and the final norm, head and loss with the last. Costs are forward flops per
 * token (the backward costs about twice as much everywhere, so ratios are what matter). With
 * one chunk per rank, a dynamic program over the cut points minimises the costliest stage;
 * with two (DualPipe, DualPipeV) a rank runs two stages, so every cut is tried when there are
 * few enough and the busiest rank is minimised, then the costliest stage. */
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include "schedulers/schedule.h"

enum { SM_CUT_MAX_TRIES = 2000000 };

typedef struct sm_cut_ctx {
    const sm_schedule *p;
    int L, NS;
    const double *pre;           /* pre[l]: cost of layers [0, l) */
    double head;
    int *cut, *best_cut;         /* [NS + 1]: stage s holds layers [cut[s], cut[s+1]) */
    double best_rank, best_stage;
} sm_cut_ctx;

/* Forward flops per token of layer l at sequence length S: the MLA projections and causal
 * attention, then the dense FFN, or the routed top-K and shared experts with the router. */
static double sm_layer_cost(const sm_config *c, int l, int S)
{
    double d = c->hidden_size, H = c->num_attention_heads, dq = c->q_lora_rank;
    double dc = c->kv_lora_rank, dr = c->qk_rope_head_dim, dn = c->qk_nope_head_dim;
    double dv = c->v_head_dim, dqk = dn + dr, mi = c->moe_intermediate_size;
    double q = dq > 0 ? 2 * (d * dq + dq * H * dqk) : 2 * d * H * dqk;
    double att = q + 2 * (d * (dc + dr) + dc * H * (dn + dv) + H * dv * d) +
                 H * S * (dqk + dv);
    double ffn = sm_config_layer_is_moe(c, l)
                     ? 6 * d * mi * (c->num_experts_per_tok + c->n_shared_experts) +
                           2 * d * c->n_routed_experts
                     : 6 * d * c->intermediate_size;
    return att + ffn;
}

static double sm_stage_cost(const sm_cut_ctx *x, const int *cut, int s)
{
    return x->pre[cut[s + 1]] - x->pre[cut[s]] + (s == x->NS - 1 ? x->head : 0);
}

/* Scores a complete cut: the busiest rank (the sum of its chunks' stages), the costliest stage. */
static void sm_cut_score(sm_cut_ctx *x)
{
    double rank_max = 0, stage_max = 0;
    for (int s = 0; s < x->NS; s++) stage_max = fmax(stage_max, sm_stage_cost(x, x->cut, s));
    for (int r = 0; r < x->p->pp; r++) {
        double load = 0;
        for (int c = 0; c < x->p->nchunks; c++) {
            int dir, stage;
            sm_schedule_locate(x->p, r, c, &dir, &stage);
            load += sm_stage_cost(x, x->cut, stage);
        }
        rank_max = fmax(rank_max, load);
    }
    if (rank_max < x->best_rank || (rank_max == x->best_rank && stage_max < x->best_stage)) {
        x->best_rank = rank_max;
        x->best_stage = stage_max;
        for (int s = 0; s <= x->NS; s++) x->best_cut[s] = x->cut[s];
    }
}

/* Every cut with cut[s] >= from for the stages from s on. */
static void sm_cut_all(sm_cut_ctx *x, int s, int from)
{
    if (s == x->NS) {
        sm_cut_score(x);
        return;
    }
    for (int f = from; f <= x->L; f++) {
        x->cut[s] = f;
        sm_cut_all(x, s + 1, f);
    }
}

/* The dynamic program: best[s][e] is the least possible costliest stage among stages
 * 0..s-1 holding layers [0, e); at[s][e] where stage s-1 starts then. */
static void sm_cut_dp(sm_cut_ctx *x, double *best, int *at)
{
    int L = x->L, W = L + 1;
    for (int e = 0; e <= L; e++) best[e] = e ? HUGE_VAL : 0;
    for (int s = 1; s <= x->NS; s++)
        for (int e = 0; e <= L; e++) {
            best[s * W + e] = HUGE_VAL;
            for (int f = 0; f <= e; f++) {
                double own = x->pre[e] - x->pre[f] + (s == x->NS ? x->head : 0);
                double v = fmax(best[(s - 1) * W + f], own);
                if (v < best[s * W + e]) {
                    best[s * W + e] = v;
                    at[s * W + e] = f;
                }
            }
        }
    x->best_cut[x->NS] = L;
    for (int s = x->NS, e = L; s >= 1; s--) x->best_cut[s - 1] = e = at[s * W + e];
}

/* Number of cuts (compositions of L layers into NS spans), capped above the try limit. */
static double sm_cut_count(int L, int NS)
{
    double n = 1;
    for (int k = 1; k < NS && n <= SM_CUT_MAX_TRIES; k++) n = n * (L + k) / k;
    return n;
}

int sm_stage_cut(const sm_schedule *p, const sm_config *c, int S, sm_stage_span *span,
                 sm_error *err)
{
    int L = c->num_hidden_layers, NS = p->nstages, W = L + 1;
    double *pre = calloc(W, sizeof *pre), *best = malloc((size_t)(NS + 1) * W * sizeof *best);
    int *at = malloc((size_t)(NS + 1) * W * sizeof *at);
    int *cuts = malloc(2 * (size_t)(NS + 1) * sizeof *cuts);
    if (!pre || !best || !at || !cuts) {
        free(pre);
        free(best);
        free(at);
        free(cuts);
        return sm_fail(err, "out of memory for the pipeline stages");
    }
    for (int l = 0; l < L; l++) pre[l + 1] = pre[l] + sm_layer_cost(c, l, S);
    sm_cut_ctx x = {.p = p, .L = L, .NS = NS, .pre = pre,
                    .head = 2.0 * c->hidden_size * c->vocab_size, .cut = cuts,
                    .best_cut = cuts + NS + 1, .best_rank = HUGE_VAL, .best_stage = HUGE_VAL};
    if (p->nchunks > 1 && sm_cut_count(L, NS) <= SM_CUT_MAX_TRIES) {
        x.cut[0] = 0;
        x.cut[NS] = L;
        sm_cut_all(&x, 1, 0);
    } else {
        sm_cut_dp(&x, best, at);
    }
    for (int s = 0; s < NS; s++)
        span[s] = (sm_stage_span){x.best_cut[s], x.best_cut[s + 1], s == 0, s == NS - 1};
    free(pre);
    free(best);
    free(at);
    free(cuts);
    return 0;
}
