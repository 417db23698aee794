/* Reports of a simulated pipeline schedule: the per-rank programs in the notation of
 * docs/pipeline-schedules.md §1, a text Gantt chart, the per-rank summary, one JSON object, and
 * an SVG timeline. */
#ifndef STARMOE_RENDER_H
#define STARMOE_RENDER_H

#include <stdio.h>
#include <starmoe/error.h>
#include "schedulers/simulate.h"

/* The whole text report: a header, "rank R: F0 B0 ..." lines, the Gantt chart (at most
 * `width` columns of time), then the makespan and each rank's bubble and peak activations. */
void sm_schedule_print_text(FILE *f, const sm_schedule *p, const sm_schedule_costs *c, const sm_schedule_sim *s,
                        int width);
/* The same as one JSON object. */
void sm_schedule_print_json(FILE *f, const sm_schedule *p, const sm_schedule_costs *c, const sm_schedule_sim *s);
/* An SVG timeline: one row per rank, one box per slot labelled with its op when it fits. */
int sm_schedule_write_svg(const char *path, const sm_schedule *p, const sm_schedule_sim *s, sm_error *err);

/* How many copies of each stage's parameters the schedule keeps (2 for DualPipe). */
int sm_schedule_stage_copies(const sm_schedule *p);

#endif
