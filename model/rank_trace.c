/* Rank traces (model/rank_trace.h): the per-rank path, the clock offset to rank 0 and the
 * messages of model/comm.c handed to the recorder. starpu_timing_now() counts from each
 * process's own start, so ranks differ even on one host. The offset: rank 0 answers each other
 * rank's pings, in rank order, with its clock and the start of its trace; the ping-pong of the
 * shortest round trip gives the offset (rank 0's answer against the middle of the round trip),
 * exact to within half that round trip. */
#include "model/rank_trace.h"

#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <starpu_mpi.h>
#include <starmoe/engine.h>
#include "base/clock.h"
#include "model/comm.h"

/* Ping-pongs: at least SM_CLOCK_MIN_ROUNDS, more (up to SM_CLOCK_MAX_ROUNDS) while none came
 * back within SM_CLOCK_GOOD_RTT_US (busy cores delay them). */
enum { SM_CLOCK_TAG = 0x434c0000, SM_CLOCK_MIN_ROUNDS = 8, SM_CLOCK_MAX_ROUNDS = 64 };
#define SM_CLOCK_GOOD_RTT_US 100.0
/* how long a rank waits for another's ping or answer */
#define SM_CLOCK_TIMEOUT_S 120.0

/* The buffer of the ping-pongs: {clock, rank 0's trace start}; on the heap, as a request that
 * timed out may still land in it. */
typedef struct sm_clock_msg {
    double v[2];
    atomic_int done;
} sm_clock_msg;

static void sm_clock_done(void *arg) { atomic_store((atomic_int *)arg, 1); }

/* Sends (receives) m->v to (from) peer and waits for it until `deadline` (sm_now); a time-out
 * leaves the request pending, so the engine is abandoned. */
static int sm_clock_message(sm_clock_msg *m, int send, int peer, int64_t tag, double deadline,
                            sm_error *err)
{
    starpu_data_handle_t h;
    atomic_store(&m->done, 0);
    starpu_vector_data_register(&h, STARPU_MAIN_RAM, (uintptr_t)m->v, 2, sizeof *m->v);
    int rc = send ? starpu_mpi_isend_detached(h, peer, tag, MPI_COMM_WORLD, sm_clock_done,
                                              &m->done)
                  : starpu_mpi_irecv_detached(h, peer, tag, MPI_COMM_WORLD, sm_clock_done,
                                              &m->done);
    if (rc) {
        starpu_data_unregister(h);
        return sm_fail(err, "trace: StarPU-MPI refused the clock check's message (rank %d)",
                       peer);
    }
    while (!atomic_load(&m->done)) {
        if (sm_now() > deadline) {
            sm_comm_abandon();
            return sm_fail(err, "trace: rank %d did not take part in the clock check within "
                                "%g s", peer, SM_CLOCK_TIMEOUT_S);
        }
        sched_yield();
    }
    starpu_data_unregister(h);
    return 0;
}

/* Whether a rank pings rank 0 once more after `rounds` ping-pongs whose shortest round trip was
 * best_us. */
static int sm_clock_more(int rounds, double best_us)
{
    return rounds < SM_CLOCK_MIN_ROUNDS ||
           (rounds < SM_CLOCK_MAX_ROUNDS && best_us > SM_CLOCK_GOOD_RTT_US);
}

/* Rank 0's clock minus this rank's (0 on rank 0), the round trip it was measured in, and
 * rank 0's trace start (`origin` on rank 0: its clock now). Collective. A ping carries the time
 * it left and whether another one follows; an answer, rank 0's time and its trace start. */
