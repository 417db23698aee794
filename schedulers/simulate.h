/* Timing simulator of a pipeline schedule (docs/pipeline-schedules.md §4.1): each rank runs its
 * slots strictly in order, each slot starts when the rank is free and its inputs exist; an
 * overlapped pair is one slot whose outputs appear at its end; cross-rank transfers take no
 * time. Gives every slot's start and end, the makespan, the bubble of each rank and its peak
 * in-flight activations. Pure C, no StarPU. */
#ifndef STARMOE_SIMULATE_H
#define STARMOE_SIMULATE_H

#include <starmoe/error.h>
#include <starmoe/schedule.h>
#include "schedulers/schedule.h"

typedef struct sm_schedule_sim {
    int pp;
    double **start, **end;       /* [rank][slot] */
    double *busy;                /* per rank: the sum of its slot costs */
    double *bubble;              /* per rank: makespan - busy */
    int *peak_act;               /* per rank: most (micro-batch, chunk) activations alive at
                                    once, from the start of a forward to the end of its
                                    backward (B or BW); both items of a pair count during it */
    double makespan, bubble_max;
} sm_schedule_sim;

double sm_slot_cost(const sm_slot *s, const sm_schedule_costs *c);

/* Fills `out` (free it with sm_schedule_sim_free). Fails when a rank waits for an input that
 * never appears (a schedule that deadlocks), naming the rank and the slot. */
int sm_schedule_simulate(const sm_schedule *p, const sm_schedule_costs *c, sm_schedule_sim *out,
                     sm_error *err);
void sm_schedule_sim_free(sm_schedule_sim *s);

#endif
