/* Pipeline schedules and their simulation (no StarPU): DualPipe's per-rank programs are those of
 * docs/pipeline-schedules.md §3.3 (the upstream run); every schedule forwards and backwards each
 * item exactly once; the simulated bubbles equal the DeepSeek-V3 report's Table 2 (B there is a
 * full backward: 1F1B (P-1)(F+B), ZB1P (P-1)(F+B-2W), DualPipe (P/2-1)(F&B+B-3W), the last
 * exactly when F equals the input-backward cost) for pp 2, 4, 8 and micro pp, 2 pp, 20 wherever
 * the schedule allows them; the P=8, M=20 table of docs/pipeline-schedules.md §4.2; memory
 * (parameters 1x vs 2x, peak activations P vs P+1); input validation; the JSON and SVG
 * reports. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "schedulers/render.h"
#include "tests/tap.h"
#include "tests/testutil.h"

static const char *dualpipe_4_8[] = {
    "F0.0 F1.0 F2.0 F0.1 B0.1 W0.1 F1.1 (F3.0&BW1.1) (F2.1&BW0.0) BW2.1 (F3.1&BW1.0) BW3.1 B2.0 "
    "W2.0 B3.0 W3.0",
    "F0.0 F0.1 F1.0 F1.1 F2.0 BW0.1 (F2.1&BW0.0) (F3.0&BW1.1) (F3.1&BW1.0) BW2.1 BW2.0 B3.1 B3.0 "
    "W3.1 W3.0",
    "F0.1 F0.0 F1.1 F1.0 F2.1 BW0.0 (F2.0&BW0.1) (F3.1&BW1.0) (F3.0&BW1.1) BW2.0 BW2.1 B3.0 B3.1 "
    "W3.0 W3.1",
    "F0.1 F1.1 F2.1 F0.0 B0.0 W0.0 F1.0 (F3.1&BW1.0) (F2.0&BW0.1) BW2.0 (F3.0&BW1.1) BW3.0 B2.1 "
    "W2.1 B3.1 W3.1"};

static sm_schedule *build(sm_schedule_policy policy, int pp, int micro)
{
    sm_error err = {{0}};
    sm_schedule *p = sm_schedule_new(policy, pp, micro, &err);
    if (!p) tap_diag("%s", err.msg);
    return p;
}

/* The rank's program as one space-separated string. */
static void program(const sm_schedule *p, int rank, char *buf, size_t n)
{
    char tok[64];
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < p->nslots[rank]; i++) {
        sm_slot_format(p, &p->slots[rank][i], tok, sizeof tok);
        int w = snprintf(buf + at, n - at, "%s%s", i ? " " : "", tok);
        if (w < 0 || (size_t)w >= n - at) return;
        at += (size_t)w;
    }
}

static void test_dualpipe_programs(void)
{
    char buf[1024];
    sm_schedule *p = build(SM_SCHEDULE_DUALPIPE, 4, 8);
    for (int r = 0; p && r < 4; r++) {
        program(p, r, buf, sizeof buf);
        if (!tap_ok(!strcmp(buf, dualpipe_4_8[r]), "dualpipe pp 4 micro 8: rank %d as in "
                                                   "docs/pipeline-schedules.md", r))
            tap_diag("got  %s", buf);
    }
    sm_schedule_free(p);
}

/* Every (direction, stage, micro-batch) item is forwarded once and backwarded for inputs once
 * (B, BW or in a pair) on the rank holding its stage, and has a W exactly when split. */
static int complete(const sm_schedule *p)
{
    int n = sm_schedule_micro_per_dir(p), items = p->ndirs * p->nstages * n, ok = 1;
    int *count = calloc((size_t)items * 3, sizeof *count);
    for (int r = 0; count && r < p->pp; r++)
        for (int i = 0; i < p->nslots[r]; i++)
            for (int k = 0; k < p->slots[r][i].nops; k++) {
                const sm_slot_op *o = &p->slots[r][i].op[k];
                int dir, stage;
                sm_schedule_locate(p, r, o->chunk, &dir, &stage);
                int at = (dir * p->nstages + stage) * n + o->micro;
                count[at * 3 + (o->kind == SM_SLOT_F ? 0 : o->kind == SM_SLOT_W ? 2 : 1)]++;
                count[at * 3 + 2] -= o->kind == SM_SLOT_B; /* a split B owes one W */
            }
    for (int i = 0; count && i < items; i++)
        ok &= count[i * 3] == 1 && count[i * 3 + 1] == 1 && count[i * 3 + 2] == 0;
    free(count);
    return count && ok;
}

