/* The pipeline timing simulator: ranks advance through their programs as soon as a slot's
 * inputs exist (dependencies of docs/pipeline-schedules.md §4.1, transfers free), until every
 * slot has run or no rank can move. */
#include "schedulers/simulate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Simulation state: when each (direction, stage, micro-batch) item's forward output and input
 * gradient appeared (-1: not yet), and where each rank is in its program. */
typedef struct sm_sim_state {
    const sm_schedule *p;
    const sm_schedule_costs *c;
    int nmicro;                  /* per direction */
    double *f_end, *b_end;
    int *next;                   /* per rank: next slot to run */
    double *free_at;             /* per rank */
    int *alive;                  /* per rank: activations alive */
} sm_sim_state;

int sm_schedule_costs_check(const sm_schedule_costs *c, sm_error *err)
{
    const double v[4] = {c->f, c->b, c->w, c->fb};
    const char *names[4] = {"F", "B", "W", "FB"};
    for (int i = 0; i < 4; i++)
        if (!isfinite(v[i]) || v[i] < 0)
            return sm_fail(err, "cost %s = %g: expected a finite time >= 0", names[i], v[i]);
    return 0;
}

double sm_slot_cost(const sm_slot *s, const sm_schedule_costs *c)
{
    if (s->nops == 2) return c->fb;
    switch (s->op[0].kind) {
    case SM_SLOT_F: return c->f;
    case SM_SLOT_B: return c->b;
    case SM_SLOT_W: return c->w;
    case SM_SLOT_BW: return c->b + c->w;
    }
    return 0;
}

static size_t sm_item(const sm_sim_state *st, int dir, int stage, int micro)
{
    return ((size_t)dir * (size_t)st->p->nstages + (size_t)stage) * (size_t)st->nmicro +
           (size_t)micro;
}

/* When the op's inputs exist, or -1 while one is missing. A forward needs the previous stage's
 * forward; a backward its own forward and the next stage's input gradient (none on the last
 * stage); a weight pass its backward. */
static double sm_op_ready(const sm_sim_state *st, int rank, const sm_slot_op *o)
{
    int dir, stage;
    sm_schedule_locate(st->p, rank, o->chunk, &dir, &stage);
    if (o->kind == SM_SLOT_F)
        return stage == 0 ? 0 : st->f_end[sm_item(st, dir, stage - 1, o->micro)];
    if (o->kind == SM_SLOT_W) return st->b_end[sm_item(st, dir, stage, o->micro)];
    double own = st->f_end[sm_item(st, dir, stage, o->micro)];
    if (own < 0 || stage == st->p->nstages - 1) return own;
    double up = st->b_end[sm_item(st, dir, stage + 1, o->micro)];
    return up < 0 ? -1 : fmax(own, up);
}

/* Records the outputs of an op that ended at time t. */
static void sm_op_done(sm_sim_state *st, int rank, const sm_slot_op *o, double t)
{
    int dir, stage;
    sm_schedule_locate(st->p, rank, o->chunk, &dir, &stage);
    if (o->kind == SM_SLOT_F) st->f_end[sm_item(st, dir, stage, o->micro)] = t;
    if (o->kind == SM_SLOT_B || o->kind == SM_SLOT_BW) {
        st->b_end[sm_item(st, dir, stage, o->micro)] = t;
        st->alive[rank]--;
    }
}

/* Runs the rank's next slot if its inputs exist; returns 1 when it ran. */
static int sm_try_slot(sm_sim_state *st, sm_schedule_sim *out, int rank)
{
    const sm_slot *s = &st->p->slots[rank][st->next[rank]];
    double start = st->free_at[rank];
    for (int i = 0; i < s->nops; i++) {
        double ready = sm_op_ready(st, rank, &s->op[i]);
        if (ready < 0) return 0;
        start = fmax(start, ready);
    }
    double cost = sm_slot_cost(s, st->c), end = start + cost;
    for (int i = 0; i < s->nops; i++) st->alive[rank] += s->op[i].kind == SM_SLOT_F;
    if (st->alive[rank] > out->peak_act[rank]) out->peak_act[rank] = st->alive[rank];
    for (int i = 0; i < s->nops; i++) sm_op_done(st, rank, &s->op[i], end);
    out->start[rank][st->next[rank]] = start;
    out->end[rank][st->next[rank]] = end;
    out->busy[rank] += cost;
    st->free_at[rank] = end;
    st->next[rank]++;
    return 1;
}

/* Advances every rank as far as it can, pass after pass; returns the rank that is stuck, or
 * -1 when every program finished. */
