/* The "ordered" StarPU policy: a task whose sm_task_record carries an order number (order >= 0)
 * runs on worker order_worker strictly in order 0, 1, 2, ... of that worker, whenever it became
 * ready; tasks without one (order -1, or no record) go to a shared FIFO that any worker pops
 * when its next ordered task is not ready yet. This is the per-rank slot sequence of a
 * pipeline schedule (../shared/docs/dualpipe.md §5) with bubble fillers. */
#ifndef STARMOE_ORDERED_H
#define STARMOE_ORDERED_H

#include <starpu.h>
#include <starmoe/error.h>

extern struct starpu_sched_policy sm_ordered_policy;

/* Starts every worker's sequence at order 0 again, e.g. for the next step. Only when no task is
 * pending (after sm_graph_wait); fails when one is, or when "ordered" is not the policy in
 * force. */
int sm_ordered_restart(sm_error *err);

#endif
