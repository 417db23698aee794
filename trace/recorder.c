/* The tracer (trace/recorder.h): graph records to trace events after each step. Slices come from
 * the dependency walk (graph/deps.c), so each task is written with the ids of the tasks it
 * waited for; times are StarPU's (starpu_timing_now()'s clock) shifted to the trace's start.
 * Counters are derived from the same records: ready tasks (pushed to the scheduler, not yet
 * started) and activation memory (the bytes of each activation tensor from its first access
 * to its last one in the step). All scratch memory is kept from step to step. */
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
    int oom;
};

static int64_t sm_trace_ns(const sm_tracer *t, double us)
{
    return llround((us - t->t0_us) * 1e3);
}

/* Metadata of every trace, after the caller's. */
static int sm_tracer_header(sm_tracer *t, const char *scheduler, const sm_trace_meta *meta,
                            int nmeta, sm_error *err)
{
    char version[32], workers[16], steps[64];
    int major, minor, release;
    starpu_get_version(&major, &minor, &release);
    snprintf(version, sizeof version, "%d.%d.%d", major, minor, release);
    snprintf(workers, sizeof workers, "%u", starpu_worker_get_count());
    if (t->o.last_step >= 0)
        snprintf(steps, sizeof steps, "%lld:%lld", (long long)t->o.first_step,
                 (long long)t->o.last_step);
    else
        snprintf(steps, sizeof steps, "%lld:", (long long)t->o.first_step);
    const sm_trace_meta common[] = {
        {"scheduler", scheduler},              {"starpu_version", version},
        {"git_revision", SM_GIT_REVISION},     {"starmoe_version", PACKAGE_VERSION},
        {"workers", workers},                  {"rank", "0"},
        {"trace_steps", steps},
        {"dependencies", t->o.deps ? "args.deps and flow arrows" : "args.deps"},
        {"clock", "microseconds since the trace began (StarPU's starpu_timing_now)"}};
    int ncommon = (int)(sizeof common / sizeof *common);
    sm_trace_meta all[nmeta + ncommon];
    memcpy(all, meta, (size_t)nmeta * sizeof *meta);
    memcpy(all + nmeta, common, sizeof common);
    t->w = sm_trace_writer_open(t->o.path, t->o.format, 0, all, nmeta + ncommon, err);
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
                   const sm_trace_meta *meta, int nmeta, sm_error *err)
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
    if (t) t->begin_us = starpu_timing_now();
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
    if (sm_trace_ready(t) || sm_trace_memory(t))
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