static int sm_run_all(sm_sim_state *st, sm_schedule_sim *out)
{
    const sm_schedule *p = st->p;
    for (int moved = 1; moved;) {
        moved = 0;
        for (int r = 0; r < p->pp; r++)
            while (st->next[r] < p->nslots[r] && sm_try_slot(st, out, r)) moved = 1;
    }
    for (int r = 0; r < p->pp; r++)
        if (st->next[r] < p->nslots[r]) return r;
    return -1;
}

void sm_schedule_sim_free(sm_schedule_sim *s)
{
    for (int r = 0; r < s->pp; r++) {
        if (s->start) free(s->start[r]);
        if (s->end) free(s->end[r]);
    }
    free(s->start);
    free(s->end);
    free(s->busy);
    free(s->bubble);
    free(s->peak_act);
    *s = (sm_schedule_sim){0};
}

static int sm_sim_alloc(const sm_schedule *p, sm_schedule_sim *out)
{
    size_t pp = (size_t)p->pp;
    *out = (sm_schedule_sim){.pp = p->pp, .start = calloc(pp, sizeof(double *)),
                         .end = calloc(pp, sizeof(double *)), .busy = calloc(pp, sizeof(double)),
                         .bubble = calloc(pp, sizeof(double)), .peak_act = calloc(pp, sizeof(int))};
    if (!out->start || !out->end || !out->busy || !out->bubble || !out->peak_act) return -1;
    for (int r = 0; r < p->pp; r++) {
        size_t n = p->nslots[r] ? (size_t)p->nslots[r] : 1;
        if (!(out->start[r] = malloc(n * sizeof(double)))) return -1;
        if (!(out->end[r] = malloc(n * sizeof(double)))) return -1;
    }
    return 0;
}

static void sm_state_free(sm_sim_state *st)
{
    free(st->f_end);
    free(st->b_end);
    free(st->next);
    free(st->free_at);
    free(st->alive);
}

static int sm_state_alloc(const sm_schedule *p, const sm_schedule_costs *c, sm_sim_state *st)
{
    size_t items = (size_t)p->ndirs * (size_t)p->nstages * (size_t)sm_schedule_micro_per_dir(p);
    *st = (sm_sim_state){.p = p, .c = c, .nmicro = sm_schedule_micro_per_dir(p),
                         .f_end = malloc(items * sizeof(double)),
                         .b_end = malloc(items * sizeof(double)),
                         .next = calloc((size_t)p->pp, sizeof(int)),
                         .free_at = calloc((size_t)p->pp, sizeof(double)),
                         .alive = calloc((size_t)p->pp, sizeof(int))};
    if (!st->f_end || !st->b_end || !st->next || !st->free_at || !st->alive) return -1;
    for (size_t i = 0; i < items; i++) st->f_end[i] = st->b_end[i] = -1;
    return 0;
}

static void sm_sim_totals(const sm_schedule *p, sm_schedule_sim *out)
{
    for (int r = 0; r < p->pp; r++)
        for (int i = 0; i < p->nslots[r]; i++) out->makespan = fmax(out->makespan, out->end[r][i]);
    out->bubble_max = 0;
    for (int r = 0; r < p->pp; r++) {
        out->bubble[r] = out->makespan - out->busy[r];
        out->bubble_max = fmax(out->bubble_max, out->bubble[r]);
    }
}

int sm_schedule_simulate(const sm_schedule *p, const sm_schedule_costs *c, sm_schedule_sim *out, sm_error *err)
{
    *out = (sm_schedule_sim){0};
    if (sm_schedule_costs_check(c, err)) return -1;
    sm_sim_state st;
    int rc = sm_state_alloc(p, c, &st) || sm_sim_alloc(p, out) ? -2 : sm_run_all(&st, out);
    if (rc >= 0) {
        char tok[64];
        sm_slot_format(p, &p->slots[rc][st.next[rc]], tok, sizeof tok);
        sm_fail(err, "%s schedule: rank %d waits forever at slot %d (%s): its inputs never "
                     "appear", sm_schedule_policy_name(p->policy), rc, st.next[rc], tok);
    } else if (rc == -2) {
        sm_fail(err, "%s schedule: out of memory simulating pp %d, micro %d",
                sm_schedule_policy_name(p->policy), p->pp, p->micro);
    } else {
        sm_sim_totals(p, out);
    }
    sm_state_free(&st);
    if (rc == -1) return 0;
    sm_schedule_sim_free(out);
    return -1;
}
