/* Text, JSON and SVG reports of a simulated pipeline schedule. */
#include "schedulers/render.h"

#include <math.h>
#include <string.h>

/* Gantt characters per slot kind: the first column upper case, the rest lower case. */
static const char sm_gantt_first[] = "FBWXP", sm_gantt_rest[] = "fbwxp";
/* SVG fills per slot kind: F, B, W, BW, overlapped pair. */
static const char *sm_svg_fill[] = {"#9ecae1", "#fdae6b", "#a1d99b", "#fc9272", "#bcbddc"};

/* 0 F, 1 B, 2 W, 3 BW, 4 overlapped pair. */
static int sm_slot_class(const sm_slot *s)
{
    return s->nops == 2 ? 4 : (int)s->op[0].kind;
}

int sm_schedule_stage_copies(const sm_schedule *p) { return p->policy == SM_SCHEDULE_DUALPIPE ? 2 : 1; }

/* ---- text ---- */

void sm_schedule_print_costs(FILE *f, const sm_schedule_costs *c)
{
    fprintf(f, "F=%g B=%g W=%g FB=%g", c->f, c->b, c->w, c->fb);
}

static int sm_has_comm(const sm_schedule_comm *c) { return c->p2p > 0 || c->ep > 0; }

void sm_schedule_print_comm(FILE *f, const sm_schedule_comm *c)
{
    if (sm_has_comm(c))
        fprintf(f, ", p2p %g, all-to-all %g, overlap %s", c->p2p, c->ep, c->overlap ? "on" : "off");
}

static void sm_print_header(FILE *f, const sm_schedule *p, const sm_schedule_model *m)
{
    fprintf(f, "%s: %d ranks, %d micro-batches", sm_schedule_policy_name(p->policy), p->pp, p->micro);
    if (p->ndirs == 2) fprintf(f, " (%d per direction)", sm_schedule_micro_per_dir(p));
    fprintf(f, ", %d stages, %d stage chunk%s per rank; costs ", p->nstages, p->nchunks,
            p->nchunks > 1 ? "s" : "");
    if (m->rank_costs) fprintf(f, "per rank");
    else sm_schedule_print_costs(f, &m->costs);
    sm_schedule_print_comm(f, &m->comm);
    fputc('\n', f);
}

static void sm_print_programs(FILE *f, const sm_schedule *p)
{
    char tok[64];
    for (int r = 0; r < p->pp; r++) {
        fprintf(f, "rank %d:", r);
        for (int i = 0; i < p->nslots[r]; i++) {
            sm_slot_format(p, &p->slots[r][i], tok, sizeof tok);
            fprintf(f, " %s", tok);
        }
        fputc('\n', f);
    }
}

/* Columns per time unit: a power of two that fits the makespan into `width` columns. */
static double sm_gantt_scale(double makespan, int width)
{
    double scale = 1;
    if (makespan <= 0) return scale;
    while (makespan * scale * 2 <= width && scale < 8) scale *= 2;
    while (makespan * scale > width) scale /= 2;
    return scale;
}

enum { SM_GANTT_MAX_COLS = 400 };

static void sm_print_gantt(FILE *f, const sm_schedule *p, const sm_schedule_sim *s, int width)
{
    char row[SM_GANTT_MAX_COLS + 1];
    int fit = width < SM_GANTT_MAX_COLS ? width : SM_GANTT_MAX_COLS;
    double scale = sm_gantt_scale(s->makespan, fit);
    int cols = (int)lround(s->makespan * scale);
    fprintf(f, "timeline, 1 column = %g: F forward, B input backward, W weight backward, "
               "X full backward, P overlapped pair, . idle\n", 1 / scale);
    for (int r = 0; r < p->pp; r++) {
        memset(row, '.', (size_t)cols);
        row[cols] = '\0';
        for (int i = 0; i < p->nslots[r]; i++) {
            int k = sm_slot_class(&p->slots[r][i]);
            long c0 = lround(s->start[r][i] * scale), c1 = lround(s->end[r][i] * scale);
            for (long c = c0; c < c1 && c < cols; c++)
                row[c] = c == c0 ? sm_gantt_first[k] : sm_gantt_rest[k];
        }
        fprintf(f, "rank %-3d |%s|\n", r, row);
    }
}

