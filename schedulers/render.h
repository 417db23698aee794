/* Reports of a simulated pipeline schedule: the per-rank programs in the notation of
 * docs/pipeline-schedules.md §1, a text Gantt chart, the per-rank summary, one JSON object, and
 * an SVG timeline. */
#ifndef STARMOE_RENDER_H
#define STARMOE_RENDER_H

#include <stdio.h>
#include <starmoe/error.h>
#include "schedulers/simulate.h"

/* The whole text report: a header, "rank R: F0 B0 ..." lines, the Gantt chart (at most
 * `width` columns of time), then the makespan and each rank's bubble, exposed communication
 * (when the model has communication) and peak activations. */
void sm_schedule_print_text(FILE *f, const sm_schedule *p, const sm_schedule_model *m,
                            const sm_schedule_sim *s, int width);
/* The same as the members of one JSON object, without its braces. */
void sm_schedule_print_json(FILE *f, const sm_schedule *p, const sm_schedule_model *m,
                            const sm_schedule_sim *s);
/* "F=1 B=1 W=1 FB=2.5" */
void sm_schedule_print_costs(FILE *f, const sm_schedule_costs *c);
/* ", p2p 0.5, all-to-all 0, overlap off", or nothing when the model has no communication. */
void sm_schedule_print_comm(FILE *f, const sm_schedule_comm *c);
/* An SVG timeline: one row per rank, one box per slot labelled with its op when it fits. */
int sm_schedule_write_svg(const char *path, const sm_schedule *p, const sm_schedule_sim *s, sm_error *err);

/* How many copies of each stage's parameters the schedule keeps (2 for DualPipe). */
int sm_schedule_stage_copies(const sm_schedule *p);

#endif
