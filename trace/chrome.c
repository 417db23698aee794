/* The streaming trace writer (trace/writer.h): Chrome trace-event JSON, or Paje through
 * trace/paje.c. A Chrome event is one line, built in the writer's line buffer by hand-rolled
 * formatting (a task costs well under a microsecond: no printf on the hot path) and handed to
 * stdio with one fwrite; times are printed from integer nanoseconds as microseconds with three
 * decimals, so a slice's ts + dur is exactly its end. */
#include "trace/writer.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/grow.h"

#define SM_TRACE_BUFFER (1 << 20)

/* The event being formatted. */
typedef struct sm_line {
    char *p;
    size_t n, cap;
    int oom;
} sm_line;

struct sm_trace_writer {
    FILE *f;
    char *path;
    char *buf;                   /* the stream's buffer */
    sm_line line;
    int rank;
    uint64_t nevents;            /* Chrome events written so far (for the commas) */
    sm_paje *paje;
};

/* ---- formatting into the line ---- */

static void ln_raw(sm_line *l, const char *s, size_t n)
{
    if (sm_grow(&l->p, &l->cap, l->n + n, 1)) {
        l->oom = 1;
        return;
    }
    memcpy(l->p + l->n, s, n);
    l->n += n;
}

#define ln_lit(l, s) ln_raw((l), (s), sizeof(s) - 1)

static void ln_u64(sm_line *l, uint64_t v)
{
    char tmp[20];
    int i = 20;
    do tmp[--i] = (char)('0' + v % 10);
    while (v /= 10);
    ln_raw(l, tmp + i, (size_t)(20 - i));
}

static void ln_i64(sm_line *l, int64_t v)
{
    if (v < 0) ln_lit(l, "-");
    ln_u64(l, v < 0 ? -(uint64_t)v : (uint64_t)v);
}

/* Nanoseconds as microseconds with exactly three decimals. */
static void ln_us(sm_line *l, int64_t ns)
{
    uint64_t a = ns < 0 ? -(uint64_t)ns : (uint64_t)ns;
    char frac[4] = {'.', (char)('0' + a % 1000 / 100), (char)('0' + a % 100 / 10),
                    (char)('0' + a % 10)};
    if (ns < 0) ln_lit(l, "-");
    ln_u64(l, a / 1000);
    ln_raw(l, frac, 4);
}

/* A number: integers without a fraction, null when not finite. */
static void ln_num(sm_line *l, double v)
{
    char tmp[32];
    if (!isfinite(v)) ln_lit(l, "null");
    else if (v == floor(v) && fabs(v) < 9e15) ln_i64(l, (int64_t)v);
    else ln_raw(l, tmp, (size_t)snprintf(tmp, sizeof tmp, "%.17g", v));
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static void ln_str(sm_line *l, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    ln_lit(l, "\"");
    for (;;) {
        size_t run = 0;
        while (s[run] && s[run] != '"' && s[run] != '\\' && (unsigned char)s[run] >= 0x20) run++;
        ln_raw(l, s, run);
        s += run;
        if (!*s) break;
        unsigned char c = (unsigned char)*s++;
        if (c >= 0x20) {
            char esc[2] = {'\\', (char)c};
            ln_raw(l, esc, 2);
        } else {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            ln_raw(l, esc, 6);
        }
    }
    ln_lit(l, "\"");
}

/* Starts an event: the separator and the opening brace. */
static sm_line *sm_event(sm_trace_writer *w)
{
    w->line.n = 0;
    if (w->nevents++) ln_lit(&w->line, ",\n{");
    else ln_lit(&w->line, "\n{");
    return &w->line;
}

/* Ends an event: the line goes to the stream. -1 when memory ran out. */
static int sm_event_end(sm_trace_writer *w)
{
    if (w->line.oom) return -1;
    fwrite(w->line.p, 1, w->line.n, w->f);
    return 0;
}

/* ",\"pid\":R" and, when tid >= 0, ",\"tid\":T". */
static void ln_where(sm_line *l, int rank, int tid)
{
    ln_lit(l, ",\"pid\":");
    ln_i64(l, rank);
    if (tid < 0) return;
    ln_lit(l, ",\"tid\":");
    ln_i64(l, tid);
}

/* ---- events ---- */

/* A metadata event: args {key: name} when name is set, else {key: sort}. */
static int sm_chrome_meta(sm_trace_writer *w, const char *what, int tid, const char *key,
                          const char *name, int sort)
{
    sm_line *l = sm_event(w);
    ln_lit(l, "\"name\":");
    ln_str(l, what);
    ln_lit(l, ",\"ph\":\"M\"");
    ln_where(l, w->rank, tid);
    ln_lit(l, ",\"args\":{");
    ln_str(l, key);
    ln_lit(l, ":");
    if (name) ln_str(l, name);
    else ln_i64(l, sort);
    ln_lit(l, "}}");
    return sm_event_end(w);
}

static int sm_chrome_header(sm_trace_writer *w, const sm_trace_meta *meta, int nmeta)
{
    char name[32];
    sm_line *l = &w->line;
    l->n = 0;
    ln_lit(l, "{\"otherData\":{");
    for (int i = 0; i < nmeta; i++) {
        if (i) ln_lit(l, ",");
        ln_str(l, meta[i].key);
        ln_lit(l, ":");
        ln_str(l, meta[i].value ? meta[i].value : "");
    }
    ln_lit(l, "},\n\"traceEvents\":[");
    if (sm_event_end(w)) return -1;
    snprintf(name, sizeof name, "rank %d", w->rank);
    return sm_chrome_meta(w, "process_name", 0, "name", name, 0) |
           sm_chrome_meta(w, "process_sort_index", 0, "sort_index", NULL, w->rank);
}

static void sm_writer_free(sm_trace_writer *w)
{
    sm_paje_free(w->paje);
    free(w->line.p);
    free(w->buf);
    free(w->path);
    free(w);
}

sm_trace_writer *sm_trace_writer_open(const char *path, sm_trace_format format, int rank,
                                      const sm_trace_meta *meta, int nmeta, sm_error *err)
{
    sm_trace_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path)) || !(w->buf = malloc(SM_TRACE_BUFFER))) {
        if (w) sm_writer_free(w);
        sm_fail(err, "%s: out of memory for the trace writer", path);
        return NULL;
    }
    w->rank = rank;
    if (!(w->f = fopen(path, "w"))) {
        sm_fail(err, "%s: cannot create the trace: %s", path, strerror(errno));
        sm_writer_free(w);
        return NULL;
    }
    setvbuf(w->f, w->buf, _IOFBF, SM_TRACE_BUFFER);
    int rc = format == SM_TRACE_PAJE ? !(w->paje = sm_paje_open(w->f, rank))
                                     : sm_chrome_header(w, meta, nmeta);
    if (rc) {
        sm_fail(err, "%s: out of memory for the trace writer", path);
        fclose(w->f);
        sm_writer_free(w);
        return NULL;
    }
    return w;
}

