/* The HTML trace report (sm_trace_html): one self-contained page — inline style and script
 * from trace/html_page.c, the trace's slices, messages, marks and counters as JSON in a
 * <script type="application/json"> element, and the per-op bar chart and summary tables as
 * plain HTML written here. The timeline's lanes go process by process (pid = rank, ascending):
 * its workers, then its messages to and from other ranks on two lanes (sends, receives). Phase
 * colours (the band under each task box, the legend) come from the phase table (base/phase.h);
 * messages have colours of their own. */
#include "trace/read.h"
#include "trace/output.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <starmoe/trace.h>
#include "base/phase.h"

/* Text for HTML content and attributes. */
static void sm_html_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: putc(*s, f);
        }
    }
}

/* A JSON string safe inside <script>: '<', '>' and '&' escaped too. */
static void sm_html_json_str(FILE *f, const char *s)
{
    putc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') putc('\\', f), putc(*p, f);
        else if (*p < 0x20 || *p == '<' || *p == '>' || *p == '&') fprintf(f, "\\u%04x", *p);
        else putc(*p, f);
    }
    putc('"', f);
}

/* Op i's colour: hues a golden angle apart. */
static void sm_op_color(int i, char out[8])
{
    double h = fmod(i * 137.508, 360.0) / 60.0, s = 0.62, l = i % 2 ? 0.52 : 0.64;
    double c = (1 - fabs(2 * l - 1)) * s, x = c * (1 - fabs(fmod(h, 2.0) - 1)), m = l - c / 2;
    double rgb[6][3] = {{c, x, 0}, {x, c, 0}, {0, c, x}, {0, x, c}, {x, 0, c}, {c, 0, x}};
    const double *v = rgb[(int)h % 6];
    snprintf(out, 8, "#%02x%02x%02x", (int)lround((v[0] + m) * 255),
             (int)lround((v[1] + m) * 255), (int)lround((v[2] + m) * 255));
}

static void sm_html_header(FILE *f, const sm_trace_data *d, const sm_trace_stats *s,
                           const char *path)
{
    static const char *keys[] = {"command", "scheduler", "starpu_version", "git_revision"};
    static const char *labels[] = {"command", "scheduler", "StarPU", "git"};
    fputs("<header><h1>starmoe trace: ", f);
    sm_html_text(f, path);
    fputs("</h1><p>", f);
    for (int i = 0; i < 4; i++) {
        if (!*sm_trace_meta_str(d, keys[i])) continue;
        fprintf(f, "%s ", labels[i]);
        sm_html_text(f, sm_trace_meta_str(d, keys[i]));
        fputs(" &middot; ", f);
    }
    fprintf(f, "%zu tasks in %lld step graphs on %d workers &middot; makespan %.3f ms</p>"
               "</header>\n", s->tasks, (long long)s->graphs, s->nworkers, s->makespan * 1e-3);
}

/* The colour of a trace category: its phase's, or the unknown one. */
static const char *sm_cat_color(const char *cat)
{
    int phase = sm_phase_by_name(cat);
    return phase < 0 ? SM_PHASE_UNKNOWN_COLOR : sm_phase_info_of(phase)->color;
}

/* Message lanes and boxes: [0] sends, [1] receives. */
static const char *const sm_msg_lane_names[2] = {"MPI send", "MPI recv"};
static const char *const sm_msg_colors[2] = {"#64748b", "#a5b4c8"};

/* Style rules of the legend, one class per phase and one per message direction. */
static void sm_html_legend_style(FILE *f)
{
    for (int i = 0; i < SM_NPHASES; i++)
        fprintf(f, ".phase-%s{background:%s}\n", sm_phase_name(i), sm_phase_info_of(i)->color);
    fprintf(f, ".msg-send{background:%s;color:#fff}\n.msg-recv{background:%s}\n",
            sm_msg_colors[0], sm_msg_colors[1]);
}

