/* Pipeline parallelism inside one process (docs/pipeline-schedules.md): a schedule from
 * schedulers/schedule.h cuts the layers into stages; pipeline rank r is a lane of the engine's
 * workers (schedulers/ordered.h) and runs its chunks' F, B, W and BW slots in its program
 * order. A step's slots are submitted in the order of the schedule's simulated timeline, which
 * respects every cross-rank dependency, so StarPU's data dependencies are those of the
 * schedule. Gradient copies: DualPipe's two directions accumulate into two copies summed at
 * the end of the step; in deterministic mode every micro-batch has its own copy, summed in
 * micro-batch order. */
#include "model/model.h"

#include <starpu_mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "schedulers/ordered.h"
#include "schedulers/overlap.h"
#include "schedulers/schedule.h"
#include "model/comm.h"
#include "schedulers/simulate.h"
#include "tasks/dense.h"

typedef struct sm_slot_ref {
    double start;
    int rank, slot;
} sm_slot_ref;

struct sm_pipeline {
    sm_schedule *pipe;
    sm_stage_span *span;         /* [pipe->nstages] */
    int64_t *order_next;         /* [pp]: next order number of each rank's lane */
    sm_slot_ref *order;          /* every slot, in submission order */
    int nslots;
    int interleave;              /* overlapped slots' chunks interleaved (sm_emit_pair) */
    unsigned char *held;         /* [pp][L + 2]: what each pipeline rank holds (sm_mark_held) */
};

int sm_pipeline_defers_weights(const sm_run_opts *o)
{
    sm_schedule_policy p;
    return o && o->pipeline && sm_schedule_policy_parse(o->pipeline, &p, NULL) == 0 &&
           (p == SM_SCHEDULE_ZBH1 || p == SM_SCHEDULE_DUALPIPE || p == SM_SCHEDULE_DUALPIPEV);
}

const char *sm_run_pipeline_of(const char *sched)
{
    sm_schedule_policy p;
    return sched && sm_schedule_policy_parse(sched, &p, NULL) == 0 ? sched : NULL;
}

/* Whether parameter p's gradient receives units of copy c: every copy, for this rank's routed
 * experts (they take the units of every source of the group); otherwise the copies of this
 * rank's units. */
static int sm_copy_used(const sm_run *r, const sm_param *p, int c)
{
    int units = r->micro * r->ep, mine = 0;
    if (p->expert >= 0 && sm_expert_here(r, p->expert)) return 1;
    for (int u = r->ep_index * r->micro; u < (r->ep_index + 1) * r->micro; u++)
        mine |= r->copy_of_unit[u] == c;
    return units == r->micro || mine;
}

/* Copy c of every gradient that uses it; `own` makes copy c the gradient itself. */
static int sm_copies_add(sm_run *r, int c, int own, const char *tag, sm_error *err)
{
    sm_model *m = r->m;
    if (!(r->gcopy[c] = calloc(m->nall, sizeof *r->gcopy[c])))
        return sm_fail(err, "out of memory for gradient copies");
    for (int i = 0; i < m->nall; i++) {
        sm_tensor *g = m->all[i].g;
        char name[300];
        if (!g || !sm_copy_used(r, &m->all[i], c)) continue;
        if (own) {
            r->gcopy[c][i] = g;
            continue;
        }
        snprintf(name, sizeof name, "%s.%s", tag, g->name);
        if (!(r->gcopy[c][i] = sm_tensor_new_in(m->g, &r->owned, name, SM_F32, SM_GRAD, g->ndim,
                                                g->shape, err)))
            return -1;
    }
    return 0;
}

/* ncopies copies over the ep * micro units: one per unit, or fewer, unit u = (src, mb) going
 * to copy mb * ncopies / micro (DualPipe's two directions: a micro-batch's direction is the
 * same on every source); with own_first, copy 0 is the gradient itself. */
