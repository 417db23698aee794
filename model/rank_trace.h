/* The tracer of a command run over ranks (model/rank_trace.c): under mpirun every rank writes its
 * own trace, rank 0 the given path and rank R > 0 the path with ".rankR" before its extension
 * (run.json, run.rank1.json); events carry pid = rank, times are on rank 0's clock (each rank's
 * offset to it measured by ping-pongs through StarPU-MPI as the traces open, and measured again
 * as they close: the drift goes in a "clock check" mark), and each step's messages
 * (model/comm.c) are slices on lanes of their own. With one rank these are sm_tracer_open and
 * sm_tracer_close. Opening and closing are collective: every rank traces or none. */
#ifndef STARMOE_MODEL_RANK_TRACE_H
#define STARMOE_MODEL_RANK_TRACE_H

#include "trace/recorder.h"

/* Drift of a rank's clock against rank 0's over the run above which closing warns (beyond the
 * measurements' own error, half their round trips). */
#define SM_CLOCK_DRIFT_WARN_US 1000.0

/* sm_tracer_open on this rank's path (the scheduler in force is added to meta). */
int sm_rank_tracer_open(sm_tracer **t, const sm_trace_opts *o, const sm_trace_meta *meta,
                        int nmeta, sm_error *err);
/* Checks the clocks again (unless `failed`: the other ranks may not come) and closes t; a drift
 * over SM_CLOCK_DRIFT_WARN_US is said on stderr. */
int sm_rank_tracer_close(sm_tracer *t, int failed, sm_error *err);
/* The file rank `rank` writes for `path`: malloc'd, NULL when out of memory. */
char *sm_rank_trace_path(const char *path, int rank);

#endif