static int sm_clock_measure(sm_trace_ranks *c, sm_error *err)
{
    sm_clock_msg *m = calloc(1, sizeof *m);
    if (!m) return sm_fail(err, "trace: out of memory");
    double deadline = sm_now() + SM_CLOCK_TIMEOUT_S, best = -1;
    int rc = 0;
    if (c->rank == 0) {
        c->origin_us = starpu_timing_now();
        for (int r = 1; r < c->nranks && rc == 0; r++)
            for (int more = 1; more && rc == 0;) {
                rc = sm_clock_message(m, 0, r, SM_CLOCK_TAG, deadline, err);
                more = m->v[1] != 0;
                m->v[0] = starpu_timing_now();
                m->v[1] = c->origin_us;
                if (rc == 0) rc = sm_clock_message(m, 1, r, SM_CLOCK_TAG + 1, deadline, err);
            }
    }
    for (int k = 0, more = c->rank > 0; more && rc == 0; k++) {
        more = sm_clock_more(k + 1, best);
        double sent = m->v[0] = starpu_timing_now();
        m->v[1] = more;
        rc = sm_clock_message(m, 1, 0, SM_CLOCK_TAG, deadline, err);
        if (rc == 0) rc = sm_clock_message(m, 0, 0, SM_CLOCK_TAG + 1, deadline, err);
        double back = starpu_timing_now();
        if (rc == 0 && (best < 0 || back - sent < best)) {
            best = back - sent;
            c->offset_us = m->v[0] - 0.5 * (sent + back);
            c->rtt_us = best;
            c->origin_us = m->v[1];
        }
    }
    if (!sm_comm_abandoned()) free(m);
    return rc;
}

char *sm_rank_trace_path(const char *path, int rank)
{
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    size_t stem = dot && dot > (slash ? slash : path) ? (size_t)(dot - path) : strlen(path);
    size_t n = strlen(path) + 32;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%.*s.rank%d%s", (int)stem, path, rank, path + stem);
    return p;
}

void sm_trace_where(const char *path, char *buf, size_t cap)
{
    char *one = sm_engine_size() > 1 ? sm_rank_trace_path(path, 1) : NULL;
    if (one)
        snprintf(buf, cap, "%s (rank 0; rank 1: %s, and so on: one per rank)", path, one);
    else snprintf(buf, cap, "%s", path);
    free(one);
}

int sm_rank_tracer_open(sm_tracer **t, const sm_trace_opts *o, const sm_trace_meta *meta,
                        int nmeta, sm_error *err)
{
    *t = NULL;
    if (!o || !o->path) return 0;
    if (sm_engine_size() == 1)
        return sm_tracer_open(t, o, sm_engine_sched_name(), meta, nmeta, NULL, err);
    sm_trace_ranks ranks = {.rank = sm_engine_rank(), .nranks = sm_engine_size(),
                            .forget = sm_comm_forget, .messages = sm_comm_messages};
    sm_trace_opts mine = *o;
    char *path = ranks.rank ? sm_rank_trace_path(o->path, ranks.rank) : NULL;
    if (ranks.rank && !path) return sm_fail(err, "%s: out of memory", o->path);
    if (path) mine.path = path;
    int rc = sm_clock_measure(&ranks, err);
    if (rc == 0) rc = sm_tracer_open(t, &mine, sm_engine_sched_name(), meta, nmeta, &ranks, err);
    if (rc == 0) sm_comm_record(1);
    free(path);
    return rc;
}

int sm_rank_tracer_close(sm_tracer *t, int failed, sm_error *err)
{
    if (!t || sm_engine_size() == 1) return sm_tracer_close(t, err);
    sm_comm_record(0);
    sm_trace_ranks now = {.rank = sm_engine_rank(), .nranks = sm_engine_size()};
    int rc = failed || sm_comm_abandoned() ? 0 : sm_clock_measure(&now, err);
    double drift, error;
    if (rc == 0 && !failed && !sm_comm_abandoned()) {
        rc = sm_tracer_clock_check(t, now.offset_us, now.rtt_us, &drift, &error, err);
        if (rc == 0 && fabs(drift) > SM_CLOCK_DRIFT_WARN_US + error)
            fprintf(stderr, "rank %d: starmoe: warning: the clock drifted %.0f us from rank 0's "
                            "over the run (more than %.0f us beyond the measurements' error "
                            "%.0f us): its trace's times are off by up to that much\n", now.rank,
                    drift, SM_CLOCK_DRIFT_WARN_US, error);
    }
    if (sm_tracer_close(t, rc ? NULL : err)) rc = -1;
    return rc;
}
