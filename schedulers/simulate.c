/* The pipeline timing simulator: ranks advance through their programs as soon as a slot's
 * inputs have arrived (dependencies of docs/pipeline-schedules.md §4.1, transfers between ranks
 * taking the model's p2p time), until every slot has run or no rank can move. */
#include "schedulers/simulate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* One output of an op: when it was produced (-1: not yet), when it reaches another rank, and
 * the rank that produced it. */
typedef struct sm_sim_output {
    double end, sent;
    int rank;
} sm_sim_output;

/* Simulation state: each (direction, stage, micro-batch) item's forward output and input
 * gradient, and where each rank is in its program. */
typedef struct sm_sim_state {
    const sm_schedule *p;
    const sm_schedule_model *m;
    int nmicro;                  /* per direction */
    sm_sim_output *fwd, *grad;
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

/* Folds an input into the times an op waits for: `data` when it was produced, `arrive` when it
 * is on `rank`. Returns 0 while it is missing. */
static int sm_input(const sm_sim_output *o, int rank, double *data, double *arrive)
{
    if (o->end < 0) return 0;
    *data = fmax(*data, o->end);
    *arrive = fmax(*arrive, o->rank == rank ? o->end : o->sent);
    return 1;
}

/* Folds the op's inputs in, or returns 0 while one is missing. A forward needs the previous
 * stage's forward; a backward its own forward and the next stage's input gradient (none on the
 * last stage); a weight pass its backward. */
static int sm_op_inputs(const sm_sim_state *st, int rank, const sm_slot_op *o, double *data,
                        double *arrive)
{
    int dir, stage;
    sm_schedule_locate(st->p, rank, o->chunk, &dir, &stage);
    size_t at = sm_item(st, dir, stage, o->micro);
    if (o->kind == SM_SLOT_F)
        return stage == 0 || sm_input(&st->fwd[at - (size_t)st->nmicro], rank, data, arrive);
    if (o->kind == SM_SLOT_W) return sm_input(&st->grad[at], rank, data, arrive);
    if (!sm_input(&st->fwd[at], rank, data, arrive)) return 0;
    return stage == st->p->nstages - 1 ||
           sm_input(&st->grad[at + (size_t)st->nmicro], rank, data, arrive);
}

/* Records the outputs of an op that ended at time t; `hidden`: their transfers ran inside it. */
static void sm_op_done(sm_sim_state *st, int rank, const sm_slot_op *o, double t, int hidden)
{
    int dir, stage;
    sm_schedule_locate(st->p, rank, o->chunk, &dir, &stage);
    sm_sim_output done = {t, hidden ? t : t + st->m->comm.p2p, rank};
    if (o->kind == SM_SLOT_F) st->fwd[sm_item(st, dir, stage, o->micro)] = done;
    if (o->kind == SM_SLOT_B || o->kind == SM_SLOT_BW) {
        st->grad[sm_item(st, dir, stage, o->micro)] = done;
        st->alive[rank]--;
    }
}

/* A slot's length on `rank` and the all-to-all time it exposes (*a2a): one all-to-all per F,
 * B or BW op; a pair under `overlap` runs its two under its computation. */
static double sm_slot_length(const sm_sim_state *st, int rank, const sm_slot *s, double *a2a)
{
    const sm_schedule_model *m = st->m;
    double cost = sm_slot_cost(s, m->rank_costs ? &m->rank_costs[rank] : &m->costs), comm = 0;
    for (int i = 0; i < s->nops; i++) comm += s->op[i].kind == SM_SLOT_W ? 0 : m->comm.ep;
    double len = s->nops == 2 && m->comm.overlap ? fmax(cost, comm) : cost + comm;
    *a2a = len - cost;
    return len;
}

/* Runs the rank's next slot if its inputs exist; returns 1 when it ran. */
static int sm_try_slot(sm_sim_state *st, sm_schedule_sim *out, int rank)
{
    const sm_slot *s = &st->p->slots[rank][st->next[rank]];
    double data = st->free_at[rank], start = data, a2a;
    for (int i = 0; i < s->nops; i++)
        if (!sm_op_inputs(st, rank, &s->op[i], &data, &start)) return 0;
    double len = sm_slot_length(st, rank, s, &a2a), end = start + len;
    for (int i = 0; i < s->nops; i++) st->alive[rank] += s->op[i].kind == SM_SLOT_F;
    if (st->alive[rank] > out->peak_act[rank]) out->peak_act[rank] = st->alive[rank];
    for (int i = 0; i < s->nops; i++)
        sm_op_done(st, rank, &s->op[i], end, s->nops == 2 && st->m->comm.overlap);
    out->start[rank][st->next[rank]] = start;
    out->end[rank][st->next[rank]] = end;
    out->busy[rank] += len;
    out->p2p_wait[rank] += start - data;
    out->a2a[rank] += a2a;
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
    free(s->p2p_wait);
    free(s->a2a);
    free(s->peak_act);
    *s = (sm_schedule_sim){0};
}

static int sm_sim_alloc(const sm_schedule *p, sm_schedule_sim *out)
{
    size_t pp = (size_t)p->pp;
    *out = (sm_schedule_sim){.pp = p->pp, .start = calloc(pp, sizeof(double *)),
                         .end = calloc(pp, sizeof(double *)), .busy = calloc(pp, sizeof(double)),
                         .bubble = calloc(pp, sizeof(double)),
                         .p2p_wait = calloc(pp, sizeof(double)), .a2a = calloc(pp, sizeof(double)),
                         .peak_act = calloc(pp, sizeof(int))};
    if (!out->start || !out->end || !out->busy || !out->bubble || !out->p2p_wait || !out->a2a ||
        !out->peak_act)
        return -1;
    for (int r = 0; r < p->pp; r++) {
        size_t n = p->nslots[r] ? (size_t)p->nslots[r] : 1;
        if (!(out->start[r] = malloc(n * sizeof(double)))) return -1;
        if (!(out->end[r] = malloc(n * sizeof(double)))) return -1;
    }
    return 0;
}

static void sm_state_free(sm_sim_state *st)
{
    free(st->fwd);
    free(st->grad);
    free(st->next);
    free(st->free_at);
    free(st->alive);
}

static int sm_state_alloc(const sm_schedule *p, const sm_schedule_model *m, sm_sim_state *st)
{
    size_t items = (size_t)p->ndirs * (size_t)p->nstages * (size_t)sm_schedule_micro_per_dir(p);
    *st = (sm_sim_state){.p = p, .m = m, .nmicro = sm_schedule_micro_per_dir(p),
                         .fwd = malloc(items * sizeof(sm_sim_output)),
                         .grad = malloc(items * sizeof(sm_sim_output)),
                         .next = calloc((size_t)p->pp, sizeof(int)),
                         .free_at = calloc((size_t)p->pp, sizeof(double)),
                         .alive = calloc((size_t)p->pp, sizeof(int))};
    if (!st->fwd || !st->grad || !st->next || !st->free_at || !st->alive) return -1;
    for (size_t i = 0; i < items; i++) st->fwd[i] = st->grad[i] = (sm_sim_output){-1, -1, -1};
    return 0;
}

static void sm_sim_totals(const sm_schedule *p, sm_schedule_sim *out)
{
    for (int r = 0; r < p->pp; r++)
        for (int i = 0; i < p->nslots[r]; i++) out->makespan = fmax(out->makespan, out->end[r][i]);
    out->bubble_max = out->exposed_max = 0;
    for (int r = 0; r < p->pp; r++) {
        out->bubble[r] = out->makespan - out->busy[r];
        out->bubble_max = fmax(out->bubble_max, out->bubble[r]);
        out->exposed_max = fmax(out->exposed_max, out->p2p_wait[r] + out->a2a[r]);
    }
}

/* The model's costs and communication times are finite and >= 0. */
static int sm_model_check(const sm_schedule *p, const sm_schedule_model *m, sm_error *err)
{
    sm_error why = {{0}};
    for (int r = 0; r < (m->rank_costs ? p->pp : 0); r++)
        if (sm_schedule_costs_check(&m->rank_costs[r], &why))
            return sm_fail(err, "rank %d: %s", r, why.msg);
    if (!m->rank_costs && sm_schedule_costs_check(&m->costs, err)) return -1;
    if (!isfinite(m->comm.p2p) || m->comm.p2p < 0)
        return sm_fail(err, "p2p communication %g: expected a finite time >= 0", m->comm.p2p);
    if (!isfinite(m->comm.ep) || m->comm.ep < 0)
        return sm_fail(err, "all-to-all communication %g: expected a finite time >= 0",
                       m->comm.ep);
    return 0;
}

int sm_schedule_simulate(const sm_schedule *p, const sm_schedule_costs *c, sm_schedule_sim *out,
                         sm_error *err)
{
    return sm_schedule_simulate_model(p, &(sm_schedule_model){.costs = *c}, out, err);
}

int sm_schedule_simulate_model(const sm_schedule *p, const sm_schedule_model *m,
                               sm_schedule_sim *out, sm_error *err)
{
    *out = (sm_schedule_sim){0};
    if (sm_model_check(p, m, err)) return -1;
    sm_sim_state st;
    int rc = sm_state_alloc(p, m, &st) || sm_sim_alloc(p, out) ? -2 : sm_run_all(&st, out);
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