static int sm_copies_setup(sm_run *r, int ncopies, int own_first, sm_error *err)
{
    int units = r->micro * r->ep;
    r->ncopies = ncopies;
    r->gcopy = calloc(ncopies, sizeof *r->gcopy);
    r->copy_of_unit = calloc(units, sizeof *r->copy_of_unit);
    if (!r->gcopy || !r->copy_of_unit) return sm_fail(err, "out of memory for gradient copies");
    for (int u = 0; u < units; u++)
        r->copy_of_unit[u] = ncopies == units ? u : u % r->micro * ncopies / r->micro;
    for (int c = 0; c < ncopies; c++) {
        char tag[32];
        snprintf(tag, sizeof tag, ncopies != units ? "copy%d" : r->ep > 1 ? "unit%d" : "mb%d",
                 c);
        if (sm_copies_add(r, c, own_first && c == 0, tag, err)) return -1;
    }
    return 0;
}

static int sm_cmp_slot_ref(const void *a, const void *b)
{
    const sm_slot_ref *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    if (x->rank != y->rank) return x->rank - y->rank;
    return x->slot - y->slot;
}

/* Submission order: every slot by its start in the simulated timeline (unit costs). A slot
 * starts only after the slots producing its inputs have ended, so this order is a topological
 * order of the schedule; ties are between independent slots. */
static int sm_order_slots(sm_pipeline *pl, sm_error *err)
{
    const sm_schedule *p = pl->pipe;
    sm_schedule_costs unit = {1, 1, 1, 2};
    sm_schedule_sim sim;
    if (sm_schedule_simulate(p, &unit, &sim, err)) return -1;
    pl->nslots = 0;
    for (int r = 0; r < p->pp; r++) pl->nslots += p->nslots[r];
    if (!(pl->order = malloc(pl->nslots * sizeof *pl->order))) {
        sm_schedule_sim_free(&sim);
        return sm_fail(err, "out of memory for the pipeline order");
    }
    int n = 0;
    for (int r = 0; r < p->pp; r++)
        for (int k = 0; k < p->nslots[r]; k++)
            pl->order[n++] = (sm_slot_ref){sim.start[r][k], r, k};
    sm_schedule_sim_free(&sim);
    qsort(pl->order, pl->nslots, sizeof *pl->order, sm_cmp_slot_ref);
    return 0;
}

/* The lanes of this process: one per pipeline rank, or only its own when the pipeline ranks
 * are MPI ranks. */
static int sm_lanes(const sm_run *r) { return r->pp_ranks > 1 ? 1 : r->pl->pipe->pp; }

/* The engine side: the policy in force must order lanes, one lane per rank. */
static int sm_bind_lanes(const sm_run *r, const sm_run_opts *o, sm_error *err)
{
    if (!sm_graph_executes(r->m->g)) return 0;
    if (r->pp_ranks > 1 && !sm_ordered_active())
        return sm_fail(err, "pipeline '%s' over %d ranks needs an ordered scheduling policy: "
                            "set engine.sched to %s (the policy in force is '%s')", o->pipeline,
                       r->pp_ranks, o->pipeline, sm_engine_sched_name());
    if (r->pp_ranks > 1) return sm_ordered_set_lanes(1, err);
    if (!sm_ordered_active())
        return sm_fail(err, "pipeline '%s' needs an ordered scheduling policy: run with --sched "
                            "%s (the policy in force is '%s')", o->pipeline, o->pipeline,
                       sm_engine_sched_name());
    if (o->pp > (int)starpu_worker_get_count())
        return sm_fail(err, "pipeline '%s': %d ranks need at least %d workers (the engine has "
                            "%u)", o->pipeline, o->pp, o->pp, starpu_worker_get_count());
    return sm_ordered_set_lanes(o->pp, err);
}

