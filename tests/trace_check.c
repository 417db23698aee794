/* Checks a Chrome trace written by starmoe (and optionally its `trace summary --format json`)
 * with jansson, independently of the library's reader; prints one "PASS what" or "FAIL what
 * (why)" line per check for tests/test_trace.sh, which turns them into TAP lines.
 *   trace_check TRACE.json [SUMMARY.json]
 * Checks: the file parses; exactly one "X" slice per task of the traced step graphs (the
 * "tasks" of each step mark); every slice carries its op, category, step, micro-batch, layer,
 * expert, stage, times, prediction, flops and bytes; no lane overlaps itself; every time lies
 * inside the run's span ("run begin" .. "run end"); every dependency ended before its consumer
 * started; flows pair up, one per dependency; the metadata names scheduler, StarPU version,
 * git revision and config; the summary's per-op totals add up to the slices' durations and
 * per-worker busy + idle to the makespan. Messages between ranks (slices of category "message"
 * in a rank's trace) are no tasks: each carries its direction, peer, tag and bytes, and their
 * lanes do not overlap themselves either. */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void check(int ok, const char *what, const char *fmt, ...)
{
    char why[512] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (ok) printf("PASS %s\n", what);
    else printf("FAIL %s (%s)\n", what, why);
    failures += !ok;
}

typedef struct slice {
    double ts, end;
    long long pid, tid, id;
} slice;

typedef struct facts {
    slice *v;                    /* tasks and messages */
    size_t n, nmsgs;
    long long step_tasks, deps, flows_s, flows_f;
    double run_begin, run_end, lo, hi, dur_sum;
    double slo, shi;             /* first slice start, last slice end */
    int bad_fields, bad_msgs;
    char first_bad[256];
} facts;

static int cmp_lane(const void *a, const void *b)
{
    const slice *x = a, *y = b;
    if (x->pid != y->pid) return x->pid < y->pid ? -1 : 1;
    if (x->tid != y->tid) return x->tid < y->tid ? -1 : 1;
    return (x->ts > y->ts) - (x->ts < y->ts);
}

