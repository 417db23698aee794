/* Per-rank programs of the pipeline schedules, exactly as docs/pipeline-schedules.md §3 lays
 * them out (DualPipe's is upstream deepseek-ai/DualPipe's 8-step program). */
#include "schedulers/schedule.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds that keep a schedule's memory reasonable (a few slots per rank and micro-batch). */
enum { SM_SCHEDULE_MAX_PP = 1024, SM_SCHEDULE_MAX_MICRO = 65536, SM_SCHEDULE_MAX_WORK = 1 << 20 };

/* One rank's program while it is being built: the slots so far, the next micro-batch to
 * forward and to backward on each chunk (FIFO order), and the pending weight passes. */
typedef struct sm_prog {
    sm_slot *slot;
    int n;
    int fnext[2], bnext[2];
    sm_slot_op *wq;                   /* split backwards whose W has not been issued, oldest first */
    int whead, wtail;
} sm_prog;

static const char *sm_schedule_names[] = {"gpipe", "1f1b", "zbh1", "dualpipe", "dualpipev"};

int sm_schedule_policy_parse(const char *name, sm_schedule_policy *out, sm_error *err)
{
    for (int i = 0; i <= SM_SCHEDULE_DUALPIPEV; i++)
        if (!strcmp(name, sm_schedule_names[i])) {
            *out = (sm_schedule_policy)i;
            return 0;
        }
    return sm_fail(err, "policy '%s': unknown pipeline schedule (gpipe, 1f1b, zbh1, dualpipe, "
                        "dualpipev)", name);
}

const char *sm_schedule_policy_name(sm_schedule_policy policy)
{
    return policy <= SM_SCHEDULE_DUALPIPEV ? sm_schedule_names[policy] : "?";
}

int sm_schedule_micro_per_dir(const sm_schedule *p) { return p->micro / p->ndirs; }

void sm_schedule_locate(const sm_schedule *p, int rank, int chunk, int *dir, int *stage)
{
    *dir = 0;
    *stage = rank;
    if (chunk == 0) return;
    if (p->policy == SM_SCHEDULE_DUALPIPE) {
        *dir = 1;
        *stage = p->pp - 1 - rank;
    } else {
        *stage = 2 * p->pp - 1 - rank;
    }
}

/* ---- building a program ---- */

static void sm_prog_push(sm_prog *g, int nops, sm_slot_op a, sm_slot_op b)
{
    sm_slot *s = &g->slot[g->n++];
    s->nops = nops;
    s->op[0] = a;
    s->op[1] = b;
}

static sm_slot_op sm_prog_next_f(sm_prog *g, int chunk)
{
    return (sm_slot_op){SM_SLOT_F, chunk, g->fnext[chunk]++};
}

static void sm_prog_f(sm_prog *g, int chunk)
{
    sm_prog_push(g, 1, sm_prog_next_f(g, chunk), (sm_slot_op){0});
}

/* The next backward of the chunk: full (BW), or split (B now, its W queued). */
static void sm_prog_b(sm_prog *g, int chunk, int split)
{
    sm_slot_op b = {split ? SM_SLOT_B : SM_SLOT_BW, chunk, g->bnext[chunk]++};
    sm_prog_push(g, 1, b, (sm_slot_op){0});
    if (split) g->wq[g->wtail++] = (sm_slot_op){SM_SLOT_W, chunk, b.micro};
}

/* The oldest pending weight pass. */
static void sm_prog_w(sm_prog *g)
{
    sm_prog_push(g, 1, g->wq[g->whead++], (sm_slot_op){0});
}

/* An overlapped pair: the next forward of fchunk with the next full backward of bchunk. */
static void sm_prog_pair(sm_prog *g, int fchunk, int bchunk)
{
    sm_slot_op f = sm_prog_next_f(g, fchunk);
    sm_prog_push(g, 2, f, (sm_slot_op){SM_SLOT_BW, bchunk, g->bnext[bchunk]++});
}

/* ---- the schedules ---- */

static void sm_gpipe(sm_prog *g, int micro)
{
    for (int m = 0; m < micro; m++) sm_prog_f(g, 0);
    for (int m = 0; m < micro; m++) sm_prog_b(g, 0, 0);
}

typedef void (*sm_backward_fn)(sm_prog *g, int rank);

/* Megatron's 1F1B shape: min(pp-rank-1, micro) warm-up forwards, then (F, backward) pairs,
 * then the remaining backwards; `backward` issues each backward. */
