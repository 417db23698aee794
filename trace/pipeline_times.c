/* The time a pipelined run's Chrome trace shows in each rank's slots: a rank's scheduled tasks
 * (numbered in its program, args.order >= 0) taken in program order form runs of one
 * micro-batch and one direction (forward, or backward); each task adds its share of its run's
 * wall time (first start to last end: the gaps between the tasks included) to its rank's F, B
 * or W by its phase (docs/pipeline-schedules.md §4.4). In a merged trace of MPI ranks, each
 * process runs its own program: a pipeline rank run by several processes (expert or data
 * parallelism) gets their mean. */
#include <starmoe/trace.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "base/grow.h"
#include "base/phase.h"
#include "trace/read.h"

enum { SM_PART_F, SM_PART_B, SM_PART_W, SM_NPARTS };

/* The span of one step graph: all its tasks, and its scheduled ones. */
typedef struct sm_graph_span {
    int64_t graph;
    double lo, hi, sched_lo, sched_hi;
} sm_graph_span;

/* A scheduled task, for sorting into program order. */
typedef struct sm_sched_task {
    int64_t graph, order;
    int stage, pid, part;
    size_t slice;
} sm_sched_task;

typedef struct sm_cost_scan {
    const sm_trace_data *d;
    sm_graph_span *graphs;
    size_t ngraphs, cap;
    double *sum[SM_NPARTS];      /* the output's f, b, w: [ranks] ms */
    int *procs;                  /* [ranks]: processes running each pipeline rank */
    int *pid_stage;              /* [npids]: the pipeline rank each process runs, -1 none */
    int npids;
    sm_sched_task *tasks;
    size_t ntasks, cap_tasks;
} sm_cost_scan;

/* Which part a scheduled task counts to, -1 none: its phase; an expert-parallel move (phase
 * communication) by its op, "..._bwd" in the input backward, else the forward. */
static int sm_task_part(const sm_trace_data *d, const sm_trace_slice *sl)
{
    const char *op = d->ops.v[sl->op];
    size_t n = strlen(op);
    switch (sm_phase_by_name(d->cats.v[sl->cat])) {
    case SM_FORWARD: return SM_PART_F;
    case SM_BACKWARD_INPUT: return SM_PART_B;
    case SM_BACKWARD_WEIGHT: return SM_PART_W;
    case SM_COMM: return n >= 4 && !strcmp(op + n - 4, "_bwd") ? SM_PART_B : SM_PART_F;
    default: return -1;
    }
}

static sm_graph_span *sm_graph_find(sm_cost_scan *s, int64_t graph)
{
    for (size_t i = 0; i < s->ngraphs; i++)
        if (s->graphs[i].graph == graph) return &s->graphs[i];
    return NULL;
}

/* The training step graphs holding scheduled tasks (a backward among them: not the
 * forward-only evaluations of pipeline ranks on MPI ranks), and the trace's ranks and
 * micro-batches. */
static int sm_find_graphs(sm_cost_scan *s, sm_trace_pipeline *out)
{
    const sm_trace_data *d = s->d;
    for (size_t i = 0; i < d->nslices; i++) {
        const sm_trace_slice *sl = &d->slices[i];
        if (sl->order < 0 || sl->micro < 0) continue;
        if (sl->stage + 1 > out->ranks) out->ranks = sl->stage + 1;
        if (sl->micro + 1 > out->micro) out->micro = sl->micro + 1;
        int part = sm_task_part(d, sl);
        if ((part != SM_PART_B && part != SM_PART_W) || sm_graph_find(s, sl->graph)) continue;
        if (sm_grow(&s->graphs, &s->cap, s->ngraphs + 1, sizeof *s->graphs)) return -1;
        s->graphs[s->ngraphs++] = (sm_graph_span){sl->graph, INFINITY, -INFINITY, INFINITY,
                                                  -INFINITY};
    }
    return 0;
}

