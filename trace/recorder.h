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

/* Opens o->path (when set; *t = NULL otherwise) and writes the run metadata: `meta` (e.g. the
 * command and its config) followed by `scheduler` (the policy in force), the StarPU version,
 * git revision and workers, then one lane per worker. StarPU must be running. */
int sm_tracer_open(sm_tracer **t, const sm_trace_opts *o, const char *scheduler,
                   const sm_trace_meta *meta, int nmeta, sm_error *err);
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
/* Ends the trace ("run end" mark) and frees t; reports write errors. */
int sm_tracer_close(sm_tracer *t, sm_error *err);

#endif
