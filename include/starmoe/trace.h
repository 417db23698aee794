/* Execution traces: what the running commands record with --trace (every executed task with
 * its op, category, step, micro-batch, layer, expert, stage, worker, times, flops, bytes and the
 * perf model's prediction), and the tools that read a trace file back: a summary, a
 * self-contained HTML report and a merge of several ranks' files. */
#ifndef STARMOE_TRACE_H
#define STARMOE_TRACE_H

#include <stdint.h>
#include <stdio.h>
#include <starmoe/error.h>

typedef enum sm_trace_format {
    SM_TRACE_CHROME,             /* Chrome trace-event JSON (Perfetto, chrome://tracing) */
    SM_TRACE_PAJE                /* Paje (ViTE, pajeng) */
} sm_trace_format;

typedef struct sm_trace_opts {
    const char *path;            /* NULL: no trace */
    sm_trace_format format;
    int64_t first_step;          /* steps traced: first_step..last_step (-1: to the end) */
    int64_t last_step;
    int deps;                    /* also draw the dependencies as flow arrows */
} sm_trace_opts;

/* Every step of every run, Chrome format, no arrows. */
#define SM_TRACE_OPTS_DEFAULT ((sm_trace_opts){.format = SM_TRACE_CHROME, .last_step = -1})

/* Parses --trace-steps: "A:B", "A:" (to the end), ":B" (from 0) or "A" (that step alone). */
SM_API int sm_trace_parse_steps(const char *text, sm_trace_opts *o, sm_error *err);
/* Parses --trace-format: "chrome" or "paje". */
SM_API int sm_trace_parse_format(const char *text, sm_trace_opts *o, sm_error *err);

/* What a command says of the trace it wrote to `path`: the path on one rank; under mpirun
 * (every rank writes its own: rank R's is PATH with ".rankR" before the extension) rank 0's
 * path and rank 1's, e.g. "run.json (rank 0; rank 1: run.rank1.json, and so on: one per
 * rank)". */
SM_API void sm_trace_where(const char *path, char *buf, size_t cap);

/* Reads a Chrome trace and prints per op family the count, total, mean and share of time; per
 * worker busy and idle time; per pipeline stage the bubble; the critical path against the
 * makespan; the compute/communication overlap. json = 1 prints one JSON object instead. */
SM_API int sm_trace_summary(const char *path, FILE *out, int json, sm_error *err);

/* Writes a self-contained HTML report of a Chrome trace: a zoomable Gantt chart with hover
 * details, the per-op breakdown and the summary. */
SM_API int sm_trace_html(const char *path, const char *out_path, sm_error *err);

/* The time a pipelined training run spent in each pipeline rank's slots, read from its Chrome
 * trace (`starmoe schedule --costs-from`; docs/pipeline-schedules.md §4.4): the tasks numbered
 * in a rank's program (args.order), in program order, form runs of one micro-batch and one
 * direction; a run's wall time goes to F, B and W by its tasks' phases and durations. */
typedef struct sm_trace_pipeline {
    char *scheduler;             /* otherData "scheduler" ("" when absent) */
    int ranks, micro;            /* largest args.stage and args.mb of a scheduled task, + 1 */
    int steps;                   /* step graphs with scheduled tasks */
    double *f, *b, *w;           /* [ranks] ms over every step: forward, input backward, weight
                                    backward (communication tasks: "..._bwd" to b, else f) */
    double *other;               /* [ranks] ms over every step: tasks outside the programs run
                                    inside the scheduled span (zeroing, sums, optimizer) */
    size_t messages;             /* message slices between pipeline ranks: the sends, else
                                    all (not those within a pipeline rank's processes) */
    double message_ms;           /* their mean duration, 0 without */
    double step_ms;              /* mean over steps: first start to last end of the step graph */
    double scheduled_ms;         /* the same over its scheduled tasks */
} sm_trace_pipeline;

/* Fails naming the file when it has no scheduled tasks. Free with sm_trace_pipeline_free (also
 * after a failure). */
SM_API int sm_trace_pipeline_load(const char *path, sm_trace_pipeline *out, sm_error *err);
SM_API void sm_trace_pipeline_free(sm_trace_pipeline *p);

/* Concatenates the events of n Chrome traces (one per rank) into one, giving each input's
 * processes their own pid and keeping task and flow ids distinct. */
SM_API int sm_trace_merge(const char *const *paths, int n, const char *out_path, sm_error *err);

#endif
