/* Pipeline schedules on their own, without an engine: a policy's per-rank programs, simulated
 * with given slot costs or costs measured in a trace, with or without communication, and
 * reported as text, one JSON object or an SVG timeline, or compared over every policy (the
 * `schedule` command; docs/pipeline-schedules.md). */
#ifndef STARMOE_SCHEDULE_H
#define STARMOE_SCHEDULE_H

#include <stdio.h>
#include <starmoe/error.h>
#include <starmoe/export.h>

/* Slot costs in the notation of docs/pipeline-schedules.md §1: F forward, B backward for
 * inputs, W backward for weights (a full backward BW costs B + W), FB one overlapped pair. */
typedef struct sm_schedule_costs {
    double f, b, w, fb;
} sm_schedule_costs;

/* Costs must be finite and >= 0; err names the field. */
SM_API int sm_schedule_costs_check(const sm_schedule_costs *c, sm_error *err);

/* Communication (docs/pipeline-schedules.md §4.1): `p2p` is one transfer between ranks (a
 * forward's activation to the next stage, a backward's gradient to the previous one), which
 * delays its consumer; `ep` the expert-parallel all-to-all of one chunk's F or B (W has none),
 * which stretches the slot; `overlap` models DualPipe's overlapped pair hiding both: its own
 * all-to-alls run under its computation (the pair lasts max(FB, 2 ep)) and its outputs'
 * transfers arrive by its end. Times in the costs' unit, finite and >= 0. */
typedef struct sm_schedule_comm {
    double p2p;
    double ep;
    int overlap;
} sm_schedule_comm;

/* Slot times measured in a pipelined run (e.g. include/starmoe/trace.h's sm_trace_pipeline),
 * which the report turns into each rank's costs per chunk op (docs/pipeline-schedules.md §4.4). */
typedef struct sm_schedule_measured {
    const char *source;          /* where they come from, for the report */
    const char *policy;          /* the run's schedule */
    int pp, micro, steps;
    const double *f, *b, *w;     /* [pp] per rank, summed over every step */
    const double *other;         /* [pp] tasks outside the programs in the span, the same (NULL:
                                    not measured) */
    size_t messages;             /* messages p2p is the mean of (0: none) */
    double p2p;
    double step, scheduled;      /* per step: the whole step, its scheduled tasks */
} sm_schedule_measured;

typedef struct sm_schedule_report_opts {
    const char *policy;          /* "gpipe", "1f1b", "zbh1", "dualpipe" or "dualpipev" */
    int pp;                      /* ranks */
    int micro;                   /* micro-batches, all directions together */
    sm_schedule_costs costs;
    sm_schedule_comm comm;       /* comm.p2p < 0: the measured message time (0 without) */
    const sm_schedule_measured *measured; /* NULL, or its per-rank costs (and p2p time) replace
                                    `costs`, and policy, pp, micro default to its own */
    int all;                     /* one comparison table over the five policies instead */
    int json;                    /* one JSON object instead of the text report */
    int width;                   /* most columns of time in the text report's Gantt chart */
    const char *svg;             /* also write the SVG timeline here (NULL: none) */
} sm_schedule_report_opts;

/* Builds the schedule's programs, simulates them and writes the report to out: the per-rank
 * programs, the Gantt chart, the makespan and each rank's bubble, exposed communication and
 * peak activations; with `all`, one row per policy (those the pp and micro allow). */
SM_API int sm_schedule_report(const sm_schedule_report_opts *o, FILE *out, sm_error *err);

#endif
