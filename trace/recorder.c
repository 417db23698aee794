/* The tracer (trace/recorder.h): graph records to trace events after each step. Slices come from
 * the dependency walk (graph/deps.c), so each task is written with the ids of the tasks it
 * waited for; times are StarPU's (starpu_timing_now()'s clock) shifted to the trace's start
 * (over several ranks: rank 0's trace start, this rank's clock shifted by the measured offset to
 * rank 0's). Counters are derived from the same records: ready tasks (pushed to the scheduler,
 * not yet started) and activation memory (the bytes of each activation tensor from its first
 * access to its last one in the step). A step's messages between ranks are slices on lanes of
 * their own: one per peer for receives, and for sends one per peer and message in flight at once.
 * All scratch memory is kept from step to step. */
#include "trace/recorder.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <starpu.h>
#include "build_config.h"
#include "base/grow.h"
#include "io/config_json.h"

#ifndef SM_GIT_REVISION
#define SM_GIT_REVISION "unknown"
#endif

/* Message lanes' tids come after the workers'. */
enum { SM_MSG_TID = 1000 };

/* A lane of messages: one direction, one peer, its last message ended at free_ns. */
typedef struct sm_msg_lane {
    int send, peer;
    int64_t free_ns;
} sm_msg_lane;

/* A message by a key (its handle, its tensor's id) for lookups. */
typedef struct sm_msg_key {
    uintptr_t key;
    size_t i;
} sm_msg_key;

/* A change of a counter at a time. */
typedef struct sm_tick {
    int64_t ns;
    double delta;
} sm_tick;

struct sm_tracer {
    sm_trace_writer *w;
    sm_trace_opts o;
    double t0_us;                /* starpu_timing_now() when the trace began */
    double begin_us;             /* start of the step graph being traced */
    int64_t graphs;              /* step graphs traced */
    int64_t step;                /* step of the graph being written */
    uint64_t next_id, next_flow;
    sm_dep_walk *walk;
    const sm_graph *g;           /* graph of the step being written */
    uint64_t *deps;              /* ids of the current task's dependencies */
    size_t cap_deps;
    sm_tick *ticks;
    size_t nticks, cap_ticks;
    int64_t *first, *last;       /* per tensor: first access start, last access end (ns) */
    size_t cap_first, cap_last;
    sm_trace_ranks ranks;        /* nranks 0: one process */
    double *msg_ready;           /* per message of the step: when it could start (us) */
    sm_msg_key *by_handle, *by_tensor;
    size_t cap_msg_ready, cap_by_handle, cap_by_tensor;
    sm_msg_lane *msg_lanes;
    size_t nmsg_lanes, cap_msg_lanes;
    int oom;
};

/* Nanoseconds since the trace began (0 for what came before: the clocks' offset is measured to
 * within half a round trip). */
static int64_t sm_trace_ns(const sm_tracer *t, double us)
{
    return us > t->t0_us ? llround((us - t->t0_us) * 1e3) : 0;
}

