/* metrics.jsonl (io/metrics.h): the appender, the truncation on resume, and the SVG loss curve.
 * The chart is built as text in a growing buffer: frame, grid and ticks at "nice" 1-2-5 steps,
 * the train loss as a thin polyline, the eval loss as a polyline with circle markers, a legend
 * with the last values; then written with the library's atomic file replacement. */
#include "io/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/atomic_file.h"
#include "base/file.h"
#include "io/config_json.h"
#include "io/safetensors.h"

/* ---- growing text buffer ---- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        sb_add(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_add(b, big, (size_t)n);
    free(big);
}

/* ---- reading metrics.jsonl ---- */

/* Called with each line (its text includes the newline) and its parsed object. */
typedef int (*line_fn)(void *ctx, const json_t *obj, const char *line, size_t len,
                       sm_error *err);

/* Calls fn for each complete line of f; a last line without its newline (a crash while it was
 * written) is skipped and counted in *partial. Blank lines are skipped. Every other line must be
 * a JSON object with an integer "step". */
static int each_line(FILE *f, const char *path, line_fn fn, void *ctx, int *partial,
                     sm_error *err)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0, lineno = 0;
    *partial = 0;
    while (rc == 0 && (len = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (line[len - 1] != '\n') {
            *partial = 1;
            break;
        }
        if (strspn(line, " \t\r\n") == (size_t)len) continue;
        json_t *obj = json_loadb(line, (size_t)len, 0, NULL);
        if (!json_is_object(obj) || !json_is_integer(json_object_get(obj, "step")))
            rc = sm_fail(err, "%s:%d: not a JSON object with an integer \"step\"", path, lineno);
        else
            rc = fn(ctx, obj, line, (size_t)len, err);
        json_decref(obj);
    }
    if (rc == 0 && ferror(f)) rc = sm_fail(err, "%s: cannot read: %s", path, strerror(errno));
    free(line);
    return rc;
}

typedef struct truncation {
    int64_t resume_step;
    sbuf kept;
    int dropped;
} truncation;

static int keep_line(void *ctx, const json_t *obj, const char *line, size_t len, sm_error *err)
{
    truncation *t = ctx;
    if (json_integer_value(json_object_get(obj, "step")) > t->resume_step)
        t->dropped = 1;
    else
        sb_add(&t->kept, line, len);
    return 0;
}

/* Drops the lines of steps after resume_step (and a partial last line), rewriting atomically. */
static int truncate_after(const char *path, int64_t resume_step, sm_error *err)
{
    truncation t = {.resume_step = resume_step};
    int partial = 0, rc;
    if (access(path, F_OK) != 0 && errno == ENOENT) return 0;
    FILE *f = sm_file_open_stream(path, err);
    if (!f) return -1;
    rc = each_line(f, path, keep_line, &t, &partial, err);
    fclose(f);
    if (rc == 0 && t.kept.oom) rc = sm_fail(err, "%s: out of memory", path);
    if (rc == 0 && (t.dropped || partial))
        rc = sm_atomic_write_file(path, t.kept.p ? t.kept.p : "", t.kept.n, err);
    free(t.kept.p);
    return rc;
}

/* ---- the appender ---- */

int sm_metrics_open(sm_metrics *m, const char *path, int64_t resume_step, sm_error *err)
{
    m->f = NULL;
    m->path = strdup(path);
    if (!m->path) return sm_fail(err, "%s: out of memory", path);
    if (resume_step >= 0 && truncate_after(path, resume_step, err)) {
        sm_metrics_close(m, NULL);
        return -1;
    }
    m->f = fopen(path, "a");
    if (!m->f) {
        int e = errno;
        sm_metrics_close(m, NULL);
        return sm_fail(err, "%s: cannot open for appending: %s", path, strerror(e));
    }
    return 0;
}

