/* The summary of a loaded trace (trace/read.h): per op family count, total, mean, share
 * and the perf model's prediction against the measurement; per worker busy and idle time (they
 * add up to the makespan, first start to last end); per pipeline stage the bubble; the critical
 * path — per step graph the longest chain through the recorded dependencies ("deps" of each
 * slice's args) weighted by durations, summed over graphs — against the graphs' spans; and the
 * share of communication time (category "communication") during which another worker ran a
 * compute task (forward, backward or optimizer); per rank that has messages between ranks, their
 * time (the union of their slices), the part of it overlapped by the rank's tasks (any task
 * running) and the exposed rest. */
#include "trace/read.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <starmoe/trace.h>
#include "base/phase.h"

/* Per category of d: its kind (base/phase.h); a category that is no phase is neither compute
 * nor communication. malloc'd, NULL when out of memory. */
static sm_phase_kind *sm_cat_kinds(const sm_trace_data *d)
{
    sm_phase_kind *k = malloc((d->cats.n ? (size_t)d->cats.n : 1) * sizeof *k);
    for (int i = 0; k && i < d->cats.n; i++) {
        int phase = sm_phase_by_name(d->cats.v[i]);
        k[i] = phase < 0 ? SM_PHASE_OTHER : sm_phase_info_of(phase)->kind;
    }
    return k;
}

static int sm_cmp_op(const void *a, const void *b)
{
    const sm_op_stat *x = a, *y = b;
    return (x->total < y->total) - (x->total > y->total);
}

static int sm_sum_ops(const sm_trace_data *d, sm_trace_stats *s)
{
    int n = d->ops.n;
    if (!(s->ops = calloc(n ? (size_t)n : 1, sizeof *s->ops))) return -1;
    s->nops = n;
    for (int i = 0; i < n; i++) s->ops[i].op = i;
    for (size_t i = 0; i < d->nslices; i++) {
        const sm_trace_slice *sl = &d->slices[i];
        sm_op_stat *o = &s->ops[sl->op];
        o->count++;
        o->total += sl->dur;
        s->busy += sl->dur;
        if (!isnan(sl->predicted)) {
            o->npredicted++;
            o->predicted += sl->predicted;
            o->measured += sl->dur;
        }
    }
    for (int i = 0; i < n; i++) {
        s->ops[i].mean = s->ops[i].count ? s->ops[i].total / s->ops[i].count : 0;
        s->ops[i].share = s->busy > 0 ? s->ops[i].total / s->busy : 0;
    }
    qsort(s->ops, (size_t)n, sizeof *s->ops, sm_cmp_op);
    return 0;
}

static int sm_sum_workers(const sm_trace_data *d, sm_trace_stats *s)
{
    char *messages_only = sm_trace_message_only_lanes(d);
    int *row = calloc(d->nlanes ? (size_t)d->nlanes : 1, sizeof *row);
    s->workers = calloc(d->nlanes ? (size_t)d->nlanes : 1, sizeof *s->workers);
    if (!messages_only || !row || !s->workers) {
        free(messages_only);
        free(row);
        return -1;
    }
    for (int i = 0; i < d->nlanes; i++) {
        row[i] = messages_only[i] ? -1 : s->nworkers;
        if (!messages_only[i]) s->workers[s->nworkers++].lane = i;
    }
    for (size_t i = 0; i < d->nslices; i++) {
        sm_worker_stat *w = &s->workers[row[d->slices[i].lane]];
        w->tasks++;
        w->busy += d->slices[i].dur;
    }
    for (int i = 0; i < s->nworkers; i++) s->workers[i].idle = s->makespan - s->workers[i].busy;
    free(messages_only);
    free(row);
    return 0;
}

/* Slice indexes sorted by a key and a second one. */
typedef struct sm_keyed {
    double k1, k2;
    size_t i;
} sm_keyed;