/* Metadata of every trace, after the caller's. */
static int sm_tracer_header(sm_tracer *t, const char *scheduler, const sm_trace_meta *meta,
                            int nmeta, sm_error *err)
{
    char version[32], workers[16], steps[64], rank[16], offset[32], rtt[32];
    int major, minor, release;
    starpu_get_version(&major, &minor, &release);
    snprintf(version, sizeof version, "%d.%d.%d", major, minor, release);
    snprintf(workers, sizeof workers, "%u", starpu_worker_get_count());
    if (t->o.last_step >= 0)
        snprintf(steps, sizeof steps, "%lld:%lld", (long long)t->o.first_step,
                 (long long)t->o.last_step);
    else
        snprintf(steps, sizeof steps, "%lld:", (long long)t->o.first_step);
    snprintf(rank, sizeof rank, "%d", t->ranks.rank);
    snprintf(offset, sizeof offset, "%.3f", t->ranks.offset_us);
    snprintf(rtt, sizeof rtt, "%.3f", t->ranks.rtt_us);
    const sm_trace_meta common[] = {
        {"scheduler", scheduler},              {"starpu_version", version},
        {"git_revision", SM_GIT_REVISION},     {"starmoe_version", PACKAGE_VERSION},
        {"workers", workers},                  {"rank", rank},
        {"trace_steps", steps},
        {"dependencies", t->o.deps ? "args.deps and flow arrows" : "args.deps"},
        {"clock", t->ranks.nranks ? "microseconds since rank 0's trace began, on rank 0's clock "
                                    "(StarPU's starpu_timing_now plus clock_offset_us)"
                                  : "microseconds since the trace began (StarPU's "
                                    "starpu_timing_now)"},
        {"clock_offset_us", offset},           {"clock_rtt_us", rtt}};
    /* the clock's offset and round trip only over several ranks */
    int ncommon = (int)(sizeof common / sizeof *common) - (t->ranks.nranks ? 0 : 2);
    sm_trace_meta all[nmeta + ncommon];
    memcpy(all, meta, (size_t)nmeta * sizeof *meta);
    memcpy(all + nmeta, common, (size_t)ncommon * sizeof *common);
    t->w = sm_trace_writer_open(t->o.path, t->o.format, t->ranks.rank, all, nmeta + ncommon, err);
    return t->w ? 0 : -1;
}

static int sm_tracer_lanes(sm_tracer *t)
{
    char name[64];
    int rc = 0;
    for (unsigned i = 0; i < starpu_worker_get_count(); i++) {
        starpu_worker_get_name((int)i, name, sizeof name);
        rc |= sm_trace_writer_lane(t->w, (int)i, name);
    }
    return rc;
}

int sm_tracer_open(sm_tracer **tp, const sm_trace_opts *o, const char *scheduler,
                   const sm_trace_meta *meta, int nmeta, const sm_trace_ranks *ranks,
                   sm_error *err)
{
    *tp = NULL;
    if (!o || !o->path) return 0;
    sm_tracer *t = calloc(1, sizeof *t);
    if (!t || !(t->walk = sm_dep_walk_new())) {
        free(t);
        return sm_fail(err, "%s: out of memory for the tracer", o->path);
    }
    t->o = *o;
    t->t0_us = starpu_timing_now();
    if (ranks) {
        t->ranks = *ranks;
        t->t0_us = ranks->origin_us - ranks->offset_us;
    }
    if (sm_tracer_header(t, scheduler, meta, nmeta, err)) {
        sm_dep_walk_free(t->walk);
        free(t);
        return -1;
    }
    if (sm_tracer_lanes(t) || sm_trace_writer_instant(t->w, "run begin", "run", 0, NULL, 0)) {
        sm_tracer_close(t, NULL);
        return sm_fail(err, "%s: out of memory for the trace", o->path);
    }
    *tp = t;
    return 0;
}

char *sm_tracer_config_text(const sm_config *c)
{
    json_t *cfg = sm_config_to_json(c);
    char *text = cfg ? json_dumps(cfg, JSON_COMPACT) : NULL;
    json_decref(cfg);
    return text;
}

void sm_tracer_begin(sm_tracer *t)
{
    if (!t) return;
    if (t->ranks.forget) t->ranks.forget();
    t->begin_us = starpu_timing_now();
}

static int sm_in_range(const sm_tracer *t, int64_t step)
{
    return step >= t->o.first_step && (t->o.last_step < 0 || step <= t->o.last_step);
}

static uint64_t sm_task_bytes(const sm_graph *g, const sm_task_record *r)
{
    double b = 0;
    for (int a = 0; a < r->naccess; a++)
        b += sm_tensor_bytes(sm_graph_access(g, r, a, NULL));
    return (uint64_t)b;
}

static int64_t sm_mid_ns(const sm_tracer *t, const sm_task_record *r)
{
    return sm_trace_ns(t, 0.5 * (r->start_us + r->end_us));
}