/* JSON has no NaN or infinity: those become null. */
static json_t *number(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* The line's object: step, kind, then the values (non-finite ones as null). */
static json_t *line_object(const char *kind, int64_t step, const sm_metric *kv, int n,
                           const char *path, sm_error *err)
{
    json_t *o = json_pack("{s:I, s:s}", "step", (json_int_t)step, "kind", kind);
    for (int i = 0; i < n && o; i++) {
        const char *bad = !kv[i].key ? "a value without a key"
                          : json_object_get(o, kv[i].key) ? "a reserved or repeated key"
                          : NULL;
        if (bad || json_object_set_new(o, kv[i].key, number(kv[i].value))) {
            sm_fail(err, "%s: step %lld: %s '%s'", path, (long long)step,
                    bad ? bad : "cannot encode key", kv[i].key ? kv[i].key : "");
            json_decref(o);
            return NULL;
        }
    }
    if (!o) sm_fail(err, "%s: step %lld: cannot encode kind '%s'", path, (long long)step, kind);
    return o;
}

int sm_metrics_write(sm_metrics *m, const char *kind, int64_t step, const sm_metric *kv, int n,
                     sm_error *err)
{
    if (!m->f) return sm_fail(err, "%s: metrics file is closed", m->path ? m->path : "metrics");
    json_t *o = line_object(kind ? kind : "", step, kv, n, m->path, err);
    if (!o) return -1;
    char *text = sm_json_text(o, JSON_COMPACT);
    json_decref(o);
    if (!text) return sm_fail(err, "%s: out of memory", m->path);
    int bad = fputs(text, m->f) == EOF || fputc('\n', m->f) == EOF || fflush(m->f) != 0;
    free(text);
    if (bad) return sm_fail(err, "%s: cannot write: %s", m->path, strerror(errno));
    return 0;
}

int sm_metrics_close(sm_metrics *m, sm_error *err)
{
    int rc = 0;
    if (m->f && fclose(m->f) != 0)
        rc = sm_fail(err, "%s: cannot close: %s", m->path, strerror(errno));
    free(m->path);
    m->f = NULL;
    m->path = NULL;
    return rc;
}

/* ---- the loss curve ---- */

typedef struct series {
    double *x, *y;
    size_t n, cap;
} series;

typedef struct curves {
    series train, eval;
    int oom;
} curves;

static void add_point(curves *c, series *s, double x, double y)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        double *nx = realloc(s->x, cap * sizeof *nx);
        if (nx) s->x = nx;
        double *ny = nx ? realloc(s->y, cap * sizeof *ny) : NULL;
        if (ny) s->y = ny;
        if (!nx || !ny) {
            c->oom = 1;
            return;
        }
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n++] = y;
}

static int collect_point(void *ctx, const json_t *obj, const char *line, size_t len,
                         sm_error *err)
{
    curves *c = ctx;
    const char *kind = json_string_value(json_object_get(obj, "kind"));
    double step = (double)json_integer_value(json_object_get(obj, "step"));
    if (!kind) return 0;
    int eval = strcmp(kind, "eval") == 0;
    json_t *loss = json_object_get(obj, eval ? "val_loss" : "loss");
    if (!json_is_number(loss) || (!eval && strcmp(kind, "train") != 0)) return 0;
    add_point(c, eval ? &c->eval : &c->train, step, json_number_value(loss));
    return 0;
}

static void free_curves(curves *c)
{
    free(c->train.x);
    free(c->train.y);
    free(c->eval.x);
    free(c->eval.y);
}

/* An axis: its data range widened to whole ticks of a 1-2-5 step. */
typedef struct axis {
    double lo, hi, step;
    int decimals;                /* for the tick labels */
} axis;

/* integer: the axis counts steps, so its ticks are whole numbers. */
static void axis_fit(axis *a, double lo, double hi, int ticks, int integer)
{
    if (!(hi > lo)) {
        double pad = integer || fabs(lo) <= 1 ? 1 : fabs(lo) * 0.1;
        lo -= pad;
        hi += pad;
    }
    double raw = (hi - lo) / ticks, mag = pow(10, floor(log10(raw))), f = raw / mag;
    a->step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
    if (integer && a->step < 1) a->step = 1;
    a->lo = floor(lo / a->step) * a->step;
    a->hi = ceil(hi / a->step) * a->step;
    a->decimals = a->step >= 1 ? 0 : (int)ceil(-log10(a->step) - 1e-9);
}

static void series_range(const series *s, int use_y, double *lo, double *hi)
{
    for (size_t i = 0; i < s->n; i++) {
        double v = use_y ? s->y[i] : s->x[i];
        if (v < *lo) *lo = v;
        if (v > *hi) *hi = v;
    }
}

/* Chart geometry: the SVG size and the plot rectangle; the colours of the two curves. */
enum { W = 860, H = 520, PX0 = 80, PX1 = W - 28, PY0 = 58, PY1 = H - 66 };
static const char *const TRAIN_COLOR = "#1f77b4", *const EVAL_COLOR = "#d62728";

typedef struct chart {
    sbuf out;
    axis x, y;
} chart;

static double px(const chart *c, double x)
{
    return PX0 + (x - c->x.lo) / (c->x.hi - c->x.lo) * (PX1 - PX0);
}