static int sm_cmp_keyed(const void *a, const void *b)
{
    const sm_keyed *x = a, *y = b;
    if (x->k1 != y->k1) return x->k1 < y->k1 ? -1 : 1;
    if (x->k2 != y->k2) return x->k2 < y->k2 ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

typedef double sm_slice_key(const sm_trace_data *d, const sm_trace_slice *s);

/* k2 may be NULL (no second key). */
static sm_keyed *sm_sorted(const sm_trace_data *d, sm_slice_key *k1, sm_slice_key *k2)
{
    sm_keyed *v = malloc((d->nslices ? d->nslices : 1) * sizeof *v);
    if (!v) return NULL;
    for (size_t i = 0; i < d->nslices; i++)
        v[i] = (sm_keyed){k1(d, &d->slices[i]), k2 ? k2(d, &d->slices[i]) : 0, i};
    qsort(v, d->nslices, sizeof *v, sm_cmp_keyed);
    return v;
}

static double sm_key_graph(const sm_trace_data *d, const sm_trace_slice *s)
{
    (void)d;
    return (double)s->graph;
}

/* The rank a slice ran on: its process in a merged trace, -1 in a trace of one process. */
static int sm_slice_rank(const sm_trace_data *d, const sm_trace_slice *s)
{
    return d->multi_pid ? d->lanes[s->lane].pid : -1;
}

/* Pipeline rank (stage) statistics are kept per process of a merged trace: a pipeline rank of
 * several expert- or data-parallel MPI ranks has one row per MPI rank. */
static double sm_key_rank_stage(const sm_trace_data *d, const sm_trace_slice *s)
{
    return (double)sm_slice_rank(d, s) * 1048576.0 + s->stage;
}

static sm_stage_stat *sm_stage_slot(sm_trace_stats *s, int rank, int stage)
{
    for (int i = 0; i < s->nstages; i++)
        if (s->stages[i].rank == rank && s->stages[i].stage == stage) return &s->stages[i];
    sm_stage_stat *v = realloc(s->stages, (size_t)(s->nstages + 1) * sizeof *v);
    if (!v) return NULL;
    s->stages = v;
    v[s->nstages] = (sm_stage_stat){.rank = rank, .stage = stage};
    return &v[s->nstages++];
}

/* One group of slices of a stage in a graph (by[a..b)): its span, busy and idle time; with
 * scheduled_only, from the slices with an order number only (a pipeline rank's program, not the
 * step-wide tasks that fill its gaps). busy (per lane) is zero on entry and on return; touched
 * holds the group's lanes. */
static void sm_stage_group(const sm_trace_data *d, const sm_keyed *by, size_t a, size_t b,
                           int scheduled_only, double *busy, int *touched, sm_stage_stat *st)
{
    double lo = INFINITY, hi = -INFINITY, sum = 0;
    int nt = 0;
    for (size_t j = a; j < b; j++) {
        const sm_trace_slice *sl = &d->slices[by[j].i];
        int k = 0;
        if (scheduled_only && sl->order < 0) continue;
        while (k < nt && touched[k] != sl->lane) k++;
        if (k == nt) touched[nt++] = sl->lane;
        lo = fmin(lo, sl->ts);
        hi = fmax(hi, sl->ts + sl->dur);
        busy[sl->lane] += sl->dur;
        sum += sl->dur;
    }
    if (!nt) return;
    st->span += hi - lo;
    st->busy += sum;
    for (int k = 0; k < nt; k++) {
        st->bubble += (hi - lo) - busy[touched[k]];
        busy[touched[k]] = 0;
    }
    if (nt > st->workers) st->workers = nt;
}

static int sm_sum_stages(const sm_trace_data *d, sm_trace_stats *s)
{
    sm_keyed *by = sm_sorted(d, sm_key_rank_stage, sm_key_graph);
    double *busy = calloc(d->nlanes ? (size_t)d->nlanes : 1, sizeof *busy);
    int *touched = malloc((d->nlanes ? (size_t)d->nlanes : 1) * sizeof *touched);
    int rc = by && busy && touched ? 0 : -1, scheduled_only = 0;
    for (size_t i = 0; i < d->nslices; i++) scheduled_only |= d->slices[i].order >= 0;
    s->stages_scheduled = scheduled_only;
    for (size_t a = 0, b; rc == 0 && a < d->nslices; a = b) {
        for (b = a + 1; b < d->nslices && by[b].k1 == by[a].k1 && by[b].k2 == by[a].k2; b++) {}
        const sm_trace_slice *first = &d->slices[by[a].i];
        sm_stage_stat *st = sm_stage_slot(s, sm_slice_rank(d, first), first->stage);
        if (!st) rc = -1;
        else sm_stage_group(d, by, a, b, scheduled_only, busy, touched, st);
    }
    free(by);
    free(busy);
    free(touched);
    return rc;
}

/* Per graph: the longest chain (cp, len per slice) and the span, summed over graphs. */
static int sm_sum_graphs(const sm_trace_data *d, const double *cp, const size_t *len,
                         sm_trace_stats *s)
{
    sm_keyed *by = sm_sorted(d, sm_key_graph, NULL);
    if (!by) return -1;
    for (size_t a = 0, b; a < d->nslices; a = b) {
        double lo = INFINITY, hi = -INFINITY, best = 0;
        size_t blen = 0;
        for (b = a; b < d->nslices && by[b].k1 == by[a].k1; b++) {
            const sm_trace_slice *sl = &d->slices[by[b].i];
            lo = fmin(lo, sl->ts);
            hi = fmax(hi, sl->ts + sl->dur);
            if (cp[by[b].i] > best) best = cp[by[b].i], blen = len[by[b].i];
        }
        s->graphs++;
        s->graphs_span += hi - lo;
        /* chains follow dependencies in time order within the graph (the loader checks), so
         * only the times' rounding could take one past the span */
        s->critical_path += fmin(best, hi - lo);
        s->critical_tasks += blen;
    }
    free(by);
    return 0;
}

/* Longest chains: in id order (a task's dependencies come before it), a slice's chain is its
 * duration plus the longest chain among its dependencies in its own step graph (a chain never
 * crosses graphs: each graph's chain is summed once, against that graph's span). A slice
 * without an id is a chain of its own. */
static int sm_sum_critical(const sm_trace_data *d, sm_trace_stats *s)
{
    size_t n = d->nslices ? d->nslices : 1;
    double *cp = malloc(n * sizeof *cp);
    size_t *len = malloc(n * sizeof *len);
    int rc = cp && len ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < d->nslices; i++) {
        cp[i] = d->slices[i].dur;
        len[i] = 1;
    }
    for (size_t j = 0; rc == 0 && j < d->nby_id; j++) {
        size_t i = d->by_id[j].slice;
        const sm_trace_slice *sl = &d->slices[i];
        double best = 0;
        size_t blen = 0;
        for (int k = 0; k < sl->ndeps; k++) {
            long p = sm_trace_find_id(d, d->deps[sl->deps_at + k]);
            if (p >= 0 && d->slices[p].id < sl->id && d->slices[p].graph == sl->graph &&
                cp[p] > best)
                best = cp[p], blen = len[p];
        }
        cp[i] = best + sl->dur;
        len[i] = blen + 1;
    }
    if (rc == 0) rc = sm_sum_graphs(d, cp, len, s);
    free(cp);
    free(len);
    return rc;
}