static void sm_html_timeline(FILE *f, const sm_trace_data *d)
{
    fputs("<section><h2>Timeline</h2><p class=\"hint\">Wheel: zoom around the pointer &middot; "
          "drag: pan &middot; double-click: whole run &middot; hover a box for its details. "
          "Grey lines mark steps, red lines evaluations and checkpoints. Boxes are coloured by "
          "op family, the band under each by phase:</p>\n<p class=\"legend\">", f);
    for (int i = 0; i < SM_NPHASES; i++)
        fprintf(f, "<span class=\"phase-%s\">%s</span>", sm_phase_name(i), sm_phase_name(i));
    if (d->nmsgs)
        fprintf(f, "</p>\n<p class=\"legend\">Each rank's workers are followed by its messages "
                   "to and from other ranks, one box per message (hover for its peer, bytes and "
                   "tag): <span class=\"msg-send\">%s</span><span class=\"msg-recv\">%s</span>",
                sm_msg_lane_names[0], sm_msg_lane_names[1]);
    fputs("</p>\n<div id=\"timeline\"><canvas id=\"gantt\"></canvas><div id=\"tip\" hidden>"
          "</div></div></section>\n", f);
}

static void sm_html_bars(FILE *f, const sm_trace_data *d, const sm_trace_stats *s)
{
    char color[8];
    double top = s->nops ? s->ops[0].total : 0;
    fputs("<section><h2>Time per op family</h2><div class=\"bars\">\n", f);
    for (int i = 0; i < s->nops; i++) {
        const sm_op_stat *o = &s->ops[i];
        sm_op_color(o->op, color);
        fputs("<span class=\"label\">", f);
        sm_html_text(f, d->ops.v[o->op]);
        fprintf(f, "</span><div class=\"track\"><div class=\"bar\" style=\"width:%.2f%%;"
                   "background:%s\"></div></div><span class=\"value\">%.3f ms &middot; %.1f%% "
                   "&middot; %zu tasks</span>\n",
                top > 0 ? 100 * o->total / top : 0, color, o->total * 1e-3, 100 * o->share,
                o->count);
    }
    fputs("</div></section>\n", f);
}