/* Per task of the dependency walk: its slice, then its arrows. */
static int sm_trace_one(void *ctx, size_t i, const size_t *deps, int ndeps)
{
    sm_tracer *t = ctx;
    const sm_task_record *r = sm_graph_task(t->g, i);
    if (!r->done) return 0;
    if (sm_grow(&t->deps, &t->cap_deps, (size_t)ndeps, sizeof *t->deps)) return t->oom = -1;
    for (int d = 0; d < ndeps; d++) t->deps[d] = t->next_id + deps[d];
    sm_trace_task e = {
        .id = t->next_id + i, .graph = t->graphs, .step = t->step, .name = r->name,
        .op = r->meta.op, .cat = sm_phase_name(r->meta.phase), .micro = r->meta.micro,
        .layer = r->meta.layer,
        .expert = r->meta.expert, .stage = r->meta.stage, .worker = r->worker,
        .order = r->meta.order,
        .submit_ns = sm_trace_ns(t, r->submit_us), .ready_ns = sm_trace_ns(t, r->ready_us),
        .start_ns = sm_trace_ns(t, r->start_us), .end_ns = sm_trace_ns(t, r->end_us),
        .predicted_us = r->predicted_us, .flops = r->flops, .bytes = sm_task_bytes(t->g, r),
        .deps = t->deps, .ndeps = ndeps};
    if (sm_trace_writer_task(t->w, &e)) return t->oom = -1;
    for (int d = 0; t->o.deps && d < ndeps; d++) {
        const sm_task_record *p = sm_graph_task(t->g, deps[d]);
        if (p->done && sm_trace_writer_flow(t->w, t->next_flow++, p->worker, sm_mid_ns(t, p),
                                            r->worker, sm_mid_ns(t, r)))
            return t->oom = -1;
    }
    return 0;
}

static int sm_cmp_tick(const void *a, const void *b)
{
    const sm_tick *x = a, *y = b;
    return (x->ns > y->ns) - (x->ns < y->ns);
}

/* Writes the counter whose changes are in t->ticks (sorted here), one value per distinct time. */
static int sm_write_counter(sm_tracer *t, const char *name, const char *key)
{
    int rc = 0;
    double v = 0;
    qsort(t->ticks, t->nticks, sizeof *t->ticks, sm_cmp_tick);
    for (size_t i = 0; i < t->nticks; i++) {
        v += t->ticks[i].delta;
        if (i + 1 == t->nticks || t->ticks[i + 1].ns != t->ticks[i].ns)
            rc |= sm_trace_writer_counter(t->w, name, key, t->ticks[i].ns, v);
    }
    t->nticks = 0;
    return rc;
}

static int sm_tick_add(sm_tracer *t, int64_t ns, double delta)
{
    if (sm_grow(&t->ticks, &t->cap_ticks, t->nticks + 1, sizeof *t->ticks)) return -1;
    t->ticks[t->nticks++] = (sm_tick){ns, delta};
    return 0;
}

/* Tasks pushed to the scheduler and not started yet. */
static int sm_trace_ready(sm_tracer *t)
{
    for (size_t i = 0, n = sm_graph_ntasks(t->g); i < n; i++) {
        const sm_task_record *r = sm_graph_task(t->g, i);
        if (r->done && (sm_tick_add(t, sm_trace_ns(t, r->ready_us), 1) ||
                        sm_tick_add(t, sm_trace_ns(t, r->start_us), -1)))
            return -1;
    }
    return sm_write_counter(t, "ready", "tasks");
}

/* Activation tensors held: each from the start of its first access to the end of its last. */
static int sm_trace_memory(sm_tracer *t)
{
    size_t nt = (size_t)sm_graph_ntensors(t->g);
    if (sm_grow(&t->first, &t->cap_first, nt, sizeof *t->first) ||
        sm_grow(&t->last, &t->cap_last, nt, sizeof *t->last))
        return -1;
    for (size_t i = 0; i < nt; i++) t->first[i] = -1;
    for (size_t i = 0, n = sm_graph_ntasks(t->g); i < n; i++) {
        const sm_task_record *r = sm_graph_task(t->g, i);
        for (int a = 0; r->done && a < r->naccess; a++) {
            const sm_tensor *x = sm_graph_access(t->g, r, a, NULL);
            if (x->role != SM_ACT) continue;
            if (t->first[x->id] < 0) t->first[x->id] = sm_trace_ns(t, r->start_us);
            t->last[x->id] = sm_trace_ns(t, r->end_us);
        }
    }
    for (size_t i = 0; i < nt; i++) {
        if (t->first[i] < 0) continue;
        double bytes = sm_tensor_bytes(sm_graph_tensor(t->g, (int)i));
        if (sm_tick_add(t, t->first[i], bytes) || sm_tick_add(t, t->last[i], -bytes)) return -1;
    }
    return sm_write_counter(t, "activation memory", "bytes");
}