/* A slice's start (+1) or end (-1) for the overlap sweep; ends first at equal times. */
typedef struct sm_edge {
    double t;
    int delta;
    size_t i;
} sm_edge;

static int sm_cmp_edge(const void *a, const void *b)
{
    const sm_edge *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return x->delta - y->delta;
}

/* Sweep over starts and ends: between two events, each running communication task counts as
 * overlapped when a compute task runs on another lane. */
static void sm_sweep(const sm_trace_data *d, const sm_phase_kind *kind, const sm_edge *e,
                     size_t ne, int *comp, int *comm, sm_trace_stats *s)
{
    int total_comp = 0, total_comm = 0;
    for (size_t k = 0; k < ne; k++) {
        if (k > 0 && total_comm > 0 && e[k].t > e[k - 1].t)
            for (int l = 0; l < d->nlanes; l++)
                if (comm[l] && total_comp - comp[l] > 0)
                    s->comm_overlapped += (e[k].t - e[k - 1].t) * comm[l];
        const sm_trace_slice *sl = &d->slices[e[k].i];
        if (kind[sl->cat] == SM_PHASE_COMMUNICATION)
            comm[sl->lane] += e[k].delta, total_comm += e[k].delta;
        else if (kind[sl->cat] == SM_PHASE_COMPUTE)
            comp[sl->lane] += e[k].delta, total_comp += e[k].delta;
    }
}

