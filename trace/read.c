/* Reading Chrome traces (trace/read.h). The file is read whole and walked by hand at the top
 * level — '{', keys, ':', values — while each value (and each event of "traceEvents") is parsed
 * alone by jansson, which stops after one value: a trace of millions of events never becomes
 * one JSON tree. The loader checks each event's fields and keeps slices, lanes, marks and
 * counter values in flat arrays. */
#include "trace/read.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "base/file.h"
#include "base/grow.h"

/* ---- the scanner ---- */

typedef struct sm_scan {
    const char *path;
    const char *base, *p, *end;
    const char *counted;         /* newlines are counted up to here */
    int line;
} sm_scan;

static void sm_skip_ws(sm_scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* The line of s->p (counted incrementally). */
static int sm_line(sm_scan *s)
{
    for (const char *q = s->counted; q < s->p; q++) s->line += *q == '\n';
    s->counted = s->p;
    return s->line;
}

static int sm_scan_fail(sm_scan *s, sm_error *err, const char *what)
{
    if (s->p >= s->end)
        return sm_fail(err, "%s: truncated: the file ends at line %d (byte %zu) where %s was "
                            "expected", s->path, sm_line(s), (size_t)(s->p - s->base), what);
    return sm_fail(err, "%s:%d: byte %zu: expected %s, found '%c'", s->path, sm_line(s),
                   (size_t)(s->p - s->base), what, *s->p);
}

/* One JSON value at s->p, which then points after it. */
static json_t *sm_scan_value(sm_scan *s, const char *what, sm_error *err)
{
    json_error_t je;
    size_t left = (size_t)(s->end - s->p);
    json_t *v = json_loadb(s->p, left < (1u << 30) ? left : (1u << 30),
                           JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK, &je);
    if (!v) {
        int line = sm_line(s);
        s->p += je.position > 0 ? je.position : 0;
        int at = sm_line(s);
        sm_fail(err, "%s:%d: %s %s starting at line %d (byte %zu): %s", s->path, at,
                s->p >= s->end ? "truncated:" : "malformed JSON in", what, line,
                (size_t)(s->p - s->base), je.text);
        return NULL;
    }
    s->p += je.position;
    return v;
}

static int sm_scan_events(sm_scan *s, sm_trace_event_fn fn, void *ctx, sm_error *err)
{
    sm_skip_ws(s);
    if (s->p >= s->end || *s->p != '[')
        return sm_scan_fail(s, err, "'[' (traceEvents is an array)");
    s->p++;
    sm_skip_ws(s);
    if (s->p < s->end && *s->p == ']') return s->p++, 0;
    for (size_t i = 0;; i++) {
        char what[64];
        snprintf(what, sizeof what, "event %zu", i);
        sm_skip_ws(s);
        sm_trace_pos pos = {s->path, i, (size_t)(s->p - s->base), sm_line(s)};
        json_t *ev = sm_scan_value(s, what, err);
        int rc = ev ? fn(ctx, ev, &pos, err) : -1;
        json_decref(ev);
        if (rc) return -1;
        sm_skip_ws(s);
        if (s->p < s->end && *s->p == ']') return s->p++, 0;
        if (s->p >= s->end || *s->p != ',')
            return sm_scan_fail(s, err, "',' or ']' after an event of traceEvents");
        s->p++;
    }
}

/* The key of a member; s->p then points after the ':'. */
static json_t *sm_scan_key(sm_scan *s, sm_error *err)
{
    if (s->p >= s->end || *s->p != '"') {
        sm_scan_fail(s, err, "a key");
        return NULL;
    }
    json_t *k = sm_scan_value(s, "a key", err);
    if (!k) return NULL;
    sm_skip_ws(s);
    if (s->p >= s->end || *s->p != ':') {
        sm_scan_fail(s, err, "':'");
        json_decref(k);
        return NULL;
    }
    s->p++;
    return k;
}

/* One member of the top-level object. */
static int sm_scan_member(sm_scan *s, sm_trace_event_fn fn, void *ctx, json_t **other,
                          int *events, sm_error *err)
{
    json_t *k = sm_scan_key(s, err);
    if (!k) return -1;
    int rc = 0;
    if (!strcmp(json_string_value(k), "traceEvents")) {
        rc = sm_scan_events(s, fn, ctx, err);
        *events = 1;
    } else {
        sm_skip_ws(s);
        int line = sm_line(s);
        json_t *v = sm_scan_value(s, json_string_value(k), err);
        if (!v) rc = -1;
        else if (!strcmp(json_string_value(k), "otherData") && !json_is_object(v))
            rc = sm_fail(err, "%s:%d: \"otherData\" must be an object", s->path, line);
        else if (!strcmp(json_string_value(k), "otherData") && other && !*other)
            *other = json_incref(v);
        json_decref(v);
    }
    json_decref(k);
    return rc;
}

static int sm_scan_object(sm_scan *s, sm_trace_event_fn fn, void *ctx, json_t **other,
                          sm_error *err)
{
    int events = 0;
    sm_skip_ws(s);
    if (s->p >= s->end)
        return sm_fail(err, "%s: %s: not a trace", s->path,
                       s->end == s->base ? "empty file" : "only whitespace, no JSON");
    if (*s->p != '{')
        return sm_fail(err, "%s:%d: the top level is not a JSON object (a Chrome trace is "
                            "{\"traceEvents\": [...]})", s->path, sm_line(s));
    s->p++;
    for (int first = 1;; first = 0) {
        sm_skip_ws(s);
        if (s->p < s->end && *s->p == '}') break;
        if (!first) {
            if (s->p >= s->end || *s->p != ',') return sm_scan_fail(s, err, "',' or '}'");
            s->p++;
            sm_skip_ws(s);
        }
        if (sm_scan_member(s, fn, ctx, other, &events, err)) return -1;
    }
    s->p++;
    sm_skip_ws(s);
    if (s->p < s->end) return sm_scan_fail(s, err, "the end of the file after the top object");
    return events ? 0 : sm_fail(err, "%s: no \"traceEvents\" array: not a Chrome trace", s->path);
}

int sm_trace_scan(const char *path, sm_trace_event_fn fn, void *ctx, json_t **other_data,
                  sm_error *err)
{
    size_t len;
    if (other_data) *other_data = NULL;
    char *text = sm_read_file(path, &len, err);    /* read, not mapped: a cut file is no SIGBUS */
    if (!text) return -1;
    sm_scan s = {path, text, text, text + len, text, 1};
    int rc = sm_scan_object(&s, fn, ctx, other_data, err);
    free(text);
    if (rc && other_data) {
        json_decref(*other_data);
        *other_data = NULL;
    }
    return rc;
}

int sm_trace_event_fail(const sm_trace_pos *pos, const json_t *ev, sm_error *err,
                        const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *name = json_string_value(json_object_get(ev, "name"));
    return sm_fail(err, "%s:%d: event %zu%s%s%s: %s", pos->path, pos->line, pos->index,
                   name ? " (\"" : "", name ? name : "", name ? "\")" : "", msg);
}

/* ---- string table ---- */

static unsigned sm_hash(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static int sm_strtab_rehash(sm_strtab *t)
{
    int n = t->nslot ? 2 * t->nslot : 64;
    int *slot = calloc((size_t)n, sizeof *slot);
    if (!slot) return -1;
    for (int i = 0; i < t->n; i++) {
        unsigned h = sm_hash(t->v[i]) & (unsigned)(n - 1);
        while (slot[h]) h = (h + 1) & (unsigned)(n - 1);
        slot[h] = i + 1;
    }
    free(t->slot);
    t->slot = slot;
    t->nslot = n;
    return 0;
}

int sm_strtab_intern(sm_strtab *t, const char *s)
{
    if (2 * (t->n + 1) > t->nslot && sm_strtab_rehash(t)) return -1;
    unsigned h = sm_hash(s) & (unsigned)(t->nslot - 1);
    for (; t->slot[h]; h = (h + 1) & (unsigned)(t->nslot - 1))
        if (!strcmp(t->v[t->slot[h] - 1], s)) return t->slot[h] - 1;
    if (sm_grow(&t->v, &t->cap, (size_t)t->n + 1, sizeof *t->v) || !(t->v[t->n] = strdup(s)))
        return -1;
    t->slot[h] = t->n + 1;
    return t->n++;
}

void sm_strtab_free(sm_strtab *t)
{
    for (int i = 0; i < t->n; i++) free(t->v[i]);
    free(t->v);
    free(t->slot);
    memset(t, 0, sizeof *t);
}

/* ---- the loader ---- */

typedef struct sm_loader {
    sm_trace_data *d;
    const sm_trace_pos *pos;
    const json_t *ev;
    sm_error *err;
    int last_lane;
} sm_loader;

static int sm_oom(sm_loader *L)
{
    return sm_trace_event_fail(L->pos, L->ev, L->err, "out of memory");
}

/* A member of obj that must be of a kind when present (need: must be present). */
static const json_t *sm_member(sm_loader *L, const json_t *obj, const char *key, int need,
                               int (*is)(const json_t *), const char *kind, int *bad)
{
    const json_t *v = json_object_get(obj, key);
    if ((!v && need) || (v && !is(v))) {
        sm_trace_event_fail(L->pos, L->ev, L->err, "\"%s\" %s %s", key,
                            v ? "must be" : "is missing: it must be", kind);
        *bad = 1;
        return NULL;
    }
    return v;
}

static int sm_is_string(const json_t *v) { return json_is_string(v); }
static int sm_is_number(const json_t *v) { return json_is_number(v); }
static int sm_is_integer(const json_t *v) { return json_is_integer(v); }
static int sm_is_object(const json_t *v) { return json_is_object(v); }
static int sm_is_array(const json_t *v) { return json_is_array(v); }
static int sm_is_num_or_null(const json_t *v) { return json_is_number(v) || json_is_null(v); }

static double sm_num(sm_loader *L, const json_t *o, const char *key, int need, double dflt,
                     int *bad)
{
    const json_t *v = sm_member(L, o, key, need, sm_is_number, "a number", bad);
    return v ? json_number_value(v) : dflt;
}

/* A number of o that must lie in [0, max] when present (unit: for the message). */
static double sm_nonneg(sm_loader *L, const json_t *o, const char *key, int need, double dflt,
                        double max, const char *unit, int *bad)
{
    double v = sm_num(L, o, key, need, dflt, bad);
    if (*bad || (v >= 0 && v <= max)) return v;
    sm_trace_event_fail(L->pos, L->ev, L->err, "\"%s\" is %g%s: it must lie in [0, %g]%s", key,
                        v, unit, max, unit);
    *bad = 1;
    return dflt;
}

/* A time: microseconds since the trace began. */
static double sm_time(sm_loader *L, const json_t *o, const char *key, int need, double dflt,
                      int *bad)
{
    return sm_nonneg(L, o, key, need, dflt, SM_TRACE_MAX_US, " us", bad);
}

static int64_t sm_int(sm_loader *L, const json_t *o, const char *key, int need, int64_t dflt,
                      int *bad)
{
    const json_t *v = sm_member(L, o, key, need, sm_is_integer, "an integer", bad);
    return v ? (int64_t)json_integer_value(v) : dflt;
}

static int sm_lane(sm_loader *L, int pid, int tid)
{
    sm_trace_data *d = L->d;
    if (L->last_lane >= 0 && d->lanes[L->last_lane].pid == pid &&
        d->lanes[L->last_lane].tid == tid)
        return L->last_lane;
    for (int i = 0; i < d->nlanes; i++)
        if (d->lanes[i].pid == pid && d->lanes[i].tid == tid) return L->last_lane = i;
    if (sm_grow(&d->lanes, &d->cap_lanes, (size_t)d->nlanes + 1, sizeof *d->lanes)) return -1;
    d->lanes[d->nlanes] = (sm_trace_lane){pid, tid, NULL};
    d->multi_pid |= pid != d->lanes[0].pid;
    return L->last_lane = d->nlanes++;
}

static int sm_slice_deps(sm_loader *L, const json_t *deps, sm_trace_slice *sl)
{
    sm_trace_data *d = L->d;
    size_t n = json_array_size(deps), i;
    const json_t *v;
    if (sm_grow(&d->deps, &d->cap_deps, d->ndeps + n, sizeof *d->deps)) return sm_oom(L);
    sl->deps_at = d->ndeps;
    sl->ndeps = (int)n;
    json_array_foreach(deps, i, v) {
        if (!json_is_integer(v))
            return sm_trace_event_fail(L->pos, L->ev, L->err, "\"deps\" must hold task ids");
        d->deps[d->ndeps++] = (int64_t)json_integer_value(v);
    }
    return 0;
}

/* The optional args of a task slice, as starmoe writes them. */
static int sm_slice_args(sm_loader *L, const json_t *a, sm_trace_slice *sl, const char **op)
{
    int bad = 0;
    const json_t *v = sm_member(L, a, "op", 0, sm_is_string, "a string", &bad);
    if (v) *op = json_string_value(v);
    sl->id = sm_int(L, a, "id", 0, -1, &bad);
    sl->graph = sm_int(L, a, "graph", 0, 0, &bad);
    sl->step = sm_int(L, a, "step", 0, -1, &bad);
    sl->micro = (int)sm_int(L, a, "mb", 0, -1, &bad);
    sl->layer = (int)sm_int(L, a, "layer", 0, -1, &bad);
    sl->expert = (int)sm_int(L, a, "expert", 0, -1, &bad);
    sl->stage = (int)sm_int(L, a, "stage", 0, 0, &bad);
    sl->order = sm_int(L, a, "order", 0, -1, &bad);
    sl->submit = sm_time(L, a, "submit_us", 0, sl->ts, &bad);
    sl->ready = sm_time(L, a, "ready_us", 0, sl->ts, &bad);
    sl->flops = sm_nonneg(L, a, "flops", 0, 0, DBL_MAX, "", &bad);
    sl->bytes = sm_nonneg(L, a, "bytes", 0, 0, DBL_MAX, "", &bad);
    v = sm_member(L, a, "predicted_us", 0, sm_is_num_or_null, "a number or null", &bad);
    sl->predicted = json_is_number(v) ? sm_time(L, a, "predicted_us", 0, NAN, &bad) : NAN;
    const json_t *deps = sm_member(L, a, "deps", 0, sm_is_array, "an array of ids", &bad);
    if (bad) return -1;
    if (sl->stage < 0 || sl->stage > SM_TRACE_MAX_STAGE)
        return sm_trace_event_fail(L->pos, L->ev, L->err, "\"stage\" %d is outside [0, %d]",
                                   sl->stage, SM_TRACE_MAX_STAGE);
    if (sl->submit > sl->ready + SM_TRACE_TIME_SLACK_US)
        return sm_trace_event_fail(L->pos, L->ev, L->err, "\"submit_us\" %.3f is after "
                                   "\"ready_us\" %.3f", sl->submit, sl->ready);
    if (sl->ready > sl->ts + SM_TRACE_TIME_SLACK_US)
        return sm_trace_event_fail(L->pos, L->ev, L->err, "\"ready_us\" %.3f is after the "
                                   "start \"ts\" %.3f", sl->ready, sl->ts);
    return deps ? sm_slice_deps(L, deps, sl) : 0;
}

/* A message's args: dir ("send" or "recv"), peer, and optionally tag and bytes. */
static int sm_load_message(sm_loader *L, const json_t *args, sm_trace_msg_slice *m)
{
    sm_trace_data *d = L->d;
    int bad = !args;
    if (bad) return sm_trace_event_fail(L->pos, L->ev, L->err, "a message needs \"args\"");
    const json_t *dir = sm_member(L, args, "dir", 1, sm_is_string, "a string", &bad);
    m->peer = bad ? 0 : (int)sm_int(L, args, "peer", 1, 0, &bad);
    m->tag = bad ? 0 : sm_int(L, args, "tag", 0, -1, &bad);
    m->bytes = bad ? 0 : sm_nonneg(L, args, "bytes", 0, 0, DBL_MAX, "", &bad);
    if (bad) return -1;
    m->send = !strcmp(json_string_value(dir), "send");
    if (!m->send && strcmp(json_string_value(dir), "recv"))
        return sm_trace_event_fail(L->pos, L->ev, L->err, "\"dir\" must be \"send\" or "
                                   "\"recv\"");
    if (sm_grow(&d->msgs, &d->cap_msgs, d->nmsgs + 1, sizeof *d->msgs)) return sm_oom(L);
    d->msgs[d->nmsgs++] = *m;
    return 0;
}

static int sm_load_slice(sm_loader *L, const json_t *ev)
{
    sm_trace_data *d = L->d;
    int bad = 0;
    sm_trace_slice sl = {.id = -1, .layer = -1, .micro = -1, .expert = -1, .predicted = NAN,
                         .event = L->pos->index, .line = L->pos->line};
    const json_t *name = sm_member(L, ev, "name", 1, sm_is_string, "a string", &bad);
    const json_t *cat = bad ? NULL : sm_member(L, ev, "cat", 0, sm_is_string, "a string", &bad);
    sl.ts = bad ? 0 : sm_time(L, ev, "ts", 1, 0, &bad);
    sl.dur = bad ? 0 : sm_time(L, ev, "dur", 1, 0, &bad);
    int64_t pid = bad ? 0 : sm_int(L, ev, "pid", 1, 0, &bad);
    int64_t tid = bad ? 0 : sm_int(L, ev, "tid", 1, 0, &bad);
    const json_t *args = bad ? NULL : sm_member(L, ev, "args", 0, sm_is_object, "an object", &bad);
    if (bad) return -1;
    if (sl.ts + sl.dur > SM_TRACE_MAX_US)
        return sm_trace_event_fail(L->pos, ev, L->err, "the task ends at %g us (\"ts\" + "
                                   "\"dur\"), after %g us", sl.ts + sl.dur, SM_TRACE_MAX_US);
    if (cat && !strcmp(json_string_value(cat), "message")) {
        sm_trace_msg_slice m = {.ts = sl.ts, .dur = sl.dur, .pid = (int)pid, .tid = (int)tid,
                                .name = sm_strtab_intern(&d->msg_names, json_string_value(name))};
        return m.name < 0 ? sm_oom(L) : sm_load_message(L, args, &m);
    }
    const char *op = json_string_value(name);
    sl.submit = sl.ready = sl.ts;
    if (args && sm_slice_args(L, args, &sl, &op)) return -1;
    sl.lane = sm_lane(L, (int)pid, (int)tid);
    sl.op = sm_strtab_intern(&d->ops, op);
    sl.cat = sm_strtab_intern(&d->cats, cat ? json_string_value(cat) : "");
    if (sl.lane < 0 || sl.op < 0 || sl.cat < 0 ||
        sm_grow(&d->slices, &d->cap_slices, d->nslices + 1, sizeof *d->slices))
        return sm_oom(L);
    if (d->nslices == 0 || sl.ts < d->begin) d->begin = sl.ts;
    if (d->nslices == 0 || sl.ts + sl.dur > d->end) d->end = sl.ts + sl.dur;
    d->slices[d->nslices++] = sl;
    return 0;
}

/* thread_name metadata names a lane; other metadata is not needed. */
static int sm_load_meta(sm_loader *L, const json_t *ev)
{
    int bad = 0;
    const json_t *name = sm_member(L, ev, "name", 1, sm_is_string, "a string", &bad);
    if (bad || strcmp(json_string_value(name), "thread_name")) return bad ? -1 : 0;
    int64_t pid = sm_int(L, ev, "pid", 1, 0, &bad);
    int64_t tid = bad ? 0 : sm_int(L, ev, "tid", 1, 0, &bad);
    const json_t *args = bad ? NULL : sm_member(L, ev, "args", 1, sm_is_object, "an object", &bad);
    const json_t *v = bad ? NULL : sm_member(L, args, "name", 1, sm_is_string, "a string", &bad);
    if (bad) return -1;
    int lane = sm_lane(L, (int)pid, (int)tid);
    if (lane < 0) return sm_oom(L);
    free(L->d->lanes[lane].name);
    if (!(L->d->lanes[lane].name = strdup(json_string_value(v)))) return sm_oom(L);
    return 0;
}

static int sm_load_counter(sm_loader *L, const json_t *ev)
{
    sm_trace_data *d = L->d;
    int bad = 0;
    const json_t *name = sm_member(L, ev, "name", 1, sm_is_string, "a string", &bad);
    double ts = bad ? 0 : sm_time(L, ev, "ts", 1, 0, &bad);
    const json_t *args = bad ? NULL : sm_member(L, ev, "args", 1, sm_is_object, "an object", &bad);
    if (bad) return -1;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)args, key, v) {
        char full[256];
        if (!json_is_number(v))
            return sm_trace_event_fail(L->pos, ev, L->err, "counter value \"%s\" must be a number",
                                       key);
        snprintf(full, sizeof full, "%s %s", json_string_value(name), key);
        int c = sm_strtab_intern(&d->counters, full);
        if (c < 0 || sm_grow(&d->points, &d->cap_points, d->npoints + 1, sizeof *d->points))
            return sm_oom(L);
        d->points[d->npoints++] = (sm_trace_point){ts, json_number_value(v), c};
    }
    return 0;
}

