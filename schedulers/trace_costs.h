/* Slot costs measured in a Chrome trace of a pipelined training run (docs/pipeline-schedules.md
 * §4.4): the mean F, B, W and FB of one stage chunk on each pipeline rank, the time of one
 * message between ranks when the trace has messages, and the measured step, for
 * `starmoe schedule --costs-from`. */
#ifndef STARMOE_SCHEDULERS_TRACE_COSTS_H
#define STARMOE_SCHEDULERS_TRACE_COSTS_H

#include <stddef.h>
#include <starmoe/error.h>
#include <starmoe/schedule.h>
#include "schedulers/schedule.h"

typedef struct sm_trace_costs {
    sm_schedule_policy policy;   /* the trace's scheduler */
    int pp, micro;               /* ranks (args.stage) and micro-batches (args.mb) */
    int steps;                   /* step graphs with scheduled tasks */
    sm_schedule_costs *rank;     /* [pp], ms per chunk op, the gaps between a slot's tasks
                                    included; FB = F + B + W (the engine runs a pair's forward
                                    tasks, then its backward's) */
    sm_schedule_costs mean;      /* the mean over ranks */
    size_t messages;             /* message slices the p2p time is the mean of (0: none) */
    double p2p;                  /* ms, 0 without messages */
    double step_span;            /* ms, mean over step graphs: first start to last end of any
                                    of its tasks (optimizer included) */
    double pipe_span;            /* ms, the same over its scheduled tasks only */
} sm_trace_costs;

/* Reads the trace at path; fails naming it when it has no scheduled (args.order >= 0) tasks or
 * its scheduler is not a pipeline schedule. Free with sm_trace_costs_free (also after a failure). */
int sm_trace_costs_load(const char *path, sm_trace_costs *out, sm_error *err);
void sm_trace_costs_free(sm_trace_costs *c);

#endif