static int sm_sum_overlap(const sm_trace_data *d, sm_trace_stats *s)
{
    size_t ne = 2 * d->nslices;
    sm_edge *e = malloc((ne ? ne : 1) * sizeof *e);
    int *comp = calloc(d->nlanes ? (size_t)d->nlanes : 1, sizeof *comp);
    int *comm = calloc(d->nlanes ? (size_t)d->nlanes : 1, sizeof *comm);
    sm_phase_kind *kind = sm_cat_kinds(d);
    int rc = e && comp && comm && kind ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < d->nslices; i++) {
        const sm_trace_slice *sl = &d->slices[i];
        e[2 * i] = (sm_edge){sl->ts, 1, i};
        e[2 * i + 1] = (sm_edge){sl->ts + sl->dur, -1, i};
        if (kind[sl->cat] == SM_PHASE_COMMUNICATION) s->comm += sl->dur;
    }
    if (rc == 0) {
        qsort(e, ne, sizeof *e, sm_cmp_edge);
        sm_sweep(d, kind, e, ne, comp, comm, s);
    }
    free(kind);
    free(e);
    free(comp);
    free(comm);
    return rc;
}

/* An interval of time. */
typedef struct sm_span {
    double a, b;
} sm_span;

static int sm_cmp_span(const void *x, const void *y)
{
    const sm_span *p = x, *q = y;
    return (p->a > q->a) - (p->a < q->a);
}

/* Sorts v[0..n) and merges it into disjoint spans in place; their count. */
static size_t sm_union(sm_span *v, size_t n)
{
    size_t m = 0;
    qsort(v, n, sizeof *v, sm_cmp_span);
    for (size_t i = 0; i < n; i++) {
        if (m && v[i].a <= v[m - 1].b) v[m - 1].b = fmax(v[m - 1].b, v[i].b);
        else v[m++] = v[i];
    }
    return m;
}

static double sm_length(const sm_span *v, size_t n)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += v[i].b - v[i].a;
    return sum;
}

/* Length of the intersection of two unions. */
static double sm_common(const sm_span *x, size_t nx, const sm_span *y, size_t ny)
{
    double sum = 0;
    for (size_t i = 0, j = 0; i < nx && j < ny;) {
        sum += fmax(0, fmin(x[i].b, y[j].b) - fmax(x[i].a, y[j].a));
        if (x[i].b < y[j].b) i++;
        else j++;
    }
    return sum;
}

/* One rank's messages against its tasks (comm and task: scratch of nmsgs and nslices spans). */
static void sm_rank_comm(const sm_trace_data *d, sm_rank_stat *r, sm_span *comm, sm_span *task)
{
    size_t nc = 0, nt = 0;
    for (size_t i = 0; i < d->nmsgs; i++) {
        const sm_trace_msg_slice *m = &d->msgs[i];
        if (m->pid != r->pid) continue;
        comm[nc++] = (sm_span){m->ts, m->ts + m->dur};
        if (m->send) r->sends++, r->bytes_sent += m->bytes;
        else r->recvs++, r->bytes_received += m->bytes;
    }
    for (size_t i = 0; i < d->nslices; i++)
        if (d->lanes[d->slices[i].lane].pid == r->pid)
            task[nt++] = (sm_span){d->slices[i].ts, d->slices[i].ts + d->slices[i].dur};
    nc = sm_union(comm, nc);
    nt = sm_union(task, nt);
    r->comm = sm_length(comm, nc);
    r->overlapped = sm_common(comm, nc, task, nt);
    r->exposed = r->comm - r->overlapped;
}

