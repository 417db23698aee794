/* Communication in the pipeline simulator (docs/pipeline-schedules.md §4.1): with p2p 0.1 at
 * P = 8, M = 20 the makespans are those of the independent simulator of the reference notes
 * (GPipe 82.4 = 81 + 2(P-1)0.1, 1F1B 85.6, ZB-H1 69.8, DualPipe 61.6); GPipe's ranks each wait
 * 0.1 per direction they receive in; an all-to-all without overlap is the same as adding it to
 * F and B (2 to a pair) and every F, B and BW op exposes it; overlap hides it in DualPipe's pairs
 * while it fits under FB and changes nothing for schedules without pairs; p2p under overlap
 * delays DualPipe less; per-rank costs equal to the uniform ones change nothing, and a slow
 * last rank stretches 1F1B by its extra work along the chain; bad communication times fail. */
#include <math.h>
#include <string.h>
#include "schedulers/simulate.h"
#include "tests/tap.h"

static const sm_schedule_costs unit = {1, 1, 1, 2.5};

/* Simulates policy at pp, micro under m; returns the makespan (NAN on failure), keeps the
 * simulation in *s when s is not NULL. */
static double run(sm_schedule_policy pol, int pp, int micro, const sm_schedule_model *m,
                  sm_schedule_sim *s)
{
    sm_error err = {{0}};
    sm_schedule *p = sm_schedule_new(pol, pp, micro, &err);
    sm_schedule_sim sim;
    double makespan = NAN;
    if (p && sm_schedule_simulate_model(p, m, &sim, &err) == 0) {
        makespan = sim.makespan;
        if (s) *s = sim;
        else sm_schedule_sim_free(&sim);
    } else {
        tap_diag("%s", err.msg);
    }
    sm_schedule_free(p);
    return makespan;
}

static int near(double a, double b) { return fabs(a - b) < 1e-9; }

static void test_p2p_reference(void)
{
    const struct { sm_schedule_policy pol; double makespan; } want[] = {
        {SM_SCHEDULE_GPIPE, 82.4}, {SM_SCHEDULE_1F1B, 85.6}, {SM_SCHEDULE_ZBH1, 69.8},
        {SM_SCHEDULE_DUALPIPE, 61.6}};
    sm_schedule_model m = {.costs = unit, .comm = {.p2p = 0.1}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        double got = run(want[i].pol, 8, 20, &m, NULL);
        tap_ok(near(got, want[i].makespan), "p2p 0.1, P=8 M=20: %s makespan %g (want %g)",
               sm_schedule_policy_name(want[i].pol), got, want[i].makespan);
    }
    sm_schedule_sim s;
    if (isnan(run(SM_SCHEDULE_GPIPE, 8, 20, &m, &s))) return;
    int ok = near(s.p2p_wait[0], 0.1) && near(s.p2p_wait[7], 0.1);
    for (int r = 1; r < 7; r++) ok &= near(s.p2p_wait[r], 0.2);
    for (int r = 0; r < 8; r++) ok &= s.a2a[r] == 0 && s.p2p_wait[r] <= s.bubble[r] + 1e-9;
    tap_ok(ok && near(s.exposed_max, 0.2), "gpipe: each rank waits 0.1 per direction it "
           "receives in (ends 0.1, middle 0.2), inside its bubble");
    sm_schedule_sim_free(&s);
}

/* F+A, B+A, W, FB+2A with free communication. */
static void test_all_to_all(void)
{
    const double a = 0.4;
    sm_schedule_model with = {.costs = unit, .comm = {.ep = a}};
    sm_schedule_model folded = {.costs = {unit.f + a, unit.b + a, unit.w, unit.fb + 2 * a}};
    for (int pol = SM_SCHEDULE_GPIPE; pol <= SM_SCHEDULE_DUALPIPEV; pol++) {
        sm_schedule_sim s;
        double got = run(pol, 4, 8, &with, &s), want = run(pol, 4, 8, &folded, NULL);
        if (isnan(got)) continue;
        /* per chunk and micro-batch: one F and one B or BW, each exposing a */
        int ok = near(got, want);
        double per_rank = 2 * a * 8 * (pol >= SM_SCHEDULE_DUALPIPE ? 2 : 1) /
                          (pol == SM_SCHEDULE_DUALPIPE ? 2 : 1);
        for (int r = 0; r < 4; r++) ok &= near(s.a2a[r], per_rank) && s.p2p_wait[r] == 0;
        tap_ok(ok, "%s: all-to-all %g without overlap = folded into F, B and pairs (%g), %g "
               "exposed per rank", sm_schedule_policy_name(pol), a, got, per_rank);
        sm_schedule_sim_free(&s);
    }
}