static double py(const chart *c, double y)
{
    return PY1 - (y - c->y.lo) / (c->y.hi - c->y.lo) * (PY1 - PY0);
}

static void put_escaped(sbuf *b, const char *s)
{
    for (; *s; s++) {
        const char *e = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;"
                        : *s == '"' ? "&quot;" : NULL;
        if (e)
            sb_add(b, e, strlen(e));
        else
            sb_add(b, s, 1);
    }
}

static void draw_frame(chart *c, const char *title)
{
    sb_printf(&c->out,
              "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
              "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
              "<rect width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n"
              "<text x=\"%d\" y=\"34\" text-anchor=\"middle\" font-size=\"18\" "
              "font-weight=\"bold\" fill=\"#222222\">",
              W, H, W, H, W, H, (PX0 + PX1) / 2);
    put_escaped(&c->out, title);
    sb_printf(&c->out, "</text>\n");
}

static int tick_count(const axis *a)
{
    return (int)floor((a->hi - a->lo) / a->step + 0.5) + 1;
}

static double tick(const axis *a, int i)
{
    return a->lo + i * a->step;
}

static void draw_grid(chart *c)
{
    sbuf *o = &c->out;
    sb_printf(o, "<g stroke=\"#e4e4e4\" stroke-width=\"1\">\n");
    for (int i = 0; i < tick_count(&c->x); i++)
        sb_printf(o, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>\n",
                  px(c, tick(&c->x, i)), PY0, px(c, tick(&c->x, i)), PY1);
    for (int i = 0; i < tick_count(&c->y); i++)
        sb_printf(o, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>\n", PX0,
                  py(c, tick(&c->y, i)), PX1, py(c, tick(&c->y, i)));
    sb_printf(o, "</g>\n<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
              "stroke=\"#444444\" stroke-width=\"1\"/>\n", PX0, PY0, PX1 - PX0, PY1 - PY0);
}

static void draw_labels(chart *c)
{
    sbuf *o = &c->out;
    sb_printf(o, "<g font-size=\"12\" fill=\"#444444\" text-anchor=\"middle\">\n");
    for (int i = 0; i < tick_count(&c->x); i++)
        sb_printf(o, "<text x=\"%.1f\" y=\"%d\">%.*f</text>\n", px(c, tick(&c->x, i)),
                  PY1 + 18, c->x.decimals, tick(&c->x, i));
    sb_printf(o, "</g>\n<g font-size=\"12\" fill=\"#444444\" text-anchor=\"end\">\n");
    for (int i = 0; i < tick_count(&c->y); i++)
        sb_printf(o, "<text x=\"%d\" y=\"%.1f\">%.*f</text>\n", PX0 - 8,
                  py(c, tick(&c->y, i)) + 4, c->y.decimals, tick(&c->y, i));
    sb_printf(o, "</g>\n<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"14\" "
              "fill=\"#222222\">step</text>\n", (PX0 + PX1) / 2, H - 22);
    sb_printf(o, "<text transform=\"translate(22 %d) rotate(-90)\" text-anchor=\"middle\" "
              "font-size=\"14\" fill=\"#222222\">loss</text>\n", (PY0 + PY1) / 2);
}

/* Appends one polyline point. */
static void put_point(chart *c, int first, double x, double y)
{
    sb_printf(&c->out, "%s%.1f,%.1f", first ? "" : " ", px(c, x), py(c, y));
}

/* The points of s; beyond 4 per pixel column, each column's lowest and highest point in their
 * order, which draws the same picture with a bounded number of points. */
static void put_points(chart *c, const series *s)
{
    int dense = s->n > 4 * (size_t)(PX1 - PX0), first = 1;
    size_t lo = 0, hi = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (!dense) {
            put_point(c, i == 0, s->x[i], s->y[i]);
            continue;
        }
        if (s->y[i] < s->y[lo]) lo = i;
        if (s->y[i] > s->y[hi]) hi = i;
        if (i + 1 < s->n && (int)px(c, s->x[i + 1]) == (int)px(c, s->x[i])) continue;
        put_point(c, first, s->x[lo < hi ? lo : hi], s->y[lo < hi ? lo : hi]);
        put_point(c, 0, s->x[lo < hi ? hi : lo], s->y[lo < hi ? hi : lo]);
        first = 0;
        lo = hi = i + 1;
    }
}