/* Marks in held[0 .. L + 1] (sm_model.held_layers) what pipeline rank p's stage chunks hold. */
static void sm_mark_held(const sm_schedule *pipe, const sm_stage_span *span, int L, int p,
                         unsigned char *held)
{
    memset(held, 0, (size_t)L + 2);
    for (int k = 0; k < pipe->nchunks; k++) {
        int dir, stage;
        sm_schedule_locate(pipe, p, k, &dir, &stage);
        const sm_stage_span *sp = &span[stage];
        held[0] |= sp->embed;
        held[L + 1] |= sp->head;
        for (int l = sp->first; l < sp->end; l++) held[l + 1] = 1;
    }
}

int sm_pipeline_held_layers(const sm_config *cfg, const char *policy, int pp, int micro, int S,
                            int p, unsigned char *held, sm_error *err)
{
    sm_schedule_policy pol;
    if (sm_schedule_policy_parse(policy, &pol, err)) return -1;
    sm_schedule *pipe = sm_schedule_new(pol, pp, micro, err);
    sm_stage_span *span = pipe ? calloc(pipe->nstages, sizeof *span) : NULL;
    int rc = !pipe ? -1 : !span ? sm_fail(err, "out of memory for the pipeline stages")
                                : sm_stage_cut(pipe, cfg, S, span, err);
    if (rc == 0) sm_mark_held(pipe, span, cfg->num_hidden_layers, p, held);
    free(span);
    sm_schedule_free(pipe);
    return rc;
}

/* Every pipeline rank's held layers, once the stages are cut. */
static int sm_held_setup(sm_pipeline *pl, int L, sm_error *err)
{
    size_t row = (size_t)L + 2;
    if (!(pl->held = malloc((size_t)pl->pipe->pp * row)))
        return sm_fail(err, "out of memory for the pipeline stages");
    for (int p = 0; p < pl->pipe->pp; p++)
        sm_mark_held(pl->pipe, pl->span, L, p, pl->held + p * row);
    return 0;
}

/* Whether pipeline rank p holds parameter layer `layer` (every rank, unless the model is
 * sharded by stages). */
static int sm_pp_holds(const sm_run *r, int p, int layer)
{
    if (!r->m->held_layers || !r->pl) return 1;
    return r->pl->held[(size_t)p * (r->m->dims.L + 2) + layer + 1];
}

int sm_pipeline_rank_holds(const sm_run *r, int rank, const sm_param *p)
{
    int share = rank % r->shares;
    if (r->m->shard_ep > 1 && p->expert >= 0 && sm_expert_owner(r, p->expert) != share % r->ep)
        return 0;
    return sm_pp_holds(r, rank / r->shares, p->layer);
}

int sm_pipeline_source(const sm_run *r, const sm_param *p, int rank)
{
    int pp = rank / r->shares, share = rank % r->shares;
    if (!sm_pp_holds(r, pp, p->layer)) pp = sm_pipeline_first_holder(r, p->layer);
    if (r->m->shard_ep > 1 && p->expert >= 0)
        share += sm_expert_owner(r, p->expert) - share % r->ep;
    return sm_rank_at(r, pp, share);
}

int sm_pipeline_first_holder(const sm_run *r, int layer)
{
    for (int p = 0; p < r->pp_ranks; p++)
        if (sm_pp_holds(r, p, layer)) return p;
    return 0;
}

/* A model sharded by stages must hold exactly this pipeline rank's layers. */
static int sm_check_held(const sm_run *r, sm_error *err)
{
    const sm_model *m = r->m;
    size_t row = (size_t)m->dims.L + 2;
    if (!m->held_layers) return 0;
    if (r->pp_ranks > 1 && !memcmp(r->pl->held + r->pp_index * row, m->held_layers, row))
        return 0;
    return sm_fail(err, "the model holds the layers of another pipeline rank than this run's "
                        "(pipeline rank %d of %d): build it with sm_model_new_stages and "
                        "sm_pipeline_held_layers for this rank", r->pp_index, r->pp_ranks);
}