static void test_completeness(void)
{
    const int pps[] = {1, 2, 3, 4, 8}, micros[] = {1, 3, 8, 16, 20};
    for (int pol = SM_SCHEDULE_GPIPE; pol <= SM_SCHEDULE_DUALPIPEV; pol++) {
        int all = 1, built = 0;
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 5; j++) {
                sm_error err;
                sm_schedule *p = sm_schedule_new((sm_schedule_policy)pol, pps[i], micros[j], &err);
                if (!p) continue;
                built++;
                all &= complete(p);
                sm_schedule_free(p);
            }
        tap_ok(all && built, "%s: every item forwarded and backwarded once, W iff split (%d "
                             "shapes)", sm_schedule_policy_name((sm_schedule_policy)pol), built);
    }
}

/* Table 2 in the symbols of docs/pipeline-schedules.md §1 (B = input backward): the expected max
 * bubble. */
static double table2(sm_schedule_policy pol, int pp, const sm_schedule_costs *c)
{
    switch (pol) {
    case SM_SCHEDULE_GPIPE:
    case SM_SCHEDULE_1F1B: return (pp - 1) * (c->f + c->b + c->w);
    case SM_SCHEDULE_ZBH1: return (pp - 1) * (c->f + c->b - c->w);
    case SM_SCHEDULE_DUALPIPE: return (pp / 2 - 1) * (c->fb + c->b - 2 * c->w);
    case SM_SCHEDULE_DUALPIPEV: return (pp - 1) * (c->fb + c->b - 2 * c->w);
    }
    return NAN;
}

/* Random costs in the ranges of docs/pipeline-schedules.md §4.2: F, B in [0.5, 2], W <= min(F, B),
 * max(F, B+W) <= FB <= F+B+W; F = B when `equal`. */
static sm_schedule_costs draw(tu_rng *g, int equal)
{
    sm_schedule_costs c;
    c.f = 0.5 + 1.5 * tu_uniform(g);
    c.b = equal ? c.f : 0.5 + 1.5 * tu_uniform(g);
    c.w = fmin(c.f, c.b) * tu_uniform(g);
    double lo = fmax(c.f, c.b + c.w), hi = c.f + c.b + c.w;
    c.fb = lo + (hi - lo) * tu_uniform(g);
    return c;
}

/* Max bubble (and, for the single-direction schedules, every rank's) against Table 2 over
 * `draws` random costs. */
static int bubbles_match(const sm_schedule *p, tu_rng *g, int draws)
{
    int every_rank = p->policy <= SM_SCHEDULE_ZBH1, ok = 1;
    for (int d = 0; d < draws && ok; d++) {
        sm_schedule_costs c = draw(g, p->policy >= SM_SCHEDULE_DUALPIPE);
        sm_schedule_sim s;
        sm_error err;
        if (sm_schedule_simulate(p, &c, &s, &err)) return 0;
        double want = table2(p->policy, p->pp, &c);
        ok = fabs(s.bubble_max - want) < 1e-9;
        for (int r = 0; every_rank && r < p->pp; r++) ok &= fabs(s.bubble[r] - want) < 1e-9;
        if (!ok)
            tap_diag("F=%g B=%g W=%g FB=%g: bubble max %.12g, Table 2 %.12g", c.f, c.b, c.w,
                     c.fb, s.bubble_max, want);
        sm_schedule_sim_free(&s);
    }
    return ok;
}

