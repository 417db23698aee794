/* The tracer of the running commands (train, eval, bench): after each step it turns the graph's
 * task records (what StarPU's profiling measured) into trace events — one slice per task
 * with its dependencies, the ready-tasks and activation-memory counters, step marks — and
 * streams them to the trace file, so the records can be reset by the next step. It reads the
 * graph only (no run, no model). Every call accepts a NULL tracer (tracing off) and does nothing
 * then. */
#ifndef STARMOE_TRACE_RECORDER_H
#define STARMOE_TRACE_RECORDER_H

#include <starmoe/config.h>
#include <starmoe/trace.h>
#include "graph/graph.h"
#include "trace/writer.h"

typedef struct sm_tracer sm_tracer;

/* A message between ranks as model/comm.c records it; times on starpu_timing_now()'s clock. */
typedef struct sm_trace_message {
    int send;                    /* 1: sent to peer, 0: received from it */
    int peer;
    int64_t tag;
    char what[64];               /* the tensor's name */
    starpu_data_handle_t handle;
    uint64_t bytes;              /* the handle's size when the message completed */
    double posted_us, end_us;    /* posted to StarPU-MPI; completed (0: not yet) */
} sm_trace_message;

/* A rank's trace in a run over several ranks (model/rank_trace.c fills it). */
typedef struct sm_trace_ranks {
    int rank, nranks;
    double origin_us;            /* the start of rank 0's trace, on rank 0's clock */
    double offset_us, rtt_us;    /* rank 0's clock minus this rank's, as measured at start-up,
                                    and the round trip of that measurement */
    void (*forget)(void);        /* a step graph is about to be submitted */
    /* the messages of the step graph just waited for: a copy valid until the next call */
    size_t (*messages)(const sm_trace_message **m);
} sm_trace_ranks;

/* Opens o->path (when set; *t = NULL otherwise) and writes the run metadata: `meta` (e.g. the
 * command and its config) followed by `scheduler` (the policy in force), the StarPU version,
 * git revision and workers, then one lane per worker. StarPU must be running. With `ranks`
 * (NULL: one process), the events' pid is the rank, times are on rank 0's clock since rank 0's
 * trace began, and each step's messages are written with its tasks. */
int sm_tracer_open(sm_tracer **t, const sm_trace_opts *o, const char *scheduler,
                   const sm_trace_meta *meta, int nmeta, const sm_trace_ranks *ranks,
                   sm_error *err);
/* A model config as compact config.json text, for the metadata; malloc'd, NULL: out of
 * memory. */
char *sm_tracer_config_text(const sm_config *c);
/* A step graph is about to be submitted (its start mark). */
void sm_tracer_begin(sm_tracer *t);
/* After the step graph g was waited for: writes the tasks it recorded when `step` is in the
 * traced range. kind says what the graph is ("train", "eval", "forward", ...). */
int sm_tracer_step(sm_tracer *t, const sm_graph *g, int64_t step, const char *kind,
                   sm_error *err);
/* A mark now (cat "evaluation", "checkpoint", ...) when `step` is in the traced range. */
int sm_tracer_mark(sm_tracer *t, const char *cat, int64_t step, sm_error *err);
/* The clocks checked again as the run ends: a "clock check" mark (cat "clock") with the offset to
 * rank 0's clock measured now, the one measured at start-up, their difference (*drift_us) and
 * the error of that difference (*error_us: half the two round trips). */
int sm_tracer_clock_check(sm_tracer *t, double offset_us, double rtt_us, double *drift_us,
                          double *error_us, sm_error *err);
/* Ends the trace ("run end" mark) and frees t; reports write errors. */
int sm_tracer_close(sm_tracer *t, sm_error *err);

#endif