int sm_pipeline_setup(sm_run *r, const sm_run_opts *o, sm_error *err)
{
    sm_schedule_policy policy;
    int pp = o && o->pp > 0 ? o->pp : 1;
    if (o && o->deterministic && r->backward &&
        sm_copies_setup(r, r->micro * r->ep, 0, err))
        return -1;
    if (!o || !o->pipeline) {
        if (pp > 1)
            return sm_fail(err, "pp %d: pipeline parallelism needs a pipeline schedule "
                                "(gpipe, 1f1b, zbh1, dualpipe or dualpipev)", pp);
        return 0;
    }
    if (!r->backward && r->pp_ranks <= 1)
        return sm_fail(err, "pipeline '%s': a pipeline schedule needs a training (backward) "
                            "step", o->pipeline);
    if (sm_schedule_policy_parse(o->pipeline, &policy, err)) return -1;
    if (!(r->pl = calloc(1, sizeof *r->pl))) return sm_fail(err, "out of memory");
    sm_pipeline *pl = r->pl;
    if (!(pl->pipe = sm_schedule_new(policy, pp, r->micro, err))) return -1;
    pl->interleave = !o->fb_serial;
    if (!(pl->order_next = calloc(pp, sizeof *pl->order_next)))
        return sm_fail(err, "out of memory");
    if (!(pl->span = calloc(pl->pipe->nstages, sizeof *pl->span)))
        return sm_fail(err, "out of memory for the pipeline stages");
    if (sm_stage_cut(pl->pipe, &r->m->cfg, r->S, pl->span, err) ||
        sm_held_setup(pl, r->m->dims.L, err) || sm_check_held(r, err) || sm_order_slots(pl, err))
        return -1;
    if (r->backward && pl->pipe->ndirs == 2 && !r->ncopies && sm_copies_setup(r, 2, 1, err))
        return -1;
    return sm_bind_lanes(r, o, err);
}

/* ---- pipeline ranks on MPI ranks ---- */

/* Message tags: what, where (a layer boundary 0..L, or a layer), micro-batch. */
enum { SM_PP_TAG = 0x50500000 };
enum { SM_PP_ACT, SM_PP_GRAD, SM_PP_LOSS, SM_PP_BAL, SM_PP_PLAN };

static starpu_mpi_tag_t sm_pp_tag(const sm_run *r, int what, int at, int mb)
{
    return SM_PP_TAG + (((starpu_mpi_tag_t)what * (r->m->dims.L + 1) + at) * r->micro + mb);
}

/* The MPI rank of pipeline rank p in this rank's pipeline group. */
static int sm_pp_mpi(const sm_run *r, int p) { return sm_rank_at(r, p, r->share); }

/* The pipeline rank running stage `stage` of direction `dir`. */
static int sm_stage_owner(const sm_pipeline *pl, int dir, int stage)
{
    for (int p = 0; p < pl->pipe->pp; p++)
        for (int k = 0; k < pl->pipe->nchunks; k++) {
            int d, s;
            sm_schedule_locate(pl->pipe, p, k, &d, &s);
            if (d == dir && s == stage) return p;
        }
    return -1;
}

/* The stage holding layer l (L: the head). */
static int sm_stage_of_layer(const sm_pipeline *pl, int l, int L)
{
    for (int s = 0; s < pl->pipe->nstages; s++)
        if ((l < L && l >= pl->span[s].first && l < pl->span[s].end) || (l == L && pl->span[s].head))
            return s;
    return -1;
}

/* The direction micro-batch mb goes in (a forward-only run sends every one along the first). */
static int sm_dir_of(const sm_run *r, int mb)
{
    return r->backward ? mb / sm_schedule_micro_per_dir(r->pl->pipe) : 0;
}

/* The pipeline rank that computes micro-batch mb's layer l (L: its head and loss). */
static int sm_producer(const sm_run *r, int mb, int l)
{
    return sm_stage_owner(r->pl, sm_dir_of(r, mb), sm_stage_of_layer(r->pl, l, r->m->dims.L));
}

/* Tensor t of micro-batch mb's layer l (L: the loss part) from its producer to every other
 * pipeline rank: the producer sends, the others receive. */