static void sm_print_summary(FILE *f, const sm_schedule *p, const sm_schedule_model *m,
                             const sm_schedule_sim *s)
{
    fprintf(f, "makespan %g\n", s->makespan);
    for (int r = 0; r < p->pp; r++) {
        fprintf(f, "rank %d: busy %g  bubble %g  ", r, s->busy[r], s->bubble[r]);
        if (sm_has_comm(&m->comm))
            fprintf(f, "exposed comm %g (p2p wait %g, all-to-all %g)  ",
                    s->p2p_wait[r] + s->a2a[r], s->p2p_wait[r], s->a2a[r]);
        fprintf(f, "peak activations %d\n", s->peak_act[r]);
    }
    fprintf(f, "bubble max %g; ", s->bubble_max);
    if (sm_has_comm(&m->comm)) fprintf(f, "exposed comm max %g; ", s->exposed_max);
    fprintf(f, "parameters: %d stage chunk%s per rank, %d cop%s of each stage\n",
            p->nchunks, p->nchunks > 1 ? "s" : "", sm_schedule_stage_copies(p),
            sm_schedule_stage_copies(p) > 1 ? "ies" : "y");
}

void sm_schedule_print_text(FILE *f, const sm_schedule *p, const sm_schedule_model *m,
                            const sm_schedule_sim *s, int width)
{
    sm_print_header(f, p, m);
    sm_print_programs(f, p);
    sm_print_gantt(f, p, s, width);
    sm_print_summary(f, p, m, s);
}

/* ---- JSON ---- */

/* "costs":{...}, */
static void sm_json_costs(FILE *f, const sm_schedule_costs *c)
{
    fprintf(f, "\"costs\":{\"F\":%.10g,\"B\":%.10g,\"W\":%.10g,\"FB\":%.10g},", c->f, c->b, c->w,
            c->fb);
}

static void sm_json_rank(FILE *f, const sm_schedule *p, const sm_schedule_model *m,
                         const sm_schedule_sim *s, int r)
{
    char tok[64];
    fprintf(f, "{\"rank\":%d,\"busy\":%.10g,\"bubble\":%.10g,\"p2p_wait\":%.10g,"
               "\"all_to_all\":%.10g,\"exposed_comm\":%.10g,\"peak_activations\":%d,",
            r, s->busy[r], s->bubble[r], s->p2p_wait[r], s->a2a[r], s->p2p_wait[r] + s->a2a[r],
            s->peak_act[r]);
    if (m->rank_costs) sm_json_costs(f, &m->rank_costs[r]);
    fprintf(f, "\"slots\":[");
    for (int i = 0; i < p->nslots[r]; i++) {
        sm_slot_format(p, &p->slots[r][i], tok, sizeof tok);
        fprintf(f, "%s{\"op\":\"%s\",\"start\":%.10g,\"end\":%.10g}", i ? "," : "", tok,
                s->start[r][i], s->end[r][i]);
    }
    fprintf(f, "]}");
}

void sm_schedule_print_json(FILE *f, const sm_schedule *p, const sm_schedule_model *m,
                            const sm_schedule_sim *s)
{
    fprintf(f, "\"policy\":\"%s\",\"pp\":%d,\"micro\":%d,\"stages\":%d,\"directions\":%d,"
               "\"chunks_per_rank\":%d,\"stage_copies\":%d,",
            sm_schedule_policy_name(p->policy), p->pp, p->micro, p->nstages, p->ndirs, p->nchunks,
            sm_schedule_stage_copies(p));
    sm_json_costs(f, &m->costs);
    fprintf(f, "\"comm\":{\"p2p\":%.10g,\"all_to_all\":%.10g,\"overlap\":%s},", m->comm.p2p,
            m->comm.ep, m->comm.overlap ? "true" : "false");
    fprintf(f, "\"makespan\":%.10g,\"bubble_max\":%.10g,\"exposed_comm_max\":%.10g,\"ranks\":[",
            s->makespan, s->bubble_max, s->exposed_max);
    for (int r = 0; r < p->pp; r++) {
        if (r) fputc(',', f);
        sm_json_rank(f, p, m, s, r);
    }
    fputc(']', f);
}

/* ---- SVG ---- */

