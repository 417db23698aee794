/* A scheduling policy that yields the core when it has nothing to run: StarPU's idle workers
 * poll their policy without sleeping, which is right when each owns a core, but when several
 * processes share a host's cores (MPI ranks on one machine) the pollers starve the threads with
 * work to do. */
#ifndef STARMOE_YIELDING_H
#define STARMOE_YIELDING_H

#include <starpu.h>

/* A copy of `base` (same name, same functions) whose pop_task calls sched_yield() whenever
 * base's finds no task. One per process: a later call replaces the earlier copy. */
struct starpu_sched_policy *sm_sched_yielding(const struct starpu_sched_policy *base);

#endif