static int cmp_id(const void *a, const void *b)
{
    const slice *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

static void bad(facts *f, const char *what, const json_t *ev)
{
    if (!f->bad_fields++)
        snprintf(f->first_bad, sizeof f->first_bad, "%s in \"%s\"", what,
                 json_string_value(json_object_get(ev, "name")));
}

static void see_time(facts *f, double t)
{
    f->lo = fmin(f->lo, t);
    f->hi = fmax(f->hi, t);
}

/* The args every task slice must carry, with their types. */
static void check_args(facts *f, const json_t *ev, double ts)
{
    static const char *ints[] = {"id", "graph", "step", "mb", "layer", "expert", "stage"};
    static const char *cats[] = {"forward", "backward-input", "backward-weight", "optimizer",
                                 "communication", "io"};
    const json_t *a = json_object_get(ev, "args");
    const char *cat = json_string_value(json_object_get(ev, "cat"));
    int known = 0;
    for (int i = 0; cat && i < 6; i++) known |= !strcmp(cat, cats[i]);
    if (!known) bad(f, "category", ev);
    if (!json_is_string(json_object_get(a, "op"))) bad(f, "args.op", ev);
    for (int i = 0; i < 7; i++)
        if (!json_is_integer(json_object_get(a, ints[i]))) bad(f, ints[i], ev);
    const json_t *pred = json_object_get(a, "predicted_us");
    if (!pred || !(json_is_number(pred) || json_is_null(pred))) bad(f, "predicted_us", ev);
    if (!json_is_number(json_object_get(a, "flops"))) bad(f, "flops", ev);
    if (!(json_number_value(json_object_get(a, "bytes")) > 0)) bad(f, "bytes", ev);
    double submit = json_number_value(json_object_get(a, "submit_us"));
    double ready = json_number_value(json_object_get(a, "ready_us"));
    if (!(submit <= ready + 1e-3 && ready <= ts + 1e-3)) bad(f, "submit <= ready <= start", ev);
    see_time(f, submit);
    f->deps += (long long)json_array_size(json_object_get(a, "deps"));
}

static int is_message(const json_t *ev)
{
    const char *cat = json_string_value(json_object_get(ev, "cat"));
    return cat && !strcmp(cat, "message");
}

/* A message between ranks: its args, its time. */
static void see_message(facts *f, const json_t *ev, double ts, double dur)
{
    const json_t *a = json_object_get(ev, "args");
    const char *dir = json_string_value(json_object_get(a, "dir"));
    long long pid = json_integer_value(json_object_get(ev, "pid"));
    const json_t *peer = json_object_get(a, "peer");
    f->bad_msgs += !dir || (strcmp(dir, "send") && strcmp(dir, "recv")) ||
                   !json_is_integer(peer) || json_integer_value(peer) == pid ||
                   !json_is_integer(json_object_get(a, "tag")) ||
                   !(json_number_value(json_object_get(a, "bytes")) > 0) ||
                   !json_string_length(json_object_get(ev, "name")) || !(dur >= 0);
    see_time(f, ts);
    see_time(f, ts + dur);
    f->nmsgs++;
    f->v[f->n++] = (slice){ts, ts + dur, pid, json_integer_value(json_object_get(ev, "tid")), -1};
}

static void see_slice(facts *f, const json_t *ev)
{
    double ts = json_number_value(json_object_get(ev, "ts"));
    double dur = json_number_value(json_object_get(ev, "dur"));
    if (is_message(ev)) {
        see_message(f, ev, ts, dur);
        return;
    }
    if (!json_is_number(json_object_get(ev, "ts")) || !json_is_number(json_object_get(ev, "dur")) ||
        dur < 0)
        bad(f, "ts/dur", ev);
    check_args(f, ev, ts);
    see_time(f, ts);
    see_time(f, ts + dur);
    f->slo = fmin(f->slo, ts);
    f->shi = fmax(f->shi, ts + dur);
    f->dur_sum += dur;
    f->v[f->n++] = (slice){ts, ts + dur, json_integer_value(json_object_get(ev, "pid")),
                           json_integer_value(json_object_get(ev, "tid")),
                           json_integer_value(json_object_get(json_object_get(ev, "args"), "id"))};
}

static void see_instant(facts *f, const json_t *ev)
{
    const char *name = json_string_value(json_object_get(ev, "name"));
    const char *cat = json_string_value(json_object_get(ev, "cat"));
    double ts = json_number_value(json_object_get(ev, "ts"));
    const json_t *tasks = json_object_get(json_object_get(ev, "args"), "tasks");
    if (name && !strcmp(name, "run begin")) f->run_begin = ts;
    else if (name && !strcmp(name, "run end")) f->run_end = ts;
    else see_time(f, ts);
    if (cat && !strcmp(cat, "step") && json_is_integer(tasks))
        f->step_tasks += json_integer_value(tasks);
}

static void scan(facts *f, const json_t *events)
{
    size_t i;
    const json_t *ev;
    f->v = calloc(json_array_size(events) + 1, sizeof *f->v);
    f->lo = f->slo = INFINITY;
    f->hi = f->shi = -INFINITY;
    json_array_foreach(events, i, ev) {
        const char *ph = json_string_value(json_object_get(ev, "ph"));
        if (!ph) bad(f, "ph", ev);
        else if (!strcmp(ph, "X")) see_slice(f, ev);
        else if (!strcmp(ph, "i")) see_instant(f, ev);
        else if (!strcmp(ph, "C")) see_time(f, json_number_value(json_object_get(ev, "ts")));
        else if (!strcmp(ph, "s")) f->flows_s++;
        else if (!strcmp(ph, "f")) f->flows_f++;
    }
}

static void check_lanes(facts *f)
{
    size_t overlaps = 0;
    qsort(f->v, f->n, sizeof *f->v, cmp_lane);
    for (size_t i = 1; i < f->n; i++)
        if (f->v[i].pid == f->v[i - 1].pid && f->v[i].tid == f->v[i - 1].tid &&
            f->v[i].ts < f->v[i - 1].end - 1e-6)
            overlaps++;
    check(overlaps == 0, "no lane overlaps itself", "%zu overlapping slices", overlaps);
}

static const slice *find_id(const facts *f, long long id)
{
    slice key = {.id = id};
    return bsearch(&key, f->v, f->n, sizeof *f->v, cmp_id);
}

/* Every dependency of a slice ended before the slice started. */
static void check_deps(facts *f, const json_t *events)
{
    size_t i, late = 0, missing = 0;
    const json_t *ev;
    qsort(f->v, f->n, sizeof *f->v, cmp_id);
    json_array_foreach(events, i, ev) {
        if (strcmp(json_string_value(json_object_get(ev, "ph")), "X")) continue;
        if (is_message(ev)) continue;
        const json_t *a = json_object_get(ev, "args"), *d;
        double ts = json_number_value(json_object_get(ev, "ts"));
        size_t k;
        json_array_foreach(json_object_get(a, "deps"), k, d) {
            const slice *p = find_id(f, json_integer_value(d));
            if (!p) missing++;
            else if (p->end > ts + 1e-3) late++;
        }
    }
    check(missing == 0 && late == 0 && f->deps > 0,
          "dependencies recorded, each ended before its consumer started",
          "%lld deps, %zu unknown ids, %zu started early", f->deps, missing, late);
}

static void check_meta(const json_t *root)
{
    static const char *keys[] = {"scheduler", "starpu_version", "git_revision", "config"};
    const json_t *meta = json_object_get(root, "otherData");
    int ok = 1;
    for (int i = 0; i < 4; i++) ok &= json_string_length(json_object_get(meta, keys[i])) > 0;
    check(ok, "metadata: scheduler, StarPU version, git revision, config", "otherData lacks one");
}

static void check_summary(const facts *f, const char *path)
{
    json_error_t je;
    json_t *s = json_load_file(path, 0, &je), *v;
    if (!s) {
        check(0, "summary parses", "%s:%d: %s", path, je.line, je.text);
        return;
    }
    double ops = 0, span = json_number_value(json_object_get(s, "makespan_us")), worst = 0;
    long long count = 0;
    size_t i;
    json_array_foreach(json_object_get(s, "ops"), i, v) {
        ops += json_number_value(json_object_get(v, "total_us"));
        count += json_integer_value(json_object_get(v, "count"));
    }
    check(fabs(ops - f->dur_sum) <= 1e-6 * f->dur_sum + 1e-3 &&
              count == (long long)(f->n - f->nmsgs),
          "summary: per-op totals add up to the slices' durations",
          "ops %.6f us vs slices %.6f us, %lld vs %zu tasks", ops, f->dur_sum, count,
          f->n - f->nmsgs);
    json_array_foreach(json_object_get(s, "workers"), i, v) {
        double sum = json_number_value(json_object_get(v, "busy_us")) +
                     json_number_value(json_object_get(v, "idle_us"));
        worst = fmax(worst, fabs(sum - span));
    }
    check(json_array_size(json_object_get(s, "workers")) > 0 && worst <= 1e-6 * span + 1e-3 &&
              fabs(span - (f->shi - f->slo)) <= 1e-3,
          "summary: per-worker busy + idle = makespan (first start to last end)",
          "off by %.6f us, makespan %.3f vs %.3f us", worst, span, f->shi - f->slo);
    json_decref(s);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: trace_check TRACE.json [SUMMARY.json]\n");
        return 2;
    }
    json_error_t je;
    json_t *root = json_load_file(argv[1], 0, &je);
    check(root != NULL, "the trace parses as JSON (jansson)", "%s:%d: %s", argv[1], je.line,
          je.text);
    const json_t *events = json_object_get(root, "traceEvents");
    if (!json_is_array(events)) {
        check(0, "traceEvents is an array", "missing");
        json_decref(root);
        return 1;
    }
    facts f = {0};
    scan(&f, events);
    size_t tasks = f.n - f.nmsgs;
    check(tasks > 0 && (long long)tasks == f.step_tasks, "one slice per task of the traced graphs",
          "%zu slices, the step marks count %lld tasks", tasks, f.step_tasks);
    if (f.nmsgs)
        check(f.bad_msgs == 0, "every message carries its direction, another rank as peer, tag "
                               "and bytes", "%d of %zu messages lack one", f.bad_msgs, f.nmsgs);
    check(f.bad_fields == 0, "every slice carries op, category, step, mb, layer, expert, stage, "
                             "times, prediction, flops and bytes",
          "%d bad fields, first: %s", f.bad_fields, f.first_bad);
    check(f.run_end > f.run_begin && f.lo >= f.run_begin && f.hi <= f.run_end,
          "every time inside the run's span", "run %.3f .. %.3f, events %.3f .. %.3f",
          f.run_begin, f.run_end, f.lo, f.hi);
    check_lanes(&f);
    check_deps(&f, events);
    if (f.flows_s || f.flows_f)
        check(f.flows_s == f.flows_f && f.flows_s == f.deps, "one flow arrow per dependency",
              "%lld starts, %lld ends, %lld deps", f.flows_s, f.flows_f, f.deps);
    check_meta(root);
    if (argc > 2) check_summary(&f, argv[2]);
    free(f.v);
    json_decref(root);
    return failures ? 1 : 0;
}