static int sm_pp_share(sm_run *r, sm_tensor *t, int what, int l, int mb, sm_error *err)
{
    int from = sm_producer(r, mb, l);
    starpu_mpi_tag_t tag = sm_pp_tag(r, what, l, mb);
    if (from != r->pp_index)
        return sm_comm_recv(t->handle, sm_pp_mpi(r, from), tag, t->name, err);
    for (int p = 0; p < r->pp_ranks; p++)
        if (p != r->pp_index && sm_comm_send(t->handle, sm_pp_mpi(r, p), tag, t->name, err))
            return -1;
    return 0;
}

/* The boundary tensors of an op's stage: before it, the input from the stage before (a
 * forward's activation) or after (a backward's gradient) when another pipeline rank runs it;
 * after it, its output to the rank running the next stage that way. */
static int sm_pp_boundary(sm_run *r, int dir, int stage, int mb, int kind, int after,
                          sm_error *err)
{
    const sm_pipeline *pl = r->pl;
    const sm_stage_span *sp = &pl->span[stage];
    int fwd = kind == SM_SLOT_F, input = kind == SM_SLOT_B || kind == SM_SLOT_BW;
    if (!fwd && !input) return 0;
    /* forward: in from stage - 1 at sp->first, out to stage + 1 at sp->end; backward mirrored */
    int toward = fwd == after ? stage + 1 : stage - 1, at = toward > stage ? sp->end : sp->first;
    if (toward < 0 || toward >= pl->pipe->nstages) return 0;
    int peer = sm_stage_owner(pl, dir, toward);
    if (peer == r->pp_index) return 0;
    sm_tensor *t = fwd ? r->mb[mb].x[at] : r->mb[mb].dx[2 * at];
    starpu_mpi_tag_t tag = sm_pp_tag(r, fwd ? SM_PP_ACT : SM_PP_GRAD, at, mb);
    return after ? sm_comm_send(t->handle, sm_pp_mpi(r, peer), tag, t->name, err)
                 : sm_comm_recv(t->handle, sm_pp_mpi(r, peer), tag, t->name, err);
}

/* Micro-batch mb's balance-loss part and (with a backward pass) routing plan of MoE layer l,
 * from the rank that computes them to the others (sm_pp_share). */
static int sm_pp_share_layer(sm_run *r, int l, int mb, sm_error *err)
{
    sm_layer_acts *a = &r->mb[mb].layers[l];
    if (!r->m->layers[l].moe) return 0;
    return sm_pp_share(r, a->bal_loss, SM_PP_BAL, l, mb, err) ||
                   (r->backward && sm_pp_share(r, a->plan, SM_PP_PLAN, l, mb, err))
               ? -1
               : 0;
}

/* After a forward on this rank: its loss part, balance-loss parts and routing plans to the
 * other pipeline ranks (for the loss sums and the router bias updates every rank runs). */
static int sm_pp_share_forward(sm_run *r, const sm_stage_span *sp, int mb, sm_error *err)
{
    for (int l = sp->first; l < sp->end; l++)
        if (sm_pp_share_layer(r, l, mb, err)) return -1;
    return sp->head ? sm_pp_share(r, r->mb[mb].loss_part, SM_PP_LOSS, r->m->dims.L, mb, err)
                    : 0;
}

/* What this rank receives of the forwards others run (sm_pp_share_forward's other side). */
static int sm_pp_receive_forwards(sm_run *r, sm_error *err)
{
    int L = r->m->dims.L;
    for (int mb = 0; mb < r->micro; mb++) {
        for (int l = 0; l < L; l++)
            if (sm_producer(r, mb, l) != r->pp_index && sm_pp_share_layer(r, l, mb, err))
                return -1;
        if (sm_producer(r, mb, L) != r->pp_index &&
            sm_pp_share(r, r->mb[mb].loss_part, SM_PP_LOSS, L, mb, err))
            return -1;
    }
    return 0;
}

