/* The "ordered" StarPU policies: the workers are split into lanes (by default one lane per
 * worker; a pipeline rank's workers with sm_ordered_set_lanes), and a task whose meta carries an
 * order number (meta.order >= 0) starts as number meta.order of lane meta.lane's sequence,
 * strictly in order 0, 1, 2, ... of that lane, on any worker of the lane; consecutive tasks of
 * one lane may run at once on its several workers. Tasks without one (order -1, or no record)
 * go to a shared FIFO that any worker pops when its lane's next task is not ready yet. This is
 * the per-rank slot sequence of a pipeline schedule (docs/pipeline-schedules.md §5) with bubble
 * fillers. The same policy is registered under six names: "ordered" and one per pipeline
 * schedule ("gpipe", "1f1b", "zbh1", "dualpipe", "dualpipev"). */
#ifndef STARMOE_ORDERED_H
#define STARMOE_ORDERED_H

#include <starpu.h>
#include <starmoe/error.h>

/* The six policies, "ordered" first. */
extern struct starpu_sched_policy *const sm_ordered_policies[];
extern const int sm_ordered_npolicies;

/* 1 when the policy in force (sched ctx 0) is one of the six, 0 otherwise. */
int sm_ordered_active(void);

/* Starts every lane's sequence at order 0 again, e.g. for the next step. Only when no task is
 * pending (after sm_graph_wait); fails when one is, or when the policy in force is not one of
 * the six. */
int sm_ordered_restart(sm_error *err);

/* Splits the workers of sched ctx 0 into nlanes contiguous lanes (worker w goes to lane
 * w * nlanes / nworkers) and starts every sequence at order 0. From the main thread, with no
 * task pending; fails when one is, when nlanes is not in 1..nworkers, or when the policy in
 * force is not one of the six. */
int sm_ordered_set_lanes(int nlanes, sm_error *err);

/* The lane of a worker, -1 for no worker or when none of the six is in force. */
int sm_ordered_lane_of_worker(int worker);

#endif