static void sm_1f1b_shape(sm_prog *g, int pp, int rank, int micro, sm_backward_fn backward)
{
    int warm = pp - rank - 1 < micro ? pp - rank - 1 : micro;
    for (int i = 0; i < warm; i++) sm_prog_f(g, 0);
    for (int i = 0; i < micro - warm; i++) {
        sm_prog_f(g, 0);
        backward(g, rank);
    }
    for (int i = 0; i < warm; i++) backward(g, rank);
}

static void sm_full_backward(sm_prog *g, int rank)
{
    (void)rank;
    sm_prog_b(g, 0, 0);
}

/* ZB-H1: every backward split; rank r keeps its first r weight passes pending, then issues the
 * oldest one after each backward. */
static void sm_zb_backward(sm_prog *g, int rank)
{
    sm_prog_b(g, 0, 1);
    if (g->bnext[0] > rank) sm_prog_w(g);
}

static void sm_zbh1(sm_prog *g, int pp, int rank, int micro)
{
    sm_1f1b_shape(g, pp, rank, micro, sm_zb_backward);
    while (g->whead < g->wtail) sm_prog_w(g);
}

/* The 8-step DualPipe program of one rank (docs/pipeline-schedules.md §3.2): N micro-batches
 * per chunk, H half the ranks, h = the rank's distance to its nearer end, near/far its chunks. */
typedef struct sm_dual {
    int N, H, h, near, far, middle;
} sm_dual;

static void sm_dual_program(sm_prog *g, const sm_dual *d)
{
    int nr = d->near, fr = d->far, h = d->h, H = d->H;
    for (int i = 0; i < 2 * (H - h - 1); i++) sm_prog_f(g, nr);
    for (int i = 0; i < h + 1; i++) {
        sm_prog_f(g, nr);
        sm_prog_f(g, fr);
    }
    for (int i = 0; i < H - h - 1; i++) {
        sm_prog_b(g, fr, 1);
        sm_prog_w(g);
        sm_prog_f(g, fr);
    }
    for (int i = 0; i < d->N - 2 * H + h + 1; i++) {
        if (i == 0 && d->middle) { /* upstream runs this first pair unoverlapped */
            sm_prog_f(g, nr);
            sm_prog_b(g, fr, 0);
        } else {
            sm_prog_pair(g, nr, fr);
        }
        sm_prog_pair(g, fr, nr);
    }
    for (int i = 0; i < H - h - 1; i++) {
        sm_prog_b(g, fr, 0);
        sm_prog_pair(g, fr, nr);
    }
    int split = 0; /* the second half of step 6's backwards are split */
    for (int i = 0; i < h + 1; i++) {
        if (i == (h + 1) / 2 && h % 2 == 1) split = 1;
        sm_prog_b(g, fr, split);
        if (i == (h + 1) / 2 && h % 2 == 0) split = 1;
        sm_prog_b(g, nr, split);
    }
    for (int i = 0; i < H - h - 1; i++) {
        sm_prog_w(g);
        sm_prog_b(g, nr, 1);
    }
    for (int i = 0; i < h + 1; i++) sm_prog_w(g);
}

/* DualPipe: rank r holds stage r of direction 0 (chunk 0) and stage pp-1-r of direction 1;
 * DualPipeV is DualPipe's first half with H = pp (docs/pipeline-schedules.md §2). */
static sm_dual sm_dual_for(const sm_schedule *p, int rank)
{
    if (p->policy == SM_SCHEDULE_DUALPIPEV)
        return (sm_dual){p->micro, p->pp, rank, 0, 1, rank == p->pp - 1};
    int H = p->pp / 2, h = rank < p->pp - 1 - rank ? rank : p->pp - 1 - rank;
    int near = rank < H ? 0 : 1;
    return (sm_dual){p->micro / 2, H, h, near, 1 - near, h == H - 1};
}

static void sm_build_rank(const sm_schedule *p, sm_prog *g, int rank)
{
    sm_dual d;
    switch (p->policy) {
    case SM_SCHEDULE_GPIPE: sm_gpipe(g, p->micro); break;
    case SM_SCHEDULE_1F1B: sm_1f1b_shape(g, p->pp, rank, p->micro, sm_full_backward); break;
    case SM_SCHEDULE_ZBH1: sm_zbh1(g, p->pp, rank, p->micro); break;
    case SM_SCHEDULE_DUALPIPE:
    case SM_SCHEDULE_DUALPIPEV:
        d = sm_dual_for(p, rank);
        sm_dual_program(g, &d);
        break;
    }
}

/* ---- validation, allocation ---- */