/* The MPI rank running parameter p's stage in direction dir for share `share`. */
static int sm_param_producer(const sm_run *r, const sm_param *p, int dir, int share)
{
    const sm_pipeline *pl = r->pl;
    /* the embedding is in stage 0, the final norm and head in the last */
    int stage = p->layer < 0 ? 0 : sm_stage_of_layer(pl, p->layer, r->m->dims.L);
    return sm_rank_at(r, sm_stage_owner(pl, dir, stage), share);
}

/* Deterministic DualPipe with expert parallelism: a routed expert's units (source, micro-batch)
 * alternate between the ranks of its stage's two directions, source by source, so no chain of
 * per-rank sums adds them in unit order. The second direction's rank sends its units' copies
 * to the first, which sums every unit in order (sm_pipeline_reduce). Whether p's units are
 * gathered so. */
static int sm_units_gathered(const sm_run *r, const sm_param *p)
{
    return r->pp_ranks > 1 && r->pl && r->pl->pipe->ndirs == 2 && r->ep > 1 &&
           r->ncopies == r->micro * r->ep && p->expert >= 0;
}

int sm_pipeline_producers(const sm_run *r, const sm_param *p, int share, int *ranks)
{
    int n = 0, dirs = sm_units_gathered(r, p) ? 1 : r->pl->pipe->ndirs;
    for (int dir = 0; dir < dirs; dir++) {
        int q = sm_param_producer(r, p, dir, share);
        if (n == 0 || ranks[0] != q) ranks[n++] = q;
    }
    return n;
}

/* Message tags of gathered units: one per (parameter, unit), above those of expert
 * parallelism (model/expert_parallel.c). */
static const starpu_mpi_tag_t SM_PP_UNIT_TAG = (starpu_mpi_tag_t)2 << 40;

/* sm_units_gathered's messages: the second direction's units of this rank's routed experts
 * from their rank to the first's. Returns through *skip whether this rank's copies of p are
 * sent away (and so not added here). */
static int sm_gather_units(sm_run *r, const sm_param *p, int *skip, sm_error *err)
{
    *skip = 0;
    if (!sm_units_gathered(r, p) || !sm_expert_here(r, p->expert)) return 0;
    int first = sm_param_producer(r, p, 0, r->share), second = sm_param_producer(r, p, 1, r->share);
    int me = sm_engine_rank(), units = r->micro * r->ep;
    if (first == second || (me != first && me != second)) return 0;
    *skip = me == second;
    for (int u = 0; u < units; u++) {
        sm_tensor *t = r->gcopy[u][p->index];
        starpu_mpi_tag_t tag = SM_PP_UNIT_TAG + (starpu_mpi_tag_t)p->index * units + u;
        if (sm_dir_of(r, u % r->micro) != 1) continue;
        if (me == second ? sm_comm_send(t->handle, first, tag, t->name, err)
                         : sm_comm_recv(t->handle, second, tag, t->name, err))
            return -1;
    }
    return 0;
}

/* One op of rank `rank`'s program: its chunk's stage, for its micro-batch, its tasks numbered
 * in the lane's order (or by plan); with `messages`, also the boundary messages when the
 * pipeline ranks are MPI ranks. */
static int sm_emit_chunk(sm_run *r, int rank, int dir, int stage, int mb, sm_slot_kind kind,
                         sm_order_plan *plan, int messages, sm_error *err)
{
    sm_pipeline *pl = r->pl;
    int over = messages && r->pp_ranks > 1, rc = -1;
    sm_op_ctx c = {.g = r->m->g, .layer = -1, .micro = mb, .stage = rank,
                   .order_next = pl->order_next, .lane = r->pp_ranks > 1 ? 0 : rank,
                   .plan = plan, .err = err};
    const sm_stage_span *sp = &pl->span[stage];
    if (over && sm_pp_boundary(r, dir, stage, mb, kind, 0, err)) return -1;
    switch (kind) {
    case SM_SLOT_F: rc = sm_stage_fwd(r, &c, sp, mb); break;
    case SM_SLOT_B: rc = sm_stage_bwd(r, &c, sp, mb, SM_BWD_INPUT); break;
    case SM_SLOT_W: rc = sm_stage_bwd(r, &c, sp, mb, SM_BWD_WEIGHT); break;
    case SM_SLOT_BW: rc = sm_stage_bwd(r, &c, sp, mb, SM_BWD_FULL); break;
    default:
        return sm_fail(err, "pipeline: rank %d: slot op of unknown kind %d", rank, (int)kind);
    }
    if (rc || !over) return rc;
    if (sm_pp_boundary(r, dir, stage, mb, kind, 1, err)) return -1;
    return kind == SM_SLOT_F ? sm_pp_share_forward(r, sp, mb, err) : 0;
}