static void test_table2(void)
{
    tu_rng g;
    tu_seed(&g, 42);
    for (int pol = SM_SCHEDULE_GPIPE; pol <= SM_SCHEDULE_DUALPIPEV; pol++)
        for (int pp = 2; pp <= 8; pp *= 2) {
            const int micros[] = {pp, 2 * pp, 20};
            for (int i = 0; i < 3; i++) {
                sm_error err;
                sm_schedule *p = sm_schedule_new((sm_schedule_policy)pol, pp, micros[i], &err);
                if (!p) continue; /* dualpipe(v) needs micro >= 2 pp */
                tap_ok(bubbles_match(p, &g, 50), "%s pp %d micro %d: bubble = Table 2 (50 "
                                                 "cost draws%s)",
                       sm_schedule_policy_name((sm_schedule_policy)pol), pp, micros[i],
                       pol >= SM_SCHEDULE_DUALPIPE ? ", F = B" : ", every rank");
                sm_schedule_free(p);
            }
        }
}

static int simulate(sm_schedule_policy pol, int pp, int micro, sm_schedule_costs c, sm_schedule_sim *s)
{
    sm_error err = {{0}};
    sm_schedule *p = build(pol, pp, micro);
    int rc = p ? sm_schedule_simulate(p, &c, s, &err) : -1;
    if (p && rc) tap_diag("%s", err.msg);
    sm_schedule_free(p);
    return rc;
}

/* docs/pipeline-schedules.md §4.2, P = 8, M = 20, F = B = W = 1, F&B = 2.5. */
static void test_reference_table(void)
{
    const sm_schedule_costs c = {1, 1, 1, 2.5};
    const struct {
        sm_schedule_policy pol;
        int pp;
        double makespan, bubble_max;
        int peak;
    } rows[] = {{SM_SCHEDULE_GPIPE, 8, 81, 21, 20},   {SM_SCHEDULE_1F1B, 8, 81, 21, 8},
                {SM_SCHEDULE_ZBH1, 8, 67, 7, 8},      {SM_SCHEDULE_DUALPIPE, 8, 59, 4.5, 9},
                {SM_SCHEDULE_DUALPIPEV, 4, 109, 4.5, 9}, {SM_SCHEDULE_DUALPIPEV, 8, 119, 10.5, 17}};
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        sm_schedule_sim s;
        if (simulate(rows[i].pol, rows[i].pp, 20, c, &s)) continue;
        tap_ok(s.makespan == rows[i].makespan && s.bubble_max == rows[i].bubble_max &&
                   s.peak_act[0] == rows[i].peak,
               "%s pp %d micro 20: makespan %g, bubble max %g, peak %d (docs: %g, %g, %d)",
               sm_schedule_policy_name(rows[i].pol), rows[i].pp, s.makespan, s.bubble_max,
               s.peak_act[0], rows[i].makespan, rows[i].bubble_max, rows[i].peak);
        sm_schedule_sim_free(&s);
    }
    const double per_rank[8] = {3.5, 4, 4.5, 4.5, 4.5, 4.5, 4, 3.5};
    sm_schedule_sim s;
    if (simulate(SM_SCHEDULE_DUALPIPE, 8, 20, c, &s) == 0) {
        int ok = 1;
        for (int r = 0; r < 8; r++) ok &= s.bubble[r] == per_rank[r];
        tap_ok(ok, "dualpipe pp 8 micro 20: per-rank bubbles 3.5 4 4.5 4.5 4.5 4.5 4 3.5");
        /* (2H+1)(F+B+W) + (M-2H-1) F&B + bubble max */
        tap_ok(s.makespan == 9 * 3 + 11 * 2.5 + 4.5, "dualpipe makespan = busy of a middle rank "
                                                     "+ its bubble");
        sm_schedule_sim_free(&s);
    }
}