static int sm_schedule_check(sm_schedule_policy policy, int pp, int micro, sm_error *err)
{
    const char *name = sm_schedule_policy_name(policy);
    if (pp < 1 || pp > SM_SCHEDULE_MAX_PP)
        return sm_fail(err, "pp %d: expected 1..%d pipeline ranks", pp, SM_SCHEDULE_MAX_PP);
    if (micro < 1 || micro > SM_SCHEDULE_MAX_MICRO)
        return sm_fail(err, "micro %d: expected 1..%d micro-batches", micro, SM_SCHEDULE_MAX_MICRO);
    if ((long)pp * micro > SM_SCHEDULE_MAX_WORK)
        return sm_fail(err, "pp %d x micro %d: more than %d (rank, micro-batch) pairs", pp,
                       micro, SM_SCHEDULE_MAX_WORK);
    if (policy == SM_SCHEDULE_DUALPIPE && pp % 2)
        return sm_fail(err, "pp %d: %s needs an even number of ranks (micro-batches enter from "
                            "both ends)", pp, name);
    if (policy == SM_SCHEDULE_DUALPIPE && micro % 2)
        return sm_fail(err, "micro %d: %s needs an even number of micro-batches (half per "
                            "direction)", micro, name);
    if ((policy == SM_SCHEDULE_DUALPIPE || policy == SM_SCHEDULE_DUALPIPEV) && micro < 2 * pp)
        return sm_fail(err, "micro %d: %s needs at least 2 x pp = %d micro-batches", micro,
                       name, 2 * pp);
    return 0;
}

void sm_schedule_free(sm_schedule *p)
{
    if (!p) return;
    for (int r = 0; p->slots && r < p->pp; r++) free(p->slots[r]);
    free(p->slots);
    free(p->nslots);
    free(p);
}

static sm_schedule *sm_schedule_alloc(sm_schedule_policy policy, int pp, int micro)
{
    sm_schedule *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    int dual = policy == SM_SCHEDULE_DUALPIPE || policy == SM_SCHEDULE_DUALPIPEV;
    *p = (sm_schedule){.policy = policy, .pp = pp, .micro = micro, .nchunks = dual ? 2 : 1,
                   .nstages = policy == SM_SCHEDULE_DUALPIPEV ? 2 * pp : pp,
                   .ndirs = policy == SM_SCHEDULE_DUALPIPE ? 2 : 1};
    p->nslots = calloc((size_t)pp, sizeof *p->nslots);
    p->slots = calloc((size_t)pp, sizeof *p->slots);
    if (!p->nslots || !p->slots) {
        sm_schedule_free(p);
        return NULL;
    }
    return p;
}

/* Builds every rank's program; every (chunk, micro-batch) item takes at most three slots. */
static int sm_schedule_build(sm_schedule *p, sm_slot_op *wq, size_t items)
{
    for (int r = 0; r < p->pp; r++) {
        sm_prog g = {.slot = malloc(3 * items * sizeof(sm_slot)), .wq = wq};
        if (!(p->slots[r] = g.slot)) return -1;
        sm_build_rank(p, &g, r);
        p->nslots[r] = g.n;
    }
    return 0;
}

sm_schedule *sm_schedule_new(sm_schedule_policy policy, int pp, int micro, sm_error *err)
{
    if (sm_schedule_check(policy, pp, micro, err)) return NULL;
    sm_schedule *p = sm_schedule_alloc(policy, pp, micro);
    size_t items = p ? (size_t)p->nchunks * (size_t)sm_schedule_micro_per_dir(p) : 0;
    sm_slot_op *wq = p ? malloc(items * sizeof *wq) : NULL;
    int rc = wq ? sm_schedule_build(p, wq, items) : -1;
    free(wq);
    if (rc == 0) return p;
    sm_schedule_free(p);
    sm_fail(err, "%s schedule for pp %d, micro %d: out of memory", sm_schedule_policy_name(policy),
            pp, micro);
    return NULL;
}

/* ---- notation ---- */

static int sm_op_format(const sm_schedule *p, const sm_slot_op *o, char *buf, size_t n)
{
    static const char *kinds[] = {"F", "B", "W", "BW"};
    if (p->nchunks == 1) return snprintf(buf, n, "%s%d", kinds[o->kind], o->micro);
    return snprintf(buf, n, "%s%d.%d", kinds[o->kind], o->micro, o->chunk);
}

int sm_slot_format(const sm_schedule *p, const sm_slot *s, char *buf, size_t n)
{
    if (s->nops == 1) return sm_op_format(p, &s->op[0], buf, n);
    char a[32], b[32];
    sm_op_format(p, &s->op[0], a, sizeof a);
    sm_op_format(p, &s->op[1], b, sizeof b);
    return snprintf(buf, n, "(%s&%s)", a, b);
}
