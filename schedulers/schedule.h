/* Pipeline schedules as per-rank programs (docs/pipeline-schedules.md): GPipe, 1F1B,
 * ZB-H1, DualPipe and DualPipeV give each rank its ordered list of slots (F, B, W, a full
 * backward BW, or an overlapped pair of a forward and a full backward). Pure C, no StarPU. */
#ifndef STARMOE_SCHEDULERS_SCHEDULE_H
#define STARMOE_SCHEDULERS_SCHEDULE_H

#include <stddef.h>
#include <starmoe/error.h>

typedef enum sm_schedule_policy {
    SM_SCHEDULE_GPIPE, SM_SCHEDULE_1F1B, SM_SCHEDULE_ZBH1, SM_SCHEDULE_DUALPIPE, SM_SCHEDULE_DUALPIPEV
} sm_schedule_policy;

/* F forward, B backward for inputs only, W backward for weights, BW both backwards at once. */
typedef enum sm_slot_kind { SM_SLOT_F, SM_SLOT_B, SM_SLOT_W, SM_SLOT_BW } sm_slot_kind;

/* One computation of one micro-batch on one of the rank's chunks (micro counts within its
 * direction for DualPipe). */
typedef struct sm_slot_op {
    sm_slot_kind kind;
    int chunk;
    int micro;
} sm_slot_op;

/* One slot of a rank's program: one op, or an overlapped pair (op[0] a forward, op[1] a full
 * backward of another micro-batch) that runs as one unit. */
typedef struct sm_slot {
    int nops;
    sm_slot_op op[2];
} sm_slot;

typedef struct sm_schedule {
    sm_schedule_policy policy;
    int pp;                      /* ranks */
    int micro;                   /* micro-batches, all directions together */
    int nchunks;                 /* stage chunks per rank: 1, or 2 for DualPipe(V) */
    int nstages;                 /* stages along one direction: pp, or 2 pp for DualPipeV */
    int ndirs;                   /* directions micro-batches flow in: 2 for DualPipe, else 1 */
    int *nslots;                 /* per rank */
    sm_slot **slots;             /* per rank, in program order */
} sm_schedule;

/* Builds the programs of every rank. Fails (err names the field) when pp or micro is outside
 * what the policy allows: pp >= 1 everywhere; DualPipe needs pp even and micro even with
 * micro >= 2 pp, DualPipeV micro >= 2 pp. */
sm_schedule *sm_schedule_new(sm_schedule_policy policy, int pp, int micro, sm_error *err);
void sm_schedule_free(sm_schedule *p);

/* "gpipe", "1f1b", "zbh1", "dualpipe", "dualpipev". */
int sm_schedule_policy_parse(const char *name, sm_schedule_policy *out, sm_error *err);
const char *sm_schedule_policy_name(sm_schedule_policy policy);

/* Where chunk `chunk` of rank `rank` sits: its direction and its stage along it. */
void sm_schedule_locate(const sm_schedule *p, int rank, int chunk, int *dir, int *stage);

/* Micro-batches per direction. */
int sm_schedule_micro_per_dir(const sm_schedule *p);

/* Writes a slot in the notation of docs/pipeline-schedules.md §1: F3, BW3, F3.1, (F7.0&BW3.1).
 * Returns the length snprintf would write. */
int sm_slot_format(const sm_schedule *p, const sm_slot *s, char *buf, size_t n);

#endif
