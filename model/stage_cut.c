/* Where a pipeline cuts the model: contiguous spans of layers per stage, the embedding with the
 * first stage and the final norm, head and loss with the last. Costs are the forward flops the
 * insert helpers record for one sequence, from a build that only records (the backward costs
 * about twice as much everywhere, so ratios are what matter). With
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
    double embed, head;
    int *cut, *best_cut;         /* [NS + 1]: stage s holds layers [cut[s], cut[s+1]) */
    double best_rank, best_stage;
} sm_cut_ctx;

/* *flops: the recorded flops of the forward of span sp for micro-batch 0 of r. */
static int sm_span_flops(sm_run *r, const sm_op_ctx *c, sm_stage_span sp, double *flops)
{
    const sm_graph *g = r->m->g;
    size_t first = sm_graph_ntasks(g);
    if (sm_stage_fwd(r, c, &sp, 0)) return -1;
    *flops = 0;
    for (size_t i = first; i < sm_graph_ntasks(g); i++) *flops += sm_graph_task(g, i)->flops;
    return 0;
}

/* The recorded forward flops of one sequence of S tokens: layer[l] of each layer, *embed of
 * the embedding, *head of the final norm, head and loss. A model and run that only record. */
static int sm_recorded_costs(const sm_config *c, int S, double *layer, double *embed,
                             double *head, sm_error *err)
{
    sm_model *m = sm_model_new(c, 0, err);
    sm_run *r = m ? sm_run_new(m, 1, S, 1, 0, err) : NULL;
    int L = c->num_hidden_layers, rc = r ? 0 : -1;
    sm_op_ctx ctx = {.g = m ? m->g : NULL, .layer = -1, .micro = 0, .err = err};
    if (!rc) rc = sm_span_flops(r, &ctx, (sm_stage_span){0, 0, 1, 0}, embed);
    for (int l = 0; l < L && !rc; l++)
        rc = sm_span_flops(r, &ctx, (sm_stage_span){l, l + 1, 0, 0}, &layer[l]);
    if (!rc) rc = sm_span_flops(r, &ctx, (sm_stage_span){L, L, 0, 1}, head);
    sm_run_free(r);
    sm_model_free(m);
    return rc;
}

static double sm_stage_cost(const sm_cut_ctx *x, const int *cut, int s)
{
    return x->pre[cut[s + 1]] - x->pre[cut[s]] + (s == 0 ? x->embed : 0) +
           (s == x->NS - 1 ? x->head : 0);
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
                double own = x->pre[e] - x->pre[f] + (s == 1 ? x->embed : 0) +
                             (s == x->NS ? x->head : 0);
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

/* The cut that minimises the busiest rank, then the costliest stage, for layer costs pre[]
 * (prefix sums) with the embedding and the head on the first and last stage. */
static void sm_cut_best(sm_cut_ctx *x, double *best, int *at)
{
    if (x->p->nchunks > 1 && sm_cut_count(x->L, x->NS) <= SM_CUT_MAX_TRIES) {
        x->cut[0] = 0;
        x->cut[x->NS] = x->L;
        sm_cut_all(x, 1, 0);
    } else {
        sm_cut_dp(x, best, at);
    }
}

int sm_stage_cut(const sm_schedule *p, const sm_config *c, int S, sm_stage_span *span,
                 sm_error *err)
{
    int L = c->num_hidden_layers, NS = p->nstages, W = L + 1;
    double *pre = calloc(W, sizeof *pre), *best = malloc((size_t)(NS + 1) * W * sizeof *best);
    double *layer = malloc(W * sizeof *layer), embed = 0, head = 0;
    int *at = malloc((size_t)(NS + 1) * W * sizeof *at);
    int *cuts = malloc(2 * (size_t)(NS + 1) * sizeof *cuts);
    int rc = !pre || !best || !layer || !at || !cuts
                 ? sm_fail(err, "out of memory for the pipeline stages")
                 : sm_recorded_costs(c, S, layer, &embed, &head, err);
    if (rc == 0) {
        for (int l = 0; l < L; l++) pre[l + 1] = pre[l] + layer[l];
        sm_cut_ctx x = {.p = p, .L = L, .NS = NS, .pre = pre, .embed = embed, .head = head,
                        .cut = cuts, .best_cut = cuts + NS + 1, .best_rank = HUGE_VAL,
                        .best_stage = HUGE_VAL};
        sm_cut_best(&x, best, at);
        for (int s = 0; s < NS; s++)
            span[s] = (sm_stage_span){x.best_cut[s], x.best_cut[s + 1], s == 0, s == NS - 1};
    }
    free(pre);
    free(best);
    free(layer);
    free(at);
    free(cuts);
    return rc;
}