static int sm_cmp_int(const void *a, const void *b)
{
    return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

/* Per process with messages, by pid. */
static int sm_sum_ranks(const sm_trace_data *d, sm_trace_stats *s)
{
    if (!d->nmsgs) return 0;
    int *pids = malloc(d->nmsgs * sizeof *pids);
    sm_span *comm = malloc(d->nmsgs * sizeof *comm);
    sm_span *task = malloc((d->nslices ? d->nslices : 1) * sizeof *task);
    int rc = pids && comm && task ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < d->nmsgs; i++) pids[i] = d->msgs[i].pid;
    if (rc == 0) qsort(pids, d->nmsgs, sizeof *pids, sm_cmp_int);
    for (size_t i = 0; rc == 0 && i < d->nmsgs; i++)
        if (i == 0 || pids[i] != pids[i - 1]) pids[s->nranks++] = pids[i];
    if (rc == 0 && !(s->ranks = calloc((size_t)s->nranks, sizeof *s->ranks))) rc = -1;
    for (int k = 0; rc == 0 && k < s->nranks; k++) {
        s->ranks[k].pid = pids[k];
        sm_rank_comm(d, &s->ranks[k], comm, task);
    }
    free(pids);
    free(comm);
    free(task);
    return rc;
}

int sm_trace_summarise(const sm_trace_data *d, sm_trace_stats *s, sm_error *err)
{
    memset(s, 0, sizeof *s);
    s->tasks = d->nslices;
    s->begin = d->begin;
    s->end = d->end;
    s->makespan = d->nslices ? d->end - d->begin : 0;
    if (sm_sum_ops(d, s) || sm_sum_workers(d, s) || sm_sum_stages(d, s) ||
        sm_sum_critical(d, s) || sm_sum_overlap(d, s) || sm_sum_ranks(d, s)) {
        sm_trace_stats_free(s);
        return sm_fail(err, "out of memory for the trace summary");
    }
    return 0;
}

void sm_trace_stats_free(sm_trace_stats *s)
{
    free(s->ops);
    free(s->workers);
    free(s->stages);
    free(s->ranks);
    memset(s, 0, sizeof *s);
}

static double sm_pct(double a, double b) { return b > 0 ? 100 * a / b : 0; }

static void sm_print_ops(const sm_trace_data *d, const sm_trace_stats *s, FILE *f)
{
    fprintf(f, "\n%-24s %8s %12s %11s %7s %10s\n", "op family", "count", "total ms", "mean us",
            "share", "pred/meas");
    for (int i = 0; i < s->nops; i++) {
        const sm_op_stat *o = &s->ops[i];
        fprintf(f, "%-24s %8zu %12.3f %11.1f %6.1f%%", d->ops.v[o->op], o->count,
                o->total * 1e-3, o->mean, 100 * o->share);
        if (o->npredicted && o->measured > 0) fprintf(f, " %10.2f\n", o->predicted / o->measured);
        else fprintf(f, " %10s\n", "-");
    }
}

static void sm_print_workers(const sm_trace_data *d, const sm_trace_stats *s, FILE *f)
{
    char buf[96];
    fprintf(f, "\n%-24s %8s %12s %12s %7s\n", "worker", "tasks", "busy ms", "idle ms", "busy");
    for (int i = 0; i < s->nworkers; i++) {
        const sm_worker_stat *w = &s->workers[i];
        fprintf(f, "%-24s %8zu %12.3f %12.3f %6.1f%%\n",
                sm_trace_lane_name(d, w->lane, buf, sizeof buf), w->tasks, w->busy * 1e-3,
                w->idle * 1e-3, sm_pct(w->busy, s->makespan));
    }
}

