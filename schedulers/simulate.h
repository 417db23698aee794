/* Timing simulator of a pipeline schedule (docs/pipeline-schedules.md §4.1): each rank runs its
 * slots strictly in order, each slot starts when the rank is free and its inputs have arrived;
 * an overlapped pair is one slot whose outputs appear at its end; a transfer between ranks
 * takes the model's p2p time, an expert-parallel all-to-all stretches its slot (both hidden in
 * an overlapped pair under `overlap`). Gives every slot's start and end, the makespan, each
 * rank's bubble, exposed communication and peak in-flight activations. Pure C, no StarPU. */
#ifndef STARMOE_SIMULATE_H
#define STARMOE_SIMULATE_H

#include <starmoe/error.h>
#include <starmoe/schedule.h>
#include "schedulers/schedule.h"

/* What a simulation is given: slot costs (per rank, or the same everywhere) and communication. */
typedef struct sm_schedule_model {
    sm_schedule_costs costs;
    const sm_schedule_costs *rank_costs; /* [pp], or NULL: `costs` on every rank */
    sm_schedule_comm comm;
} sm_schedule_model;

typedef struct sm_schedule_sim {
    int pp;
    double **start, **end;       /* [rank][slot] */
    double *busy;                /* per rank: the sum of its slots' lengths (costs, plus the
                                    all-to-all time they expose) */
    double *bubble;              /* per rank: makespan - busy (idle, waits on transfers too) */
    double *p2p_wait;            /* per rank: the part of the bubble spent waiting for a
                                    transfer in flight: a slot's start minus the later of the
                                    rank being free and its inputs being produced */
    double *a2a;                 /* per rank: all-to-all time its slots expose */
    int *peak_act;               /* per rank: most (micro-batch, chunk) activations alive at
                                    once, from the start of a forward to the end of its
                                    backward (B or BW); both items of a pair count during it */
    double makespan, bubble_max;
    double exposed_max;          /* largest p2p_wait + a2a over ranks */
} sm_schedule_sim;

/* A slot's computation: F, B, W, B + W, or FB for a pair. */
double sm_slot_cost(const sm_slot *s, const sm_schedule_costs *c);

/* Fills `out` (free it with sm_schedule_sim_free). Fails when a rank waits for an input that
 * never appears (a schedule that deadlocks), naming the rank and the slot, or when a cost or
 * communication time is negative or not finite. */
int sm_schedule_simulate_model(const sm_schedule *p, const sm_schedule_model *m,
                               sm_schedule_sim *out, sm_error *err);
/* The same with costs c on every rank and free communication. */
int sm_schedule_simulate(const sm_schedule *p, const sm_schedule_costs *c, sm_schedule_sim *out,
                     sm_error *err);
void sm_schedule_sim_free(sm_schedule_sim *s);

#endif
