/* Slot costs from measured slot times (docs/pipeline-schedules.md §4.4): each rank's time in F,
 * B and W divided by the chunk ops of each kind it runs in the measured steps. */
#ifndef STARMOE_SCHEDULERS_MEASURED_H
#define STARMOE_SCHEDULERS_MEASURED_H

#include <starmoe/error.h>
#include <starmoe/schedule.h>
#include "schedulers/schedule.h"

typedef struct sm_measured_costs {
    sm_schedule_policy policy;   /* the measured run's */
    sm_schedule_costs *rank;     /* [pp] per chunk op; FB = F + B + W (the engine runs a pair's
                                    forward tasks, then its backward's) */
    sm_schedule_costs mean;      /* over ranks */
} sm_measured_costs;

/* Fails when the measured policy is no pipeline schedule or does not allow its pp and micro.
 * Free with sm_measured_costs_free (also after a failure). */
int sm_measured_costs_new(const sm_schedule_measured *m, sm_measured_costs *out, sm_error *err);
void sm_measured_costs_free(sm_measured_costs *c);

#endif