/* Where Table 2 does not hold: DualPipe with F != B (docs/pipeline-schedules.md §4.2). */
static void test_dualpipe_f_ne_b(void)
{
    const struct {
        sm_schedule_costs c;
        double sim, table;
    } cases[] = {{{1.5, 1, 1, 3}, 7.5, 6}, {{1, 1.5, 0.75, 2.75}, 7.25, 8.25}};
    for (int i = 0; i < 2; i++) {
        sm_schedule_sim s;
        if (simulate(SM_SCHEDULE_DUALPIPE, 8, 20, cases[i].c, &s)) continue;
        double t2 = table2(SM_SCHEDULE_DUALPIPE, 8, &cases[i].c);
        tap_ok(fabs(s.bubble_max - cases[i].sim) < 1e-12 && fabs(t2 - cases[i].table) < 1e-12,
               "dualpipe F=%g B=%g: bubble %g, not Table 2's %g", cases[i].c.f, cases[i].c.b,
               s.bubble_max, t2);
        sm_schedule_sim_free(&s);
    }
}

static int count_slots(const sm_schedule *p, int rank, int pairs)
{
    int n = 0;
    for (int i = 0; i < p->nslots[rank]; i++)
        n += pairs ? p->slots[rank][i].nops == 2 : p->slots[rank][i].op[0].kind == SM_SLOT_W;
    return n;
}

static void test_memory(void)
{
    const sm_schedule_costs c = {1, 1, 0.5, 2.2};
    for (int pp = 2; pp <= 8; pp *= 2) {
        sm_schedule_sim a, b;
        sm_schedule *one = build(SM_SCHEDULE_1F1B, pp, 2 * pp);
        sm_schedule *dual = build(SM_SCHEDULE_DUALPIPE, pp, 2 * pp);
        sm_error err;
        if (!one || !dual || sm_schedule_simulate(one, &c, &a, &err)) break;
        if (sm_schedule_simulate(dual, &c, &b, &err)) {
            sm_schedule_sim_free(&a);
            break;
        }
        int flat = 1;
        for (int r = 0; r < pp; r++) flat &= b.peak_act[r] == pp + 1;
        tap_ok(a.peak_act[0] == pp && b.peak_act[0] == pp + 1 && flat,
               "pp %d: peak activations on the first rank, 1F1B %d, DualPipe %d (P+1 on every "
               "rank)", pp, a.peak_act[0], b.peak_act[0]);
        tap_ok(one->nchunks == 1 && sm_schedule_stage_copies(one) == 1 && dual->nchunks == 2 &&
                   sm_schedule_stage_copies(dual) == 2,
               "pp %d: parameters per rank 1x (1F1B) vs 2x (DualPipe, each stage twice)", pp);
        sm_schedule_sim_free(&a);
        sm_schedule_sim_free(&b);
        sm_schedule_free(one);
        sm_schedule_free(dual);
    }
    sm_schedule *p = build(SM_SCHEDULE_DUALPIPE, 8, 20);
    const int pairs[] = {9, 10, 11, 11, 11, 11, 10, 9}, ws[] = {7, 6, 5, 4, 4, 5, 6, 7};
    int ok = p != NULL;
    for (int r = 0; p && r < 8; r++)
        ok &= count_slots(p, r, 1) == pairs[r] && count_slots(p, r, 0) == ws[r];
    tap_ok(ok, "dualpipe pp 8 micro 20: pairs 9/10/11/11 and W slots 7/6/5/4 (docs §3.2)");
    sm_schedule_free(p);
}

static void expect_error(sm_schedule_policy pol, int pp, int micro, const char *words)
{
    sm_error err = {{0}};
    sm_schedule *p = sm_schedule_new(pol, pp, micro, &err);
    tap_ok(!p && strstr(err.msg, words) != NULL, "%s pp %d micro %d refused: %s",
           sm_schedule_policy_name(pol), pp, micro, err.msg);
    sm_schedule_free(p);
}

