/* The MPI side of the engine (model/parallel.c): whether mpirun launched several ranks,
 * starting and stopping StarPU-MPI for model/engine.c. */
#ifndef STARMOE_PARALLEL_H
#define STARMOE_PARALLEL_H

#include <starpu.h>
#include <starmoe/engine.h>
#include <starmoe/error.h>

/* Ranks launched on the whole job and on this host, from mpirun's environment (1 without). */
int sm_parallel_launched(void);
int sm_parallel_local_ranks(void);
/* Starts MPI (MPI_THREAD_SERIALIZED, as StarPU-MPI asks; finalised at exit after a barrier
 * with a grace period) and StarPU through StarPU-MPI with conf: workers and the MPI thread
 * left unbound when ranks share the host, unless the environment says otherwise. Returns
 * starpu_init's code. */
int sm_parallel_start(struct starpu_conf *conf);
/* Stops StarPU-MPI; nothing after a peer stopped answering (the process is leaving anyway and
 * its requests would never complete). */
void sm_parallel_stop(void);
/* Waits until every rank got here (nothing on one rank). At the end of a successful run: a
 * rank with more to write (rank 0's last checkpoint, with its fsyncs) would otherwise keep its
 * peers past the exit barrier's grace period, and they would leave without finalising MPI. */
void sm_parallel_sync(void);
/* How long a rank waits for the others: l->timeout_s, or 120 s when it is not set. */
double sm_launch_timeout(const sm_launch *l);
/* Gathers every rank's `bytes` bytes at `mine` into `all` on rank 0 (rank r's at all + r *
 * bytes; all is not touched on the others), after the step's tasks: for results rank 0 alone
 * writes. A copy on one rank. */
void sm_parallel_gather(const void *mine, size_t bytes, void *all);
/* Every rank says whether its part of a joint action went well (ok 1 or 0) and learns about
 * all: returns the lowest rank that failed, -1 when none did; -2 with err set (naming `what`
 * and the ranks it waited for, the engine abandoned) when a rank did not answer within
 * timeout_s. Between steps (no task pending). -1 on one rank when ok. */
int sm_parallel_agree(int ok, double timeout_s, const char *what, sm_error *err);

#endif