static void sm_html_ops_table(FILE *f, const sm_trace_data *d, const sm_trace_stats *s)
{
    fputs("<h3>Op families</h3><table><tr><th>op</th><th>count</th><th>total ms</th>"
          "<th>mean us</th><th>share</th><th>predicted / measured</th></tr>\n", f);
    for (int i = 0; i < s->nops; i++) {
        const sm_op_stat *o = &s->ops[i];
        fputs("<tr><td>", f);
        sm_html_text(f, d->ops.v[o->op]);
        fprintf(f, "</td><td>%zu</td><td>%.3f</td><td>%.1f</td><td>%.1f%%</td><td>", o->count,
                o->total * 1e-3, o->mean, 100 * o->share);
        if (o->npredicted && o->measured > 0) fprintf(f, "%.2f", o->predicted / o->measured);
        else fputs("&ndash;", f);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
}

static void sm_html_workers_table(FILE *f, const sm_trace_data *d, const sm_trace_stats *s)
{
    char buf[96];
    fputs("<h3>Workers</h3><table><tr><th>worker</th><th>tasks</th><th>busy ms</th>"
          "<th>idle ms</th><th>busy</th></tr>\n", f);
    for (int i = 0; i < s->nworkers; i++) {
        const sm_worker_stat *w = &s->workers[i];
        fputs("<tr><td>", f);
        sm_html_text(f, sm_trace_lane_name(d, w->lane, buf, sizeof buf));
        fprintf(f, "</td><td>%zu</td><td>%.3f</td><td>%.3f</td><td>%.1f%%</td></tr>\n",
                w->tasks, w->busy * 1e-3, w->idle * 1e-3,
                s->makespan > 0 ? 100 * w->busy / s->makespan : 0);
    }
    fputs("</table>\n", f);
}

static void sm_html_stages_table(FILE *f, const sm_trace_stats *s)
{
    int ranks = s->nstages && s->stages[0].rank >= 0;  /* a row per MPI rank */
    fprintf(f, "<h3>Pipeline stages</h3><table><tr>%s<th>stage</th><th>workers</th>"
               "<th>span ms</th><th>busy ms</th><th>bubble ms</th><th>bubble</th></tr>\n",
            ranks ? "<th>rank</th>" : "");
    for (int i = 0; i < s->nstages; i++) {
        const sm_stage_stat *st = &s->stages[i];
        if (!st->workers) continue;
        if (ranks) fprintf(f, "<tr><td>%d</td>", st->rank);
        else fputs("<tr>", f);
        fprintf(f, "<td>%d</td><td>%d</td><td>%.3f</td><td>%.3f</td><td>%.3f</td>"
                   "<td>%.1f%%</td></tr>\n", st->stage, st->workers, st->span * 1e-3,
                st->busy * 1e-3, st->bubble * 1e-3,
                st->bubble + st->busy > 0 ? 100 * st->bubble / (st->bubble + st->busy) : 0);
    }
    fputs("</table>\n", f);
}

static void sm_html_summary(FILE *f, const sm_trace_data *d, const sm_trace_stats *s)
{
    fputs("<section><h2>Summary</h2>\n", f);
    fprintf(f, "<p class=\"fact\"><b>Critical path</b> %.3f ms over %zu tasks (the longest "
               "dependency chain of each step graph, summed) = %.1f%% of the graphs' span "
               "%.3f ms; makespan %.3f ms.</p>\n", s->critical_path * 1e-3, s->critical_tasks,
            s->graphs_span > 0 ? 100 * s->critical_path / s->graphs_span : 0,
            s->graphs_span * 1e-3, s->makespan * 1e-3);
    fprintf(f, "<p class=\"fact\"><b>Compute/communication overlap</b> %.3f ms of %.3f ms "
               "communication (%.1f%%) ran while another worker computed.</p>\n",
            s->comm_overlapped * 1e-3, s->comm * 1e-3,
            s->comm > 0 ? 100 * s->comm_overlapped / s->comm : 0);
    sm_html_ops_table(f, d, s);
    sm_html_workers_table(f, d, s);
    sm_html_stages_table(f, s);
    fputs("</section>\n", f);
}

static void sm_html_strings(FILE *f, const char *key, char *const *v, int n)
{
    fprintf(f, "\"%s\":[", key);
    for (int i = 0; i < n; i++) {
        if (i) putc(',', f);
        sm_html_json_str(f, v[i]);
    }
    fputs("],\n", f);
}

/* The timeline's rows, process by process (pid ascending): its worker lanes in the trace's
 * order, then, when it has messages, a row of its sends and one of its receives. A lane that
 * carries only messages in the file (the recorder's lanes per peer and direction) gets no row:
 * its messages are drawn on their process's two. */
enum { SM_ROW_SEND = -1, SM_ROW_RECV = -2 };
typedef struct sm_html_row {
    int pid, lane;               /* lane: the trace's lane, or SM_ROW_SEND / SM_ROW_RECV */
} sm_html_row;

typedef struct sm_html_rows {
    sm_html_row *v;
    int n;
    int *of_lane;                /* per lane of the trace: its row, -1 when none */
    int *pids;                   /* the processes, ascending */
    int npids;
    int *send_row;               /* per process: its send row (receives on the next), -1: none */
} sm_html_rows;

static int sm_cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int sm_pid_index(const sm_html_rows *r, int pid)
{
    const int *p = bsearch(&pid, r->pids, (size_t)r->npids, sizeof *r->pids, sm_cmp_int);
    return (int)(p - r->pids);
}

static void sm_html_rows_free(sm_html_rows *r)
{
    free(r->v);
    free(r->of_lane);
    free(r->pids);
    free(r->send_row);
}

/* The processes of lanes and messages, sorted and distinct. */
static void sm_html_pids(sm_html_rows *r, const sm_trace_data *d)
{
    int n = 0;
    for (int i = 0; i < d->nlanes; i++) r->pids[n++] = d->lanes[i].pid;
    for (size_t i = 0; i < d->nmsgs; i++) r->pids[n++] = d->msgs[i].pid;
    qsort(r->pids, (size_t)n, sizeof *r->pids, sm_cmp_int);
    r->npids = 0;
    for (int i = 0; i < n; i++)
        if (!r->npids || r->pids[i] != r->pids[r->npids - 1]) r->pids[r->npids++] = r->pids[i];
}

static int sm_html_rows_build(sm_html_rows *r, const sm_trace_data *d)
{
    size_t nl = (size_t)d->nlanes, np = nl + d->nmsgs;
    char *messages_only = sm_trace_message_only_lanes(d), *talks = calloc(np + 1, 1);
    *r = (sm_html_rows){.v = malloc((nl + 2 * np + 1) * sizeof *r->v),
                        .of_lane = malloc((nl + 1) * sizeof *r->of_lane),
                        .pids = malloc((np + 1) * sizeof *r->pids),
                        .send_row = malloc((np + 1) * sizeof *r->send_row)};
    int rc = messages_only && talks && r->v && r->of_lane && r->pids && r->send_row ? 0 : -1;
    if (rc == 0) {
        sm_html_pids(r, d);
        for (size_t i = 0; i < d->nmsgs; i++) talks[sm_pid_index(r, d->msgs[i].pid)] = 1;
        for (int k = 0; k < r->npids; k++) {
            for (int i = 0; i < d->nlanes; i++) {
                if (d->lanes[i].pid != r->pids[k]) continue;
                r->of_lane[i] = messages_only[i] ? -1 : r->n;
                if (r->of_lane[i] >= 0) r->v[r->n++] = (sm_html_row){r->pids[k], i};
            }
            r->send_row[k] = talks[k] ? r->n : -1;
            if (!talks[k]) continue;
            r->v[r->n++] = (sm_html_row){r->pids[k], SM_ROW_SEND};
            r->v[r->n++] = (sm_html_row){r->pids[k], SM_ROW_RECV};
        }
    }
    free(messages_only);
    free(talks);
    if (rc) {
        sm_html_rows_free(r);
        *r = (sm_html_rows){0};
    }
    return rc;
}

/* Per row: its name, its process and whether it holds messages. */
static void sm_html_lanes(FILE *f, const sm_trace_data *d, const sm_html_rows *r)
{
    char buf[96];
    fputs("\"lanes\":[", f);
    for (int i = 0; i < r->n; i++) {
        const sm_html_row *row = &r->v[i];
        if (i) putc(',', f);
        if (row->lane >= 0) sm_trace_lane_name(d, row->lane, buf, sizeof buf);
        else sm_trace_pid_lane_name(d, row->pid, sm_msg_lane_names[row->lane == SM_ROW_RECV],
                                    buf, sizeof buf);
        sm_html_json_str(f, buf);
    }
    fputs("],\n\"lane_pids\":[", f);
    for (int i = 0; i < r->n; i++) fprintf(f, "%s%d", i ? "," : "", r->v[i].pid);
    fputs("],\n\"comm\":[", f);
    for (int i = 0; i < r->n; i++) fprintf(f, "%s%d", i ? "," : "", r->v[i].lane < 0);
    fputs("],\n", f);
}

/* Slices as flat rows: lane, op, cat, ts, dur, layer, mb, expert, step, predicted (-1: none),
 * submit, ready (the script's field order). */
static void sm_html_slices(FILE *f, const sm_trace_data *d, const sm_html_rows *r)
{
    fputs("\"fields\":12,\"slices\":[", f);
    for (size_t i = 0; i < d->nslices; i++) {
        const sm_trace_slice *s = &d->slices[i];
        fprintf(f, "%s%d,%d,%d,%.3f,%.3f,%d,%d,%d,%lld,%.3f,%.3f,%.3f", i ? ",\n" : "",
                r->of_lane[s->lane], s->op, s->cat, s->ts, s->dur, s->layer, s->micro,
                s->expert, (long long)s->step, isnan(s->predicted) ? -1.0 : s->predicted,
                s->submit, s->ready);
    }
    fputs("],\n", f);
}

/* Messages as flat rows: lane, name, send (1) or receive (0), ts, dur, peer, bytes, tag (-1:
 * none) — start and duration at the slices' places (the script's field order). */
static void sm_html_msgs(FILE *f, const sm_trace_data *d, const sm_html_rows *r)
{
    fputs("\"msg_fields\":8,\"msgs\":[", f);
    for (size_t i = 0; i < d->nmsgs; i++) {
        const sm_trace_msg_slice *m = &d->msgs[i];
        fprintf(f, "%s%d,%d,%d,%.3f,%.3f,%d,%.17g,%lld", i ? ",\n" : "",
                r->send_row[sm_pid_index(r, m->pid)] + !m->send, m->name, m->send, m->ts, m->dur,
                m->peer, m->bytes, (long long)m->tag);
    }
    fputs("],\n", f);
    sm_html_strings(f, "msg_names", d->msg_names.v, d->msg_names.n);
    fprintf(f, "\"msg_colors\":[\"%s\",\"%s\"],\n", sm_msg_colors[0], sm_msg_colors[1]);
}

static void sm_html_marks(FILE *f, const sm_trace_data *d)
{
    fputs("\"marks\":[", f);
    for (size_t i = 0; i < d->nmarks; i++) {
        fprintf(f, "%s[%.3f,", i ? "," : "", d->marks[i].ts);
        sm_html_json_str(f, d->marks[i].name);
        putc(',', f);
        sm_html_json_str(f, d->marks[i].cat);
        putc(']', f);
    }
    fputs("],\n", f);
}

static int sm_cmp_point(const void *a, const void *b)
{
    const sm_trace_point *x = a, *y = b;
    if (x->counter != y->counter) return x->counter - y->counter;
    return (x->ts > y->ts) - (x->ts < y->ts);
}

/* Counters: per counter its points, in time order (points are sorted in place). */
static void sm_html_counters(FILE *f, sm_trace_data *d)
{
    if (d->npoints) qsort(d->points, d->npoints, sizeof *d->points, sm_cmp_point);
    fputs("\"counters\":[", f);
    for (int c = 0, k = 0; c < d->counters.n; c++) {
        fprintf(f, "%s{\"name\":", c ? ",\n" : "");
        sm_html_json_str(f, d->counters.v[c]);
        fputs(",\"points\":[", f);
        for (int first = 1; (size_t)k < d->npoints && d->points[k].counter == c; k++, first = 0)
            fprintf(f, "%s%.3f,%.17g", first ? "" : ",", d->points[k].ts, d->points[k].v);
        fputs("]}", f);
    }
    fputs("]", f);
}

/* The timeline's span: from the first start to the last end of a task or a message. */
static void sm_html_span(const sm_trace_data *d, double *begin, double *end)
{
    *begin = d->begin;
    *end = d->end;
    for (size_t i = 0; i < d->nmsgs; i++) {
        const sm_trace_msg_slice *m = &d->msgs[i];
        int first = i == 0 && d->nslices == 0;
        if (first || m->ts < *begin) *begin = m->ts;
        if (first || m->ts + m->dur > *end) *end = m->ts + m->dur;
    }
}

static void sm_html_data(FILE *f, sm_trace_data *d, const sm_html_rows *r)
{
    char color[8];
    double begin, end;
    fputs("<script id=\"trace-data\" type=\"application/json\">{\n", f);
    sm_html_lanes(f, d, r);
    sm_html_strings(f, "ops", d->ops.v, d->ops.n);
    sm_html_strings(f, "cats", d->cats.v, d->cats.n);
    fputs("\"colors\":[", f);
    for (int i = 0; i < d->ops.n; i++) {
        sm_op_color(i, color);
        fprintf(f, "%s\"%s\"", i ? "," : "", color);
    }
    fputs("],\n\"cat_colors\":[", f);
    for (int i = 0; i < d->cats.n; i++)
        fprintf(f, "%s\"%s\"", i ? "," : "", sm_cat_color(d->cats.v[i]));
    sm_html_span(d, &begin, &end);
    fprintf(f, "],\n\"begin\":%.3f,\"end\":%.3f,\n", begin, end);
    sm_html_slices(f, d, r);
    sm_html_msgs(f, d, r);
    sm_html_marks(f, d);
    sm_html_counters(f, d);
    fputs("}</script>\n", f);
}

static void sm_html_page(FILE *f, sm_trace_data *d, const sm_trace_stats *s,
                         const sm_html_rows *r, const char *path)
{
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>"
          "starmoe trace: ", f);
    sm_html_text(f, path);
    fprintf(f, "</title>\n<style>\n%s", sm_trace_html_style);
    sm_html_legend_style(f);
    fputs("</style></head>\n<body>\n", f);
    sm_html_header(f, d, s, path);
    sm_html_timeline(f, d);
    sm_html_bars(f, d, s);
    sm_html_summary(f, d, s);
    sm_html_data(f, d, r);
    fprintf(f, "<script>\n%s</script>\n</body></html>\n", sm_trace_html_script);
}

int sm_trace_html(const char *path, const char *out_path, sm_error *err)
{
    sm_trace_data d;
    sm_trace_stats s;
    sm_html_rows rows = {0};
    int rc = sm_trace_load(&d, path, err);
    if (rc == 0) rc = sm_trace_summarise(&d, &s, err);
    if (rc == 0) {
        sm_trace_out out;
        if (sm_html_rows_build(&rows, &d))
            rc = sm_fail(err, "%s: out of memory for the timeline's lanes", path);
        else rc = sm_trace_out_begin(&out, out_path, &path, 1, err);
        if (rc == 0) {
            sm_html_page(out.f, &d, &s, &rows, path);
            rc = sm_trace_out_end(&out, 0, err);
        }
        sm_html_rows_free(&rows);
        sm_trace_stats_free(&s);
    }
    sm_trace_data_free(&d);
    return rc;
}