static void sm_print_stages(const sm_trace_stats *s, FILE *f)
{
    int ranks = s->nstages && s->stages[0].rank >= 0;
    if (s->stages_scheduled)
        fprintf(f, "\npipeline ranks: their scheduled tasks only (step-wide tasks fill the gaps)%s",
                ranks ? "; one row per MPI rank" : "");
    fprintf(f, "\n%s%-8s %8s %12s %12s %12s %7s\n", ranks ? "rank     " : "", "stage", "workers",
            "span ms", "busy ms", "bubble ms", "bubble");
    for (int i = 0; i < s->nstages; i++) {
        const sm_stage_stat *st = &s->stages[i];
        if (st->workers == 0) continue;
        if (ranks) fprintf(f, "%-8d ", st->rank);
        fprintf(f, "%-8d %8d %12.3f %12.3f %12.3f %6.1f%%\n", st->stage, st->workers,
                st->span * 1e-3, st->busy * 1e-3, st->bubble * 1e-3,
                sm_pct(st->bubble, st->bubble + st->busy));
    }
}

static void sm_print_ranks(const sm_trace_stats *s, FILE *f)
{
    if (!s->nranks) return;
    fprintf(f, "\nmessages between ranks: communication = union of the rank's message slices, "
               "overlapped = while a task of the rank ran, exposed = the rest\n");
    fprintf(f, "%-6s %7s %7s %10s %10s %10s %14s %11s %8s\n", "rank", "sends", "recvs",
            "sent MB", "recv MB", "comm ms", "overlapped ms", "exposed ms", "exposed");
    for (int i = 0; i < s->nranks; i++) {
        const sm_rank_stat *r = &s->ranks[i];
        fprintf(f, "%-6d %7zu %7zu %10.3f %10.3f %10.3f %14.3f %11.3f %7.1f%%\n", r->pid,
                r->sends, r->recvs, r->bytes_sent * 1e-6, r->bytes_received * 1e-6,
                r->comm * 1e-3, r->overlapped * 1e-3, r->exposed * 1e-3,
                sm_pct(r->exposed, r->comm));
    }
}

void sm_trace_stats_print(const sm_trace_data *d, const sm_trace_stats *s, const char *path,
                            FILE *f)
{
    fprintf(f, "%s: %zu tasks in %lld step graphs on %d workers, makespan %.3f ms "
               "(%.3f .. %.3f ms)\n", path, s->tasks, (long long)s->graphs, s->nworkers,
            s->makespan * 1e-3, s->begin * 1e-3, s->end * 1e-3);
    const char *cmd = sm_trace_meta_str(d, "command"), *sched = sm_trace_meta_str(d, "scheduler");
    if (*cmd || *sched)
        fprintf(f, "command %s, scheduler %s, StarPU %s, git %s\n", cmd, sched,
                sm_trace_meta_str(d, "starpu_version"), sm_trace_meta_str(d, "git_revision"));
    sm_print_ops(d, s, f);
    sm_print_workers(d, s, f);
    sm_print_stages(s, f);
    fprintf(f, "\ncritical path  %.3f ms (%zu tasks; longest dependency chain of each step graph, "
               "summed) = %.1f%% of the graphs' span %.3f ms (makespan %.3f ms)\n",
            s->critical_path * 1e-3, s->critical_tasks, sm_pct(s->critical_path, s->graphs_span),
            s->graphs_span * 1e-3, s->makespan * 1e-3);
    fprintf(f, "overlap        %.3f ms of %.3f ms communication (%.1f%%) ran while another worker "
               "computed\n", s->comm_overlapped * 1e-3, s->comm * 1e-3,
            sm_pct(s->comm_overlapped, s->comm));
    sm_print_ranks(s, f);
}