static int sm_task_cmp(const void *a, const void *b)
{
    const sm_sched_task *x = a, *y = b;
    if (x->graph != y->graph) return x->graph < y->graph ? -1 : 1;
    if (x->stage != y->stage) return x->stage < y->stage ? -1 : 1;
    if (x->pid != y->pid) return x->pid < y->pid ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* The graphs' spans, and the scheduled tasks in program order. */
static int sm_collect_tasks(sm_cost_scan *s)
{
    const sm_trace_data *d = s->d;
    for (size_t i = 0; i < d->nslices; i++) {
        const sm_trace_slice *sl = &d->slices[i];
        sm_graph_span *g = sm_graph_find(s, sl->graph);
        if (!g) continue;
        g->lo = fmin(g->lo, sl->ts);
        g->hi = fmax(g->hi, sl->ts + sl->dur);
        int part = sl->order >= 0 && sl->micro >= 0 ? sm_task_part(d, sl) : -1;
        if (part < 0) continue;
        g->sched_lo = fmin(g->sched_lo, sl->ts);
        g->sched_hi = fmax(g->sched_hi, sl->ts + sl->dur);
        if (sm_grow(&s->tasks, &s->cap_tasks, s->ntasks + 1, sizeof *s->tasks)) return -1;
        s->tasks[s->ntasks++] = (sm_sched_task){sl->graph, sl->order, sl->stage,
                                                d->lanes[sl->lane].pid, part, i};
    }
    qsort(s->tasks, s->ntasks, sizeof *s->tasks, sm_task_cmp);
    return 0;
}

/* The processes of each pipeline rank (in the first graph: every graph has the same). */
static void sm_count_procs(sm_cost_scan *s)
{
    for (size_t k = 0; k < s->ntasks; k++) {
        const sm_sched_task *t = &s->tasks[k], *prev = k ? &s->tasks[k - 1] : NULL;
        if (t->graph != s->tasks[0].graph) break;
        if (!prev || prev->stage != t->stage || prev->pid != t->pid) s->procs[t->stage]++;
    }
}

/* Whether task j continues the run of task i: same graph, rank, process, micro-batch and
 * direction. */
static int sm_same_run(const sm_cost_scan *s, const sm_sched_task *i, const sm_sched_task *j)
{
    const sm_trace_slice *a = &s->d->slices[i->slice], *b = &s->d->slices[j->slice];
    return i->graph == j->graph && i->stage == j->stage && i->pid == j->pid &&
           a->micro == b->micro && (i->part == SM_PART_F) == (j->part == SM_PART_F);
}

/* Each run's wall time, shared among its tasks in proportion to their durations. */
static void sm_sum_runs(sm_cost_scan *s)
{
    for (size_t at = 0, end; at < s->ntasks; at = end) {
        double lo = INFINITY, hi = -INFINITY, busy = 0;
        for (end = at; end < s->ntasks && sm_same_run(s, &s->tasks[at], &s->tasks[end]); end++) {
            const sm_trace_slice *sl = &s->d->slices[s->tasks[end].slice];
            lo = fmin(lo, sl->ts);
            hi = fmax(hi, sl->ts + sl->dur);
            busy += sl->dur;
        }
        for (size_t k = at; k < end && busy > 0; k++) {
            const sm_sched_task *t = &s->tasks[k];
            s->sum[t->part][t->stage] += s->d->slices[t->slice].dur * (hi - lo) / busy / 1e3 /
                                         s->procs[t->stage];
        }
    }
}

/* Each process's pipeline rank (the stage of its scheduled tasks), once the tasks are
 * collected. */
static int sm_map_pids(sm_cost_scan *s)
{
    for (int l = 0; l < s->d->nlanes; l++)
        if (s->d->lanes[l].pid + 1 > s->npids) s->npids = s->d->lanes[l].pid + 1;
    if (!(s->pid_stage = malloc((s->npids ? (size_t)s->npids : 1) * sizeof *s->pid_stage)))
        return -1;
    for (int p = 0; p < s->npids; p++) s->pid_stage[p] = -1;
    for (size_t k = 0; k < s->ntasks; k++)
        if (s->pid_stage[s->tasks[k].pid] < 0) s->pid_stage[s->tasks[k].pid] = s->tasks[k].stage;
    return 0;
}

/* The pipeline rank process pid runs, -1 unknown. */
static int sm_stage_of_pid(const sm_cost_scan *s, int pid)
{
    return pid >= 0 && pid < s->npids ? s->pid_stage[pid] : -1;
}

/* Whether message i goes between two pipeline ranks (not within one: expert- and data-parallel
 * messages between the processes of one pipeline rank are part of its slots' time). */
static int sm_between_stages(const sm_cost_scan *s, size_t i)
{
    int a = sm_stage_of_pid(s, s->d->msgs[i].pid), b = sm_stage_of_pid(s, s->d->msgs[i].peer);
    return a < 0 || b < 0 || a != b;
}

/* The mean time of one message between pipeline ranks: of the sends when there are some (a
 * receive may be posted long before its data leaves), else of all. */
static void sm_message_time(const sm_cost_scan *s, sm_trace_pipeline *out)
{
    const sm_trace_data *d = s->d;
    size_t sends = 0, n = 0;
    double total = 0;
    for (size_t i = 0; i < d->nmsgs; i++) sends += d->msgs[i].send && sm_between_stages(s, i);
    for (size_t i = 0; i < d->nmsgs; i++)
        if ((!sends || d->msgs[i].send) && sm_between_stages(s, i)) {
            total += d->msgs[i].dur;
            n++;
        }
    out->messages = n;
    out->message_ms = n ? total / (double)n / 1e3 : 0;
}

/* Per pipeline rank, the time its processes spent inside the scheduled span of a step graph in
 * tasks outside the programs (zeroing, sums, the optimizer: the ordered policy runs them in
 * the lanes' gaps, and a slot that becomes ready meanwhile waits), ms over every step. */
static void sm_other_tasks(const sm_cost_scan *s, double *other)
{
    const sm_trace_data *d = s->d;
    for (size_t i = 0; i < d->nslices; i++) {
        const sm_trace_slice *sl = &d->slices[i];
        sm_graph_span *g = sm_graph_find((sm_cost_scan *)s, sl->graph);
        int stage = sm_stage_of_pid(s, d->lanes[sl->lane].pid);
        if (!g || stage < 0 || (sl->order >= 0 && sl->micro >= 0 && sm_task_part(d, sl) >= 0))
            continue;
        double in = fmin(sl->ts + sl->dur, g->sched_hi) - fmax(sl->ts, g->sched_lo);
        if (in > 0) other[stage] += in / 1e3 / s->procs[stage];
    }
}

/* Means over the step graphs of their spans, in ms. */
static void sm_spans(const sm_cost_scan *s, sm_trace_pipeline *out)
{
    for (size_t i = 0; i < s->ngraphs; i++) {
        const sm_graph_span *g = &s->graphs[i];
        out->step_ms += (g->hi - g->lo) / (double)s->ngraphs / 1e3;
        out->scheduled_ms += (g->sched_hi - g->sched_lo) / (double)s->ngraphs / 1e3;
    }
}

static int sm_pipeline_from(const sm_trace_data *d, const char *path, sm_trace_pipeline *out,
                            sm_error *err)
{
    sm_cost_scan s = {.d = d};
    int rc = -1;
    if (sm_find_graphs(&s, out)) {
        sm_fail(err, "%s: out of memory", path);
    } else if (!s.ngraphs) {
        sm_fail(err, "%s: no task has an \"order\" in a pipeline rank's program: not a trace of "
                     "a pipelined training run (engine.pp > 1 and engine.sched a schedule)", path);
    } else {
        size_t n = (size_t)out->ranks;
        /* a merged trace of ranks keeps rank 0's metadata as input0.* */
        const char *sched = sm_trace_meta_str(d, "scheduler");
        out->scheduler = strdup(*sched ? sched : sm_trace_meta_str(d, "input0.scheduler"));
        s.sum[SM_PART_F] = out->f = calloc(n, sizeof(double));
        s.sum[SM_PART_B] = out->b = calloc(n, sizeof(double));
        s.sum[SM_PART_W] = out->w = calloc(n, sizeof(double));
        out->other = calloc(n, sizeof(double));
        s.procs = calloc(n, sizeof *s.procs);
        if (!out->scheduler || !out->f || !out->b || !out->w || !out->other || !s.procs ||
            sm_collect_tasks(&s) || sm_map_pids(&s)) {
            sm_fail(err, "%s: out of memory", path);
        } else {
            out->steps = (int)s.ngraphs;
            sm_count_procs(&s);
            sm_sum_runs(&s);
            sm_other_tasks(&s, out->other);
            sm_spans(&s, out);
            sm_message_time(&s, out);
            rc = 0;
        }
    }
    free(s.graphs);
    free(s.tasks);
    free(s.procs);
    free(s.pid_stage);
    return rc;
}

int sm_trace_pipeline_load(const char *path, sm_trace_pipeline *out, sm_error *err)
{
    *out = (sm_trace_pipeline){0};
    sm_trace_data d;
    int rc = sm_trace_load(&d, path, err) ? -1 : sm_pipeline_from(&d, path, out, err);
    sm_trace_data_free(&d);
    return rc;
}

void sm_trace_pipeline_free(sm_trace_pipeline *p)
{
    free(p->scheduler);
    free(p->f);
    free(p->b);
    free(p->w);
    free(p->other);
    *p = (sm_trace_pipeline){0};
}