enum { SM_SVG_LEFT = 70, SM_SVG_TOP = 40, SM_SVG_ROW = 30, SM_SVG_WIDTH = 1200 };

/* A round tick step giving about ten ticks. */
static double sm_tick_step(double span)
{
    double raw = span > 0 ? span / 10 : 1, base = pow(10, floor(log10(raw)));
    return raw <= base ? base : raw <= 2 * base ? 2 * base : raw <= 5 * base ? 5 * base : 10 * base;
}

static void sm_svg_axis(FILE *f, double makespan, double px, int height)
{
    double step = sm_tick_step(makespan);
    for (int i = 0; i * step <= makespan + 1e-9; i++) {
        double t = i * step, x = SM_SVG_LEFT + t * px;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", x,
                SM_SVG_TOP - 4, x, height - 36);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n", x,
                SM_SVG_TOP - 8, t);
    }
}

/* A slot's token with XML's '&' escaped. */
static int sm_svg_token(const sm_schedule *p, const sm_slot *slot, char *buf, size_t n)
{
    char tok[64];
    int len = sm_slot_format(p, slot, tok, sizeof tok);
    const char *amp = strchr(tok, '&');
    if (!amp) snprintf(buf, n, "%s", tok);
    else snprintf(buf, n, "%.*s&amp;%s", (int)(amp - tok), tok, amp + 1);
    return len;
}

static void sm_svg_slots(FILE *f, const sm_schedule *p, const sm_schedule_sim *s, double px)
{
    char tok[80];
    for (int r = 0; r < p->pp; r++) {
        int y = SM_SVG_TOP + r * SM_SVG_ROW;
        fprintf(f, "<text x=\"8\" y=\"%d\">rank %d</text>\n", y + 19, r);
        for (int i = 0; i < p->nslots[r]; i++) {
            double x = SM_SVG_LEFT + s->start[r][i] * px, w = (s->end[r][i] - s->start[r][i]) * px;
            int len = sm_svg_token(p, &p->slots[r][i], tok, sizeof tok);
            fprintf(f, "<rect x=\"%.2f\" y=\"%d\" width=\"%.2f\" height=\"%d\" fill=\"%s\" "
                       "stroke=\"#fff\"><title>%s %g-%g</title></rect>\n",
                    x, y + 2, w, SM_SVG_ROW - 4, sm_svg_fill[sm_slot_class(&p->slots[r][i])],
                    tok, s->start[r][i], s->end[r][i]);
            if (len * 6.2 + 4 <= w)
                fprintf(f, "<text x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                        x + w / 2, y + 19, tok);
        }
    }
}

static void sm_svg_legend(FILE *f, int y)
{
    static const char *names[] = {"F forward", "B input backward", "W weight backward",
                                  "BW full backward", "(F&amp;BW) overlapped pair"};
    for (int k = 0; k < 5; k++) {
        int x = SM_SVG_LEFT + k * 200;
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"14\" fill=\"%s\"/>\n", x, y,
                sm_svg_fill[k]);
        fprintf(f, "<text x=\"%d\" y=\"%d\">%s</text>\n", x + 20, y + 12, names[k]);
    }
}

int sm_schedule_write_svg(const char *path, const sm_schedule *p, const sm_schedule_sim *s, sm_error *err)
{
    FILE *f = fopen(path, "w");
    if (!f) return sm_fail(err, "%s: cannot open for writing", path);
    double px = s->makespan > 0 ? SM_SVG_WIDTH / s->makespan : 1;
    int height = SM_SVG_TOP + p->pp * SM_SVG_ROW + 50, width = SM_SVG_LEFT + SM_SVG_WIDTH + 20;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "font-family=\"monospace\" font-size=\"10\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n"
               "<text x=\"8\" y=\"14\" font-size=\"12\">%s, %d ranks, %d micro-batches: makespan "
               "%g, bubble max %g</text>\n",
            width, height, sm_schedule_policy_name(p->policy), p->pp, p->micro,
            s->makespan, s->bubble_max);
    sm_svg_axis(f, s->makespan, px, height);
    sm_svg_slots(f, p, s, px);
    sm_svg_legend(f, height - 28);
    fprintf(f, "</svg>\n");
    if (fclose(f) != 0) return sm_fail(err, "%s: write failed", path);
    return 0;
}