/* A series as a polyline, with circle markers when asked (or when it has one point only). */
static void draw_series(chart *c, const series *s, const char *color, double width, int markers)
{
    double r = markers ? 3.5 : 2;
    if (s->n >= 2) {
        sb_printf(&c->out, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" "
                  "stroke-linejoin=\"round\" points=\"", color, width);
        put_points(c, s);
        sb_printf(&c->out, "\"/>\n");
    }
    if (!markers && s->n != 1) return;
    sb_printf(&c->out, "<g fill=\"%s\" stroke=\"#ffffff\" stroke-width=\"%d\">\n", color,
              markers);
    for (size_t i = 0; i < s->n; i++)
        sb_printf(&c->out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\"/>\n", px(c, s->x[i]),
                  py(c, s->y[i]), r);
    sb_printf(&c->out, "</g>\n");
}

static void legend_entry(chart *c, int row, const series *s, const char *color, double width,
                         int marker, const char *label)
{
    int y = PY0 + 22 + 22 * row, x = PX1 - 196;
    sb_printf(&c->out, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
              "stroke-width=\"%.1f\"/>\n", x, y, x + 28, y, color, width);
    if (marker)
        sb_printf(&c->out, "<circle cx=\"%d\" cy=\"%d\" r=\"3.5\" fill=\"%s\" "
                  "stroke=\"#ffffff\"/>\n", x + 14, y, color);
    sb_printf(&c->out, "<text x=\"%d\" y=\"%d\" font-size=\"13\" fill=\"#222222\">%s "
              "(last %.4g)</text>\n", x + 36, y + 4, label, s->y[s->n - 1]);
}

static void draw_legend(chart *c, const curves *v)
{
    int rows = (v->train.n > 0) + (v->eval.n > 0), row = 0;
    if (!rows) return;
    sb_printf(&c->out, "<rect x=\"%d\" y=\"%d\" width=\"188\" height=\"%d\" rx=\"4\" "
              "fill=\"#ffffff\" fill-opacity=\"0.9\" stroke=\"#cccccc\"/>\n",
              PX1 - 206, PY0 + 8, 12 + 22 * rows);
    if (v->train.n) legend_entry(c, row++, &v->train, TRAIN_COLOR, 1.5, 0, "train loss");
    if (v->eval.n) legend_entry(c, row, &v->eval, EVAL_COLOR, 2, 1, "val loss");
}

static void draw_chart(chart *c, const curves *v, const char *title)
{
    double xlo = HUGE_VAL, xhi = -HUGE_VAL, ylo = HUGE_VAL, yhi = -HUGE_VAL;
    series_range(&v->train, 0, &xlo, &xhi);
    series_range(&v->eval, 0, &xlo, &xhi);
    series_range(&v->train, 1, &ylo, &yhi);
    series_range(&v->eval, 1, &ylo, &yhi);
    if (xlo > xhi) xlo = xhi = ylo = yhi = 0;
    axis_fit(&c->x, xlo, xhi, 8, 1);
    axis_fit(&c->y, ylo - 0.03 * (yhi - ylo), yhi + 0.03 * (yhi - ylo), 6, 0);
    draw_frame(c, title);
    draw_grid(c);
    draw_labels(c);
    if (!v->train.n && !v->eval.n)
        sb_printf(&c->out, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"16\" "
                  "fill=\"#888888\">no loss values yet</text>\n", (PX0 + PX1) / 2,
                  (PY0 + PY1) / 2);
    draw_series(c, &v->train, TRAIN_COLOR, 1.2, 0);
    draw_series(c, &v->eval, EVAL_COLOR, 2, 1);
    draw_legend(c, v);
    sb_printf(&c->out, "</svg>\n");
}

static int read_curves(const char *path, curves *v, sm_error *err)
{
    int partial;
    FILE *f = sm_file_open_stream(path, err);
    if (!f) return -1;
    int rc = each_line(f, path, collect_point, v, &partial, err);
    fclose(f);
    if (rc == 0 && v->oom) rc = sm_fail(err, "%s: out of memory", path);
    return rc;
}

int sm_metrics_plot_svg(const char *jsonl_path, const char *svg_path, const char *title,
                        sm_error *err)
{
    curves v = {0};
    chart c = {0};
    int rc = read_curves(jsonl_path, &v, err);
    if (rc == 0) draw_chart(&c, &v, title ? title : "Loss");
    if (rc == 0 && c.out.oom) rc = sm_fail(err, "%s: out of memory", svg_path);
    if (rc == 0) rc = sm_atomic_write_file(svg_path, c.out.p, c.out.n, err);
    free(c.out.p);
    free_curves(&v);
    return rc;
}