static int sm_cmp_key(const void *a, const void *b)
{
    const sm_msg_key *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* The first of the n sorted keys that is not below key. */
static size_t sm_key_at(const sm_msg_key *k, size_t n, uintptr_t key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (k[mid].key < key) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* The messages by the id of the graph's tensor they carry (t->by_tensor; those of no tensor of
 * the graph are left out); *nt: how many. */
static int sm_messages_by_tensor(sm_tracer *t, const sm_trace_message *m, size_t n, size_t *nt)
{
    if (sm_grow(&t->by_handle, &t->cap_by_handle, n, sizeof *t->by_handle) ||
        sm_grow(&t->by_tensor, &t->cap_by_tensor, n, sizeof *t->by_tensor))
        return -1;
    for (size_t i = 0; i < n; i++) t->by_handle[i] = (sm_msg_key){(uintptr_t)m[i].handle, i};
    qsort(t->by_handle, n, sizeof *t->by_handle, sm_cmp_key);
    *nt = 0;
    for (int id = 0; id < sm_graph_ntensors(t->g); id++) {
        const sm_tensor *x = sm_graph_tensor(t->g, id);
        if (!x || !x->handle) continue;
        uintptr_t h = (uintptr_t)x->handle;
        for (size_t j = sm_key_at(t->by_handle, n, h); j < n && t->by_handle[j].key == h; j++)
            t->by_tensor[(*nt)++] = (sm_msg_key){(uintptr_t)id, t->by_handle[j].i};
    }
    qsort(t->by_tensor, *nt, sizeof *t->by_tensor, sm_cmp_key);
    return 0;
}

/* When each message could start (t->msg_ready): StarPU-MPI reports only its completion, so a
 * send starts once the last task submitted before it that writes its tensor has ended (its data
 * is ready), a receive once the last task submitted before it that accesses its tensor has
 * ended (its buffer is free); neither before it was posted nor after it completed. */
static int sm_message_ready(sm_tracer *t, const sm_trace_message *m, size_t n)
{
    size_t nt;
    if (sm_grow(&t->msg_ready, &t->cap_msg_ready, n, sizeof *t->msg_ready) ||
        sm_messages_by_tensor(t, m, n, &nt))
        return -1;
    for (size_t i = 0; i < n; i++) t->msg_ready[i] = m[i].posted_us;
    for (size_t k = 0, nk = sm_graph_ntasks(t->g); nt && k < nk; k++) {
        const sm_task_record *r = sm_graph_task(t->g, k);
        for (int a = 0; r->done && a < r->naccess; a++) {
            enum starpu_data_access_mode mode;
            uintptr_t id = (uintptr_t)sm_graph_access(t->g, r, a, &mode)->id;
            for (size_t j = sm_key_at(t->by_tensor, nt, id); j < nt && t->by_tensor[j].key == id;
                 j++) {
                size_t i = t->by_tensor[j].i;
                if (r->submit_us <= m[i].posted_us && (!m[i].send || (mode & STARPU_W)))
                    t->msg_ready[i] = fmax(t->msg_ready[i], r->end_us);
            }
        }
    }
    for (size_t i = 0; i < n; i++) t->msg_ready[i] = fmin(t->msg_ready[i], m[i].end_us);
    return 0;
}

/* The lane of a message that starts at start_ns: for a receive, the one lane of its peer; for a
 * send, the first lane of sends to its peer free by then. Named when new. */
static int sm_message_lane(sm_tracer *t, const sm_trace_message *m, int64_t start_ns)
{
    size_t k, same = 0;
    for (k = 0; k < t->nmsg_lanes; k++) {
        const sm_msg_lane *l = &t->msg_lanes[k];
        if (l->send != m->send || l->peer != m->peer) continue;
        if (!m->send || l->free_ns <= start_ns) return (int)k;
        same++;
    }
    char name[64];
    if (sm_grow(&t->msg_lanes, &t->cap_msg_lanes, k + 1, sizeof *t->msg_lanes)) return -1;
    t->msg_lanes[k] = (sm_msg_lane){m->send, m->peer, 0};
    t->nmsg_lanes++;
    int at = snprintf(name, sizeof name, "%s rank %d", m->send ? "send to" : "recv from",
                      m->peer);
    if (same) snprintf(name + at, sizeof name - (size_t)at, " (%zu)", same + 1);
    return sm_trace_writer_lane(t->w, SM_MSG_TID + (int)k, name) ? -1 : (int)k;
}

/* The completed messages of the step, in order of completion. A send spans from when it could
 * start to its completion; sends in flight together take lanes of their own. Receives from one
 * peer are posted long before their data comes: each spans from when it could start, or from
 * the previous receive's completion when later (the wait for it alone), to its own completion,
 * so they share one lane and their union is the time the rank waited for that peer's data. */
static int sm_trace_messages(sm_tracer *t)
{
    const sm_trace_message *m;
    /* Paje traces leave messages out (trace/writer.h): no lanes for them either */
    if (t->o.format == SM_TRACE_PAJE) return 0;
    size_t n = t->ranks.messages ? t->ranks.messages(&m) : 0;
    if (n == 0) return 0;
    if (sm_message_ready(t, m, n)) return -1;
    /* by_handle's room, free again, sorts them by completion (times since the trace began are
     * positive) */
    for (size_t i = 0; i < n; i++)
        t->by_handle[i] = (sm_msg_key){(uintptr_t)sm_trace_ns(t, m[i].end_us), i};
    qsort(t->by_handle, n, sizeof *t->by_handle, sm_cmp_key);
    for (size_t j = 0; j < n; j++) {
        const sm_trace_message *x = &m[t->by_handle[j].i];
        if (!(x->end_us > 0)) continue;
        int64_t end = (int64_t)t->by_handle[j].key;
        int64_t ready = sm_trace_ns(t, t->msg_ready[t->by_handle[j].i]);
        int k = sm_message_lane(t, x, ready);
        if (k < 0) return -1;
        int64_t start = ready > t->msg_lanes[k].free_ns ? ready : t->msg_lanes[k].free_ns;
        t->msg_lanes[k].free_ns = end;
        sm_trace_msg e = {.what = x->what, .send = x->send, .peer = x->peer,
                          .tid = SM_MSG_TID + k, .tag = x->tag, .graph = t->graphs,
                          .step = t->step, .bytes = x->bytes,
                          .posted_ns = sm_trace_ns(t, x->posted_us), .ready_ns = ready,
                          .start_ns = start < end ? start : end, .end_ns = end};
        if (sm_trace_writer_message(t->w, &e)) return -1;
    }
    return 0;
}

int sm_tracer_step(sm_tracer *t, const sm_graph *g, int64_t step, const char *kind,
                   sm_error *err)
{
    if (!t || !sm_in_range(t, step)) return 0;
    char name[64];
    t->g = g;
    t->step = step;
    size_t n = sm_graph_ntasks(t->g);
    /* the start mark carries the task count, the end mark the first three */
    sm_trace_arg args[] = {{"step", NULL, (double)step}, {"graph", NULL, (double)t->graphs},
                           {"kind", kind, 0}, {"tasks", NULL, (double)n}};
    snprintf(name, sizeof name, "%s step %lld", kind, (long long)step);
    if (sm_trace_writer_instant(t->w, name, "step", sm_trace_ns(t, t->begin_us), args, 4))
        return sm_fail(err, "%s: out of memory for the trace", t->o.path);
    if (sm_graph_walk_deps(t->g, t->walk, sm_trace_one, t, err)) {
        if (t->oom) sm_fail(err, "%s: out of memory for the trace", t->o.path);
        return -1;
    }
    if (sm_trace_ready(t) || sm_trace_memory(t) || sm_trace_messages(t))
        return sm_fail(err, "%s: out of memory for the trace", t->o.path);
    snprintf(name, sizeof name, "%s step %lld end", kind, (long long)step);
    if (sm_trace_writer_instant(t->w, name, "step", sm_trace_ns(t, starpu_timing_now()), args, 3))
        return sm_fail(err, "%s: out of memory for the trace", t->o.path);
    t->graphs++;
    t->next_id += n;
    return sm_trace_writer_flush(t->w, err);
}

int sm_tracer_mark(sm_tracer *t, const char *cat, int64_t step, sm_error *err)
{
    if (!t || !sm_in_range(t, step)) return 0;
    char name[64];
    sm_trace_arg args[] = {{"step", NULL, (double)step}};
    snprintf(name, sizeof name, "%s at step %lld", cat, (long long)step);
    if (sm_trace_writer_instant(t->w, name, cat, sm_trace_ns(t, starpu_timing_now()), args, 1))
        return sm_fail(err, "%s: out of memory for the trace", t->o.path);
    return 0;
}

int sm_tracer_clock_check(sm_tracer *t, double offset_us, double rtt_us, double *drift_us,
                          double *error_us, sm_error *err)
{
    *drift_us = *error_us = 0;
    if (!t) return 0;
    *drift_us = offset_us - t->ranks.offset_us;
    *error_us = 0.5 * (rtt_us + t->ranks.rtt_us);
    sm_trace_arg args[] = {{"offset_us", NULL, offset_us}, {"rtt_us", NULL, rtt_us},
                           {"start_offset_us", NULL, t->ranks.offset_us},
                           {"start_rtt_us", NULL, t->ranks.rtt_us},
                           {"drift_us", NULL, *drift_us}, {"error_us", NULL, *error_us}};
    if (sm_trace_writer_instant(t->w, "clock check", "clock", sm_trace_ns(t, starpu_timing_now()),
                                args, 6))
        return sm_fail(err, "%s: out of memory for the trace", t->o.path);
    return 0;
}

int sm_tracer_close(sm_tracer *t, sm_error *err)
{
    if (!t) return 0;
    sm_trace_arg args[] = {{"graphs", NULL, (double)t->graphs},
                           {"tasks", NULL, (double)t->next_id}};
    int rc = sm_trace_writer_instant(t->w, "run end", "run", sm_trace_ns(t, starpu_timing_now()),
                                     args, 2);
    if (rc) sm_fail(err, "%s: out of memory for the trace", t->o.path);
    if (sm_trace_writer_close(t->w, rc ? NULL : err)) rc = -1;
    sm_dep_walk_free(t->walk);
    free(t->deps);
    free(t->ticks);
    free(t->first);
    free(t->last);
    free(t->msg_ready);
    free(t->by_handle);
    free(t->by_tensor);
    free(t->msg_lanes);
    free(t);
    return rc;
}

/* A step number at *s (digits only); advances *s. -1 when there is none. */
static int64_t sm_parse_step(const char **s)
{
    if (**s < '0' || **s > '9') return -1;
    char *end;
    long long v = strtoll(*s, &end, 10);
    *s = end;
    return v;
}

int sm_trace_parse_steps(const char *text, sm_trace_opts *o, sm_error *err)
{
    const char *s = text;
    int64_t a = *s == ':' ? 0 : sm_parse_step(&s), b;
    if (a < 0) goto bad;
    if (*s == '\0') {
        b = a;
    } else {
        if (*s++ != ':') goto bad;
        b = *s ? sm_parse_step(&s) : -1;
        if (*s || (b >= 0 && b < a)) goto bad;
    }
    o->first_step = a;
    o->last_step = b;
    return 0;
bad:
    return sm_fail(err, "--trace-steps '%s': expected A:B, A:, :B or A with step numbers "
                        "A <= B", text);
}

int sm_trace_parse_format(const char *text, sm_trace_opts *o, sm_error *err)
{
    if (!strcmp(text, "chrome")) o->format = SM_TRACE_CHROME;
    else if (!strcmp(text, "paje")) o->format = SM_TRACE_PAJE;
    else return sm_fail(err, "--trace-format '%s': expected chrome or paje", text);
    return 0;
}