static json_t *sm_ops_json(const sm_trace_data *d, const sm_trace_stats *s)
{
    json_t *a = json_array();
    for (int i = 0; a && i < s->nops; i++) {
        const sm_op_stat *o = &s->ops[i];
        if (json_array_append_new(a, json_pack("{s:s,s:I,s:f,s:f,s:f,s:I,s:f,s:f}", "op",
                                               d->ops.v[o->op], "count", (json_int_t)o->count,
                                               "total_us", o->total, "mean_us", o->mean,
                                               "share", o->share, "predicted_count",
                                               (json_int_t)o->npredicted, "predicted_us",
                                               o->predicted, "predicted_measured_us",
                                               o->measured))) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *sm_workers_json(const sm_trace_data *d, const sm_trace_stats *s)
{
    char buf[96];
    json_t *a = json_array();
    for (int i = 0; a && i < s->nworkers; i++) {
        const sm_worker_stat *w = &s->workers[i];
        const sm_trace_lane *l = &d->lanes[w->lane];
        if (json_array_append_new(a, json_pack("{s:s,s:i,s:i,s:I,s:f,s:f}", "name",
                                               sm_trace_lane_name(d, w->lane, buf, sizeof buf),
                                               "pid", l->pid, "tid", l->tid, "tasks",
                                               (json_int_t)w->tasks, "busy_us", w->busy,
                                               "idle_us", w->idle))) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *sm_stages_json(const sm_trace_stats *s)
{
    json_t *a = json_array();
    for (int i = 0; a && i < s->nstages; i++) {
        const sm_stage_stat *st = &s->stages[i];
        if (st->workers && json_array_append_new(
                               a, json_pack("{s:i,s:i,s:i,s:f,s:f,s:f}", "rank", st->rank,
                                            "stage", st->stage, "workers", st->workers,
                                            "span_us", st->span, "busy_us", st->busy,
                                            "bubble_us", st->bubble))) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *sm_ranks_json(const sm_trace_stats *s)
{
    json_t *a = json_array();
    for (int i = 0; a && i < s->nranks; i++) {
        const sm_rank_stat *r = &s->ranks[i];
        if (json_array_append_new(a, json_pack("{s:i,s:I,s:I,s:f,s:f,s:f,s:f,s:f}", "rank",
                                               r->pid, "sends", (json_int_t)r->sends, "recvs",
                                               (json_int_t)r->recvs, "bytes_sent", r->bytes_sent,
                                               "bytes_received", r->bytes_received,
                                               "communication_us", r->comm, "overlapped_us",
                                               r->overlapped, "exposed_us", r->exposed))) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* The summary; "ranks" only when the trace holds messages between ranks. */
json_t *sm_trace_stats_json(const sm_trace_data *d, const sm_trace_stats *s)
{
    json_t *j = json_pack("{s:I,s:I,s:f,s:f,s:f,s:f,s:o,s:o,s:o,s:{s:f,s:I,s:f},s:{s:f,s:f,s:f}}",
                     "tasks", (json_int_t)s->tasks, "graphs", (json_int_t)s->graphs,
                     "begin_us", s->begin, "end_us", s->end, "makespan_us", s->makespan,
                     "busy_us", s->busy, "ops", sm_ops_json(d, s), "workers",
                     sm_workers_json(d, s), "stages", sm_stages_json(s), "critical_path",
                     "us", s->critical_path, "tasks", (json_int_t)s->critical_tasks,
                     "graphs_span_us", s->graphs_span, "overlap", "communication_us", s->comm,
                     "overlapped_us", s->comm_overlapped, "share",
                     s->comm > 0 ? s->comm_overlapped / s->comm : 0.0);
    if (j && s->nranks && json_object_set_new(j, "ranks", sm_ranks_json(s))) {
        json_decref(j);
        return NULL;
    }
    return j;
}

int sm_trace_summary(const char *path, FILE *out, int json, sm_error *err)
{
    sm_trace_data d;
    sm_trace_stats s;
    int rc = sm_trace_load(&d, path, err);
    if (rc == 0) rc = sm_trace_summarise(&d, &s, err);
    if (rc == 0 && json) {
        json_t *j = sm_trace_stats_json(&d, &s);
        if (!j || json_dumpf(j, out, JSON_INDENT(2) | JSON_REAL_PRECISION(15)) != 0)
            rc = sm_fail(err, "%s: out of memory for the summary", path);
        else fputc('\n', out);
        json_decref(j);
    } else if (rc == 0) {
        sm_trace_stats_print(&d, &s, path, out);
    }
    if (rc == 0) sm_trace_stats_free(&s);
    sm_trace_data_free(&d);
    return rc;
}