static int sm_load_instant(sm_loader *L, const json_t *ev)
{
    sm_trace_data *d = L->d;
    int bad = 0;
    const json_t *name = sm_member(L, ev, "name", 1, sm_is_string, "a string", &bad);
    const json_t *cat = bad ? NULL : sm_member(L, ev, "cat", 0, sm_is_string, "a string", &bad);
    double ts = bad ? 0 : sm_time(L, ev, "ts", 1, 0, &bad);
    const json_t *args = bad ? NULL : sm_member(L, ev, "args", 0, sm_is_object, "an object", &bad);
    int64_t tasks = bad || !args ? -1 : sm_int(L, args, "tasks", 0, -1, &bad);
    if (bad) return -1;
    if (sm_grow(&d->marks, &d->cap_marks, d->nmarks + 1, sizeof *d->marks)) return sm_oom(L);
    sm_trace_mark *m = &d->marks[d->nmarks];
    *m = (sm_trace_mark){ts, strdup(json_string_value(name)),
                         strdup(cat ? json_string_value(cat) : ""), tasks};
    if (!m->name || !m->cat) {
        free(m->name);
        free(m->cat);
        return sm_oom(L);
    }
    d->nmarks++;
    return 0;
}

static int sm_load_event(void *ctx, const json_t *ev, const sm_trace_pos *pos, sm_error *err)
{
    sm_loader *L = ctx;
    int bad = 0;
    L->pos = pos;
    L->ev = ev;
    if (!json_is_object(ev))
        return sm_trace_event_fail(pos, ev, err, "an event must be a JSON object");
    const json_t *ph = sm_member(L, ev, "ph", 1, sm_is_string, "a string", &bad);
    if (bad) return -1;
    switch (*json_string_value(ph)) {
    case 'X': return sm_load_slice(L, ev);
    case 'M': return sm_load_meta(L, ev);
    case 'C': return sm_load_counter(L, ev);
    case 'i':
    case 'I': return sm_load_instant(L, ev);
    default: return 0;           /* flows and other phases: not needed */
    }
}