static int sm_emit_op(sm_run *r, int rank, const sm_slot_op *op, sm_order_plan *plan,
                      int messages, sm_error *err)
{
    int dir, stage;
    sm_schedule_locate(r->pl->pipe, rank, op->chunk, &dir, &stage);
    int mb = dir * sm_schedule_micro_per_dir(r->pl->pipe) + op->micro;
    return sm_emit_chunk(r, rank, dir, stage, mb, op->kind, plan, messages, err);
}

/* A forward-only run over pipeline ranks on MPI ranks (evaluation of a model sharded by
 * stages): every micro-batch along the first direction, this rank's stages in order, each for
 * every micro-batch. */
static int sm_pipeline_build_forward(sm_run *r, sm_error *err)
{
    sm_pipeline *pl = r->pl;
    for (int stage = 0; stage < pl->pipe->nstages; stage++) {
        if (sm_stage_owner(pl, 0, stage) != r->pp_index) continue;
        for (int mb = 0; mb < r->micro; mb++)
            if (sm_emit_chunk(r, r->pp_index, 0, stage, mb, SM_SLOT_F, NULL, 1, err)) return -1;
    }
    return sm_pp_receive_forwards(r, err);
}

/* An overlapped slot (a forward and a backward of other micro-batches) in the order the
 * interleaving policy gives its tasks from their metadata (schedulers/overlap.h): a first pass
 * collects them (nothing inserted, no message), the second inserts them, each chunk in its
 * own build order, with the planned numbers. */
static int sm_emit_pair(sm_run *r, int rank, const sm_slot *s, sm_error *err)
{
    sm_pipeline *pl = r->pl;
    int lane = r->pp_ranks > 1 ? 0 : rank, rc = 0;
    sm_order_plan plan = {.collecting = 1};
    size_t nf;
    r->planning = 1;
    rc = sm_emit_op(r, rank, &s->op[0], &plan, 0, err);
    nf = plan.n;
    rc = rc || sm_emit_op(r, rank, &s->op[1], &plan, 0, err);
    r->planning = 0;
    int64_t *order = rc ? NULL : malloc((plan.n ? plan.n : 1) * sizeof *order);
    if (!rc && !order) rc = sm_fail(err, "out of memory for a slot's plan");
    if (!rc) {
        sm_overlap_interleave(plan.meta, nf, plan.meta + nf, plan.n - nf, order);
        plan = (sm_order_plan){.meta = plan.meta, .n = plan.n, .order = order,
                               .base = pl->order_next[lane]};
        rc = sm_emit_op(r, rank, &s->op[0], &plan, 1, err) ||
             sm_emit_op(r, rank, &s->op[1], &plan, 1, err);
        if (!rc && plan.at != plan.n)
            rc = sm_fail(err, "pipeline: rank %d: a slot inserted %zu tasks of the %zu its plan "
                         "collected", rank, plan.at, plan.n);
        pl->order_next[lane] += (int64_t)plan.n;
    }
    free(order);
    free(plan.meta);
    return rc ? -1 : 0;
}