int sm_trace_writer_lane(sm_trace_writer *w, int tid, const char *name)
{
    if (w->paje) return sm_paje_lane(w->paje, tid, name);
    return sm_chrome_meta(w, "thread_name", tid, "name", name, 0) |
           sm_chrome_meta(w, "thread_sort_index", tid, "sort_index", NULL, tid);
}

/* The args of a task slice after its id. */
static void sm_task_args(sm_line *l, const sm_trace_task *t)
{
    ln_lit(l, ",\"graph\":");
    ln_i64(l, t->graph);
    ln_lit(l, ",\"step\":");
    ln_i64(l, t->step);
    ln_lit(l, ",\"op\":");
    ln_str(l, t->op);
    ln_lit(l, ",\"mb\":");
    ln_i64(l, t->micro);
    ln_lit(l, ",\"layer\":");
    ln_i64(l, t->layer);
    ln_lit(l, ",\"expert\":");
    ln_i64(l, t->expert);
    ln_lit(l, ",\"stage\":");
    ln_i64(l, t->stage);
    ln_lit(l, ",\"order\":");
    ln_i64(l, t->order);
    ln_lit(l, ",\"submit_us\":");
    ln_us(l, t->submit_ns);
    ln_lit(l, ",\"ready_us\":");
    ln_us(l, t->ready_ns);
    ln_lit(l, ",\"predicted_us\":");
    if (isfinite(t->predicted_us)) ln_us(l, llround(t->predicted_us * 1e3));
    else ln_lit(l, "null");
    ln_lit(l, ",\"flops\":");
    ln_num(l, t->flops);
    ln_lit(l, ",\"bytes\":");
    ln_u64(l, t->bytes);
    ln_lit(l, ",\"deps\":[");
    for (int i = 0; i < t->ndeps; i++) {
        if (i) ln_lit(l, ",");
        ln_u64(l, t->deps[i]);
    }
    ln_lit(l, "]}}");
}

int sm_trace_writer_task(sm_trace_writer *w, const sm_trace_task *t)
{
    if (w->paje) return sm_paje_task(w->paje, t);
    sm_line *l = sm_event(w);
    ln_lit(l, "\"name\":");
    ln_str(l, t->name);
    ln_lit(l, ",\"cat\":");
    ln_str(l, t->cat);
    ln_lit(l, ",\"ph\":\"X\",\"ts\":");
    ln_us(l, t->start_ns);
    ln_lit(l, ",\"dur\":");
    ln_us(l, t->end_ns - t->start_ns);
    ln_where(l, w->rank, t->worker);
    ln_lit(l, ",\"args\":{\"id\":");
    ln_u64(l, t->id);
    sm_task_args(l, t);
    return sm_event_end(w);
}