/* ---- checks across events: ids and dependencies ---- */

static int sm_cmp_by_id(const void *a, const void *b)
{
    const sm_trace_id *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return (x->slice > y->slice) - (x->slice < y->slice);
}

long sm_trace_find_id(const sm_trace_data *d, int64_t id)
{
    size_t lo = 0, hi = d->nby_id;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (d->by_id[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < d->nby_id && d->by_id[lo].id == id ? (long)d->by_id[lo].slice : -1;
}

static int sm_slice_fail(const sm_trace_data *d, const sm_trace_slice *s, const char *path,
                         sm_error *err, const char *what)
{
    return sm_fail(err, "%s:%d: event %zu (op \"%s\"): %s", path, s->line, s->event,
                   d->ops.v[s->op], what);
}

/* One slice's dependencies: tasks of its own step graph that ended before it started (ids the
 * trace does not hold are let be: the summary ignores them). */
static int sm_check_slice_deps(const sm_trace_data *d, const sm_trace_slice *s, const char *path,
                               sm_error *err)
{
    char what[256];
    for (int k = 0; k < s->ndeps; k++) {
        int64_t id = d->deps[s->deps_at + k];
        long i = sm_trace_find_id(d, id);
        if (i < 0) continue;
        const sm_trace_slice *p = &d->slices[i];
        if (p->graph != s->graph)
            snprintf(what, sizeof what, "\"deps\": task %lld is in step graph %lld, this task in "
                     "graph %lld", (long long)id, (long long)p->graph, (long long)s->graph);
        else if (p->ts + p->dur > s->ts + SM_TRACE_TIME_SLACK_US)
            snprintf(what, sizeof what, "\"deps\": task %lld ends at %.3f us, after this task "
                     "starts (\"ts\" %.3f us)", (long long)id, p->ts + p->dur, s->ts);
        else
            continue;
        return sm_slice_fail(d, s, path, err, what);
    }
    return 0;
}

/* Indexes the slices by id, which must be unique; dependencies stay in their graph and in
 * time order. */
static int sm_check_deps(sm_trace_data *d, const char *path, sm_error *err)
{
    sm_trace_id *v = malloc((d->nslices ? d->nslices : 1) * sizeof *v);
    int rc = 0;
    if (!v) return sm_fail(err, "%s: out of memory", path);
    d->by_id = v;
    for (size_t i = 0; i < d->nslices; i++)
        if (d->slices[i].id >= 0) v[d->nby_id++] = (sm_trace_id){d->slices[i].id, i};
    qsort(v, d->nby_id, sizeof *v, sm_cmp_by_id);
    for (size_t j = 1; rc == 0 && j < d->nby_id; j++) {
        if (v[j].id != v[j - 1].id) continue;
        char what[128];
        snprintf(what, sizeof what, "\"id\" %lld is also the id of event %zu",
                 (long long)v[j].id, d->slices[v[j - 1].slice].event);
        rc = sm_slice_fail(d, &d->slices[v[j].slice], path, err, what);
    }
    for (size_t i = 0; rc == 0 && i < d->nslices; i++)
        rc = sm_check_slice_deps(d, &d->slices[i], path, err);
    return rc;
}

int sm_trace_load(sm_trace_data *d, const char *path, sm_error *err)
{
    memset(d, 0, sizeof *d);
    sm_loader L = {.d = d, .err = err, .last_lane = -1};
    if (sm_trace_scan(path, sm_load_event, &L, &d->meta, err)) return -1;
    return sm_check_deps(d, path, err);
}

void sm_trace_data_free(sm_trace_data *d)
{
    for (int i = 0; i < d->nlanes; i++) free(d->lanes[i].name);
    for (size_t i = 0; i < d->nmarks; i++) free(d->marks[i].name), free(d->marks[i].cat);
    free(d->slices);
    free(d->by_id);
    free(d->deps);
    free(d->lanes);
    free(d->marks);
    free(d->points);
    free(d->msgs);
    sm_strtab_free(&d->ops);
    sm_strtab_free(&d->cats);
    sm_strtab_free(&d->counters);
    sm_strtab_free(&d->msg_names);
    json_decref(d->meta);
    memset(d, 0, sizeof *d);
}

const char *sm_trace_lane_name(const sm_trace_data *d, int lane, char *buf, size_t cap)
{
    const sm_trace_lane *l = &d->lanes[lane];
    char tid[24];
    snprintf(tid, sizeof tid, "tid %d", l->tid);
    return sm_trace_pid_lane_name(d, l->pid, l->name ? l->name : tid, buf, cap);
}

const char *sm_trace_pid_lane_name(const sm_trace_data *d, int pid, const char *name, char *buf,
                                   size_t cap)
{
    if (d->multi_pid) snprintf(buf, cap, "%d: %s", pid, name);
    else snprintf(buf, cap, "%s", name);
    return buf;
}

char *sm_trace_message_only_lanes(const sm_trace_data *d)
{
    char *only = calloc(d->nlanes ? (size_t)d->nlanes : 1, 1);
    int lane = 0;
    for (size_t i = 0; only && i < d->nmsgs; i++) {
        const sm_trace_msg_slice *m = &d->msgs[i];
        /* messages come in runs of one lane: try the last one found first */
        if (lane >= d->nlanes || d->lanes[lane].pid != m->pid || d->lanes[lane].tid != m->tid)
            for (lane = 0; lane < d->nlanes; lane++)
                if (d->lanes[lane].pid == m->pid && d->lanes[lane].tid == m->tid) break;
        if (lane < d->nlanes) only[lane] = 1;
    }
    for (size_t i = 0; only && i < d->nslices; i++) only[d->slices[i].lane] = 0;
    return only;
}

const char *sm_trace_meta_str(const sm_trace_data *d, const char *key)
{
    const char *s = json_string_value(json_object_get(d->meta, key));
    return s ? s : "";
}