static void test_overlap(void)
{
    sm_schedule_model hide = {.costs = unit, .comm = {.ep = 0.5, .overlap = 1}};
    sm_schedule_model plain = {.costs = unit, .comm = {.ep = 0.5}};
    sm_schedule_sim s;
    double dual = run(SM_SCHEDULE_DUALPIPE, 8, 20, &hide, &s);
    double dual_plain = run(SM_SCHEDULE_DUALPIPE, 8, 20, &plain, NULL);
    if (!isnan(dual)) {
        /* rank 0: 9 pairs hide theirs; 2 x 20 - 2 x 9 ops outside pairs expose 0.5 each */
        tap_ok(near(s.a2a[0], 0.5 * (40 - 18)) && dual < dual_plain,
               "dualpipe: overlap hides the pairs' all-to-alls (rank 0 exposes %g; makespan %g "
               "< %g without overlap)", s.a2a[0], dual, dual_plain);
        sm_schedule_sim_free(&s);
    }
    hide.comm.ep = 2;                  /* 2 x 2 > FB: the pair lasts its communication */
    double slow = run(SM_SCHEDULE_DUALPIPE, 4, 8, &hide, &s);
    if (!isnan(slow)) {
        tap_ok(near(s.end[0][7] - s.start[0][7], 4), "a pair whose all-to-alls outlast FB "
               "takes 2 A (%g)", s.end[0][7] - s.start[0][7]);
        sm_schedule_sim_free(&s);
    }
    sm_schedule_model p2p = {.costs = unit, .comm = {.p2p = 0.3}}, p2p_hide = p2p;
    p2p_hide.comm.overlap = 1;
    double base = run(SM_SCHEDULE_DUALPIPE, 8, 20, &(sm_schedule_model){.costs = unit}, NULL);
    double shown = run(SM_SCHEDULE_DUALPIPE, 8, 20, &p2p, NULL);
    double hidden = run(SM_SCHEDULE_DUALPIPE, 8, 20, &p2p_hide, NULL);
    tap_ok(base <= hidden && hidden < shown, "dualpipe, p2p 0.3: %g without comm <= %g with "
           "overlap < %g without", base, hidden, shown);
    tap_ok(near(run(SM_SCHEDULE_1F1B, 8, 20, &p2p, NULL),
                run(SM_SCHEDULE_1F1B, 8, 20, &p2p_hide, NULL)),
           "overlap changes nothing for 1f1b (no pairs)");
}

static void test_rank_costs(void)
{
    sm_schedule_costs ranks[4] = {unit, unit, unit, unit};
    sm_schedule_model m = {.rank_costs = ranks, .comm = {.p2p = 0.2}};
    sm_schedule_model u = {.costs = unit, .comm = {.p2p = 0.2}};
    int ok = 1;
    for (int pol = SM_SCHEDULE_GPIPE; pol <= SM_SCHEDULE_DUALPIPEV; pol++)
        ok &= near(run(pol, 4, 8, &m, NULL), run(pol, 4, 8, &u, NULL));
    tap_ok(ok, "per-rank costs equal to the uniform ones give the same makespans");
    ranks[3] = (sm_schedule_costs){2, 2, 2, 5};
    m.comm.p2p = 0;
    /* 1F1B with a slowest last stage: M of its F + B + W, plus the others' F and B once */
    double got = run(SM_SCHEDULE_1F1B, 4, 8, &m, NULL);
    tap_ok(near(got, 8 * 6 + 3 * 1 + 3 * 2), "1f1b, last rank twice as slow: makespan %g "
           "(want %g)", got, 8 * 6 + 3.0 + 6);
}

static void test_invalid(void)
{
    sm_error err = {{0}};
    sm_schedule *p = sm_schedule_new(SM_SCHEDULE_1F1B, 2, 2, &err);
    sm_schedule_sim s;
    tap_ok(sm_schedule_simulate_model(p, &(sm_schedule_model){.costs = unit, .comm = {.p2p = -1}},
                                      &s, &err) &&
               strstr(err.msg, "p2p communication -1"),
           "a negative p2p time is refused: %s", err.msg);
    tap_ok(sm_schedule_simulate_model(p, &(sm_schedule_model){.costs = unit,
                                                              .comm = {.ep = INFINITY}},
                                      &s, &err) &&
               strstr(err.msg, "all-to-all"),
           "an infinite all-to-all time is refused: %s", err.msg);
    sm_schedule_costs bad[2] = {unit, {1, -1, 1, 1}};
    tap_ok(sm_schedule_simulate_model(p, &(sm_schedule_model){.rank_costs = bad}, &s, &err) &&
               strstr(err.msg, "rank 1: cost B"),
           "a bad per-rank cost names the rank: %s", err.msg);
    sm_schedule_free(p);
}

int main(void)
{
    test_p2p_reference();
    test_all_to_all();
    test_overlap();
    test_rank_costs();
    test_invalid();
    return tap_done();
}