int sm_run_pipeline_summary(const sm_run *r, char *buf, size_t n)
{
    const sm_pipeline *pl = r->pl;
    size_t at = 0;
    if (!pl) return snprintf(buf, n, "no pipeline");
    at += snprintf(buf, n, "%s, %d ranks:", sm_schedule_policy_name(pl->pipe->policy), pl->pipe->pp);
    for (int s = 0; s < pl->pipe->nstages && at < n; s++) {
        const sm_stage_span *sp = &pl->span[s];
        at += snprintf(buf + at, n - at, " stage %d = %s", s, sp->embed ? "embedding + " : "");
        if (at >= n) break;
        if (sp->end > sp->first)
            at += snprintf(buf + at, n - at, "layers %d-%d", sp->first, sp->end - 1);
        else
            at += snprintf(buf + at, n - at, "no layer");
        if (at < n && sp->head) at += snprintf(buf + at, n - at, " + head");
        if (at < n && sp->head && r->D)
            at += snprintf(buf + at, n - at, " + %d MTP module(s)", r->D);
        if (at < n && s + 1 < pl->pipe->nstages) at += snprintf(buf + at, n - at, ";");
    }
    return (int)at;
}

const sm_schedule *sm_pipeline_schedule(const sm_run *r) { return r->pl ? r->pl->pipe : NULL; }

int sm_pipeline_begin(sm_run *r, sm_error *err)
{
    memset(r->pl->order_next, 0, r->pl->pipe->pp * sizeof *r->pl->order_next);
    /* lanes again, not only a restart: another run may have set other lanes since */
    return sm_graph_executes(r->m->g) ? sm_ordered_set_lanes(sm_lanes(r), err) : 0;
}

int sm_pipeline_build(sm_run *r, sm_error *err)
{
    sm_pipeline *pl = r->pl;
    if (!r->backward) return sm_pipeline_build_forward(r, err);
    for (int i = 0; i < pl->nslots; i++) {
        const sm_slot *s = &pl->pipe->slots[pl->order[i].rank][pl->order[i].slot];
        /* over MPI ranks, this rank's own program only */
        if (r->pp_ranks > 1 && pl->order[i].rank != r->pp_index) continue;
        if (s->nops == 2 && pl->interleave) {
            if (sm_emit_pair(r, pl->order[i].rank, s, err)) return -1;
            continue;
        }
        for (int k = 0; k < s->nops; k++)
            if (sm_emit_op(r, pl->order[i].rank, &s->op[k], NULL, 1, err)) return -1;
    }
    return r->pp_ranks > 1 ? sm_pp_receive_forwards(r, err) : 0;
}

int sm_pipeline_reduce(sm_run *r, sm_error *err)
{
    sm_model *m = r->m;
    sm_op_ctx step = {.g = m->g, .layer = -1, .micro = -1, .err = err};
    for (int i = 0; i < m->nall; i++) {
        sm_tensor *g = m->all[i].g, *srcs[r->ncopies + 1];
        sm_tensor *partial = r->dp && g ? sm_dp_partial(r->dp, i) : NULL;
        int n = 0, own = !r->ncopies, skip = 0;  /* without copies, g holds this rank's sum */
        if (!g || (!r->ncopies && !partial)) continue;
        if (r->ncopies && sm_gather_units(r, &m->all[i], &skip, err)) return -1;
        if (partial) srcs[n++] = partial;
        for (int c = 0; c < r->ncopies && !skip; c++) {
            if (r->gcopy[c][i] == g) own = 1;
            else if (r->gcopy[c][i]) srcs[n++] = r->gcopy[c][i];
        }
        if (sm_insert_sum_tensors(&step, g, srcs, n, own)) return -1;
    }
    return 0;
}

void sm_pipeline_free(sm_run *r)
{
    for (int c = 0; r->gcopy && c < r->ncopies; c++) free(r->gcopy[c]);
    free(r->gcopy);
    free(r->copy_of_unit);
    if (!r->pl) return;
    sm_schedule_free(r->pl->pipe);
    free(r->pl->span);
    free(r->pl->held);
    free(r->pl->order_next);
    free(r->pl->order);
    free(r->pl);
}