static void test_validation(void)
{
    sm_error err = {{0}};
    sm_schedule_policy pol;
    expect_error(SM_SCHEDULE_1F1B, 0, 4, "pp 0");
    expect_error(SM_SCHEDULE_GPIPE, 2, 0, "micro 0");
    expect_error(SM_SCHEDULE_DUALPIPE, 3, 12, "even number of ranks");
    expect_error(SM_SCHEDULE_DUALPIPE, 4, 9, "even number of micro-batches");
    expect_error(SM_SCHEDULE_DUALPIPE, 4, 6, "at least 2 x pp = 8");
    expect_error(SM_SCHEDULE_DUALPIPEV, 4, 7, "at least 2 x pp = 8");
    expect_error(SM_SCHEDULE_ZBH1, 1024, 65536, "pp 1024 x micro 65536");
    tap_ok(sm_schedule_policy_parse("vpp", &pol, &err) && strstr(err.msg, "'vpp'"),
           "unknown policy name refused: %s", err.msg);
    sm_schedule_costs bad = {1, -1, 0, 2};
    tap_ok(sm_schedule_costs_check(&bad, &err) && strstr(err.msg, "cost B"), "negative cost "
                                                                         "refused: %s", err.msg);
    bad = (sm_schedule_costs){1, 1, NAN, 2};
    tap_ok(sm_schedule_costs_check(&bad, &err) && strstr(err.msg, "cost W"), "NaN cost refused");
}

/* A broken program (rank 0's first backward moved before its forward) is reported, not run. */
static void test_deadlock(void)
{
    sm_error err = {{0}};
    sm_schedule_sim s;
    sm_schedule *p = build(SM_SCHEDULE_1F1B, 2, 2);
    if (!p) return;
    sm_slot first = p->slots[0][0];
    p->slots[0][0] = p->slots[0][2]; /* rank 0: F0 F1 BW0 BW1 -> BW0 F1 F0 BW1 */
    p->slots[0][2] = first;
    tap_ok(sm_schedule_simulate(p, &(sm_schedule_costs){1, 1, 1, 2}, &s, &err) &&
               strstr(err.msg, "rank 0 waits forever at slot 0 (BW0)"),
           "a deadlocking program is reported: %s", err.msg);
    sm_schedule_free(p);
}

static void test_reports(void)
{
    const sm_schedule_costs c = {1, 1, 1, 2.5};
    char *buf = NULL, svg[] = "/tmp/starmoe-schedule-XXXXXX";
    size_t len = 0;
    sm_error err = {{0}};
    sm_schedule_sim s;
    sm_schedule *p = build(SM_SCHEDULE_DUALPIPE, 4, 8);
    FILE *f = open_memstream(&buf, &len);
    if (!p || !f || sm_schedule_simulate(p, &c, &s, &err)) return;
    fputc('{', f);
    sm_schedule_print_json(f, p, &(sm_schedule_model){.costs = c}, &s);
    fputc('}', f);
    fclose(f);
    json_t *j = json_loads(buf, 0, NULL), *r0 = json_array_get(json_object_get(j, "ranks"), 0);
    json_t *slot7 = json_array_get(json_object_get(r0, "slots"), 7);
    const char *op = json_string_value(json_object_get(slot7, "op"));
    tap_ok(j && json_number_value(json_object_get(j, "makespan")) == s.makespan &&
               json_integer_value(json_object_get(j, "stage_copies")) == 2 && op &&
               !strcmp(op, "(F3.0&BW1.1)"),
           "--format json is one object with the makespan, copies and each slot");
    json_decref(j);
    free(buf);
    int fd = mkstemp(svg);
    if (fd >= 0) close(fd);
    tap_ok(fd >= 0 && sm_schedule_write_svg(svg, p, &s, &err) == 0, "SVG timeline written");
    FILE *in = fopen(svg, "r");
    char head[8] = {0};
    tap_ok(in && fread(head, 1, 4, in) == 4 && !strcmp(head, "<svg"), "it starts with <svg");
    if (in) fclose(in);
    unlink(svg);
    tap_ok(sm_schedule_write_svg("/nonexistent/dir/t.svg", p, &s, &err) &&
               strstr(err.msg, "/nonexistent/dir/t.svg"),
           "an unwritable SVG path is named: %s", err.msg);
    sm_schedule_sim_free(&s);
    sm_schedule_free(p);
}

int main(void)
{
    test_dualpipe_programs();
    test_completeness();
    test_table2();
    test_reference_table();
    test_dualpipe_f_ne_b();
    test_memory();
    test_validation();
    test_deadlock();
    test_reports();
    return tap_done();
}