int sm_trace_writer_message(sm_trace_writer *w, const sm_trace_msg *m)
{
    if (w->paje) return 0;
    sm_line *l = sm_event(w);
    ln_lit(l, "\"name\":");
    ln_str(l, m->what);
    ln_lit(l, ",\"cat\":\"message\",\"ph\":\"X\",\"ts\":");
    ln_us(l, m->start_ns);
    ln_lit(l, ",\"dur\":");
    ln_us(l, m->end_ns - m->start_ns);
    ln_where(l, w->rank, m->tid);
    if (m->send) ln_lit(l, ",\"args\":{\"dir\":\"send\",\"peer\":");
    else ln_lit(l, ",\"args\":{\"dir\":\"recv\",\"peer\":");
    ln_i64(l, m->peer);
    ln_lit(l, ",\"tag\":");
    ln_i64(l, m->tag);
    ln_lit(l, ",\"bytes\":");
    ln_u64(l, m->bytes);
    ln_lit(l, ",\"graph\":");
    ln_i64(l, m->graph);
    ln_lit(l, ",\"step\":");
    ln_i64(l, m->step);
    ln_lit(l, ",\"posted_us\":");
    ln_us(l, m->posted_ns);
    ln_lit(l, ",\"ready_us\":");
    ln_us(l, m->ready_ns);
    ln_lit(l, "}}");
    return sm_event_end(w);
}

/* One end of an arrow: "s" binds to the producer's slice, "f" (bp "e") to the consumer's. */
static int sm_chrome_flow_end(sm_trace_writer *w, int start, uint64_t id, int tid, int64_t ns)
{
    sm_line *l = sm_event(w);
    if (start) ln_lit(l, "\"name\":\"dep\",\"cat\":\"dependency\",\"ph\":\"s\",\"id\":");
    else ln_lit(l, "\"name\":\"dep\",\"cat\":\"dependency\",\"ph\":\"f\",\"bp\":\"e\",\"id\":");
    ln_u64(l, id);
    ln_where(l, w->rank, tid);
    ln_lit(l, ",\"ts\":");
    ln_us(l, ns);
    ln_lit(l, "}");
    return sm_event_end(w);
}

int sm_trace_writer_flow(sm_trace_writer *w, uint64_t id, int from_tid, int64_t from_ns,
                         int to_tid, int64_t to_ns)
{
    if (w->paje) return sm_paje_flow(w->paje, id, from_tid, from_ns, to_tid, to_ns);
    return sm_chrome_flow_end(w, 1, id, from_tid, from_ns) |
           sm_chrome_flow_end(w, 0, id, to_tid, to_ns);
}

int sm_trace_writer_counter(sm_trace_writer *w, const char *name, const char *key, int64_t ts_ns,
                            double value)
{
    if (w->paje) return sm_paje_counter(w->paje, name, ts_ns, value);
    sm_line *l = sm_event(w);
    ln_lit(l, "\"name\":");
    ln_str(l, name);
    ln_lit(l, ",\"ph\":\"C\"");
    ln_where(l, w->rank, -1);
    ln_lit(l, ",\"ts\":");
    ln_us(l, ts_ns);
    ln_lit(l, ",\"args\":{");
    ln_str(l, key);
    ln_lit(l, ":");
    ln_num(l, value);
    ln_lit(l, "}}");
    return sm_event_end(w);
}

int sm_trace_writer_instant(sm_trace_writer *w, const char *name, const char *cat, int64_t ts_ns,
                            const sm_trace_arg *args, int nargs)
{
    if (w->paje) return sm_paje_instant(w->paje, name, ts_ns);
    sm_line *l = sm_event(w);
    ln_lit(l, "\"name\":");
    ln_str(l, name);
    ln_lit(l, ",\"cat\":");
    ln_str(l, cat);
    ln_lit(l, ",\"ph\":\"i\",\"s\":\"g\"");
    ln_where(l, w->rank, 0);
    ln_lit(l, ",\"ts\":");
    ln_us(l, ts_ns);
    ln_lit(l, ",\"args\":{");
    for (int i = 0; i < nargs; i++) {
        if (i) ln_lit(l, ",");
        ln_str(l, args[i].key);
        ln_lit(l, ":");
        if (args[i].str) ln_str(l, args[i].str);
        else ln_num(l, args[i].num);
    }
    ln_lit(l, "}}");
    return sm_event_end(w);
}

int sm_trace_writer_flush(sm_trace_writer *w, sm_error *err)
{
    if (w->paje && sm_paje_flush(w->paje))
        return sm_fail(err, "%s: out of memory while ordering the Paje events", w->path);
    if (fflush(w->f) != 0 || ferror(w->f))
        return sm_fail(err, "%s: cannot write the trace: %s", w->path, strerror(errno));
    return 0;
}

int sm_trace_writer_close(sm_trace_writer *w, sm_error *err)
{
    if (!w) return 0;
    int rc = sm_trace_writer_flush(w, err);
    if (w->paje && rc == 0 && sm_paje_finish(w->paje))
        rc = sm_fail(err, "%s: out of memory while ordering the Paje events", w->path);
    if (!w->paje) fputs("\n],\n\"displayTimeUnit\":\"ms\"}\n", w->f);
    if (fclose(w->f) != 0 && rc == 0)
        rc = sm_fail(err, "%s: cannot write the trace: %s", w->path, strerror(errno));
    sm_writer_free(w);
    return rc;
}
