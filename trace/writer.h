/* Trace writers (trace/chrome.c for Chrome JSON, trace/paje.c for Paje): a streaming
 * sink for execution events that knows formats, not models. Times are nanoseconds since the
 * trace began (written as microseconds); events go to the file as they come, so a long run's
 * trace is never held in memory. The Chrome file:
 *   {"otherData": {...run metadata, strings...},
 *    "traceEvents": [ lane names ("M"), one "X" slice per task, "i" instants, "C" counters,
 *                     "s"/"f" flow arrows, "X" slices of cat "message" for messages between
 *                     ranks ],
 *    "displayTimeUnit": "ms"}
 * with pid = rank and tid = worker. */
#ifndef STARMOE_IO_TRACE_H
#define STARMOE_IO_TRACE_H

#include <stdint.h>
#include <stdio.h>
#include <starmoe/error.h>
#include <starmoe/trace.h>

/* One executed task. */
typedef struct sm_trace_task {
    uint64_t id;                 /* unique in the trace, increasing in submission order */
    int64_t graph;               /* index of the traced step graph the task belongs to */
    int64_t step;
    const char *name, *op, *cat; /* "linear_fwd L1 mb0", "linear_fwd", "forward" */
    int micro, layer, expert, stage, worker;
    int64_t order;               /* its number in its pipeline rank's program order, -1: none */
    int64_t submit_ns, ready_ns, start_ns, end_ns;
    double predicted_us;         /* NAN when the perf model had no prediction */
    double flops;
    uint64_t bytes;              /* sum of the sizes of the tensors the task accesses */
    const uint64_t *deps;        /* ids of the tasks it depends on */
    int ndeps;
} sm_trace_task;

/* A message between ranks (a run over several ranks): a slice of category "message" on its own
 * lane, with args dir ("send" or "recv"), peer, tag, bytes, graph, step, posted_us and
 * ready_us. */
typedef struct sm_trace_msg {
    const char *what;            /* the tensor's name: the slice's name */
    int send, peer, tid;
    int64_t tag, graph, step;
    uint64_t bytes;
    int64_t posted_ns, ready_ns; /* posted to StarPU-MPI; its data ready or its buffer free */
    int64_t start_ns, end_ns;
} sm_trace_msg;

/* A key and value of an instant's arguments (str NULL: the number). */
typedef struct sm_trace_arg {
    const char *key;
    const char *str;
    double num;
} sm_trace_arg;

/* Run metadata: written first, as strings. */
typedef struct sm_trace_meta {
    const char *key, *value;
} sm_trace_meta;

typedef struct sm_trace_writer sm_trace_writer;

/* Creates path and writes the header with the metadata; rank is the pid of every event. */
sm_trace_writer *sm_trace_writer_open(const char *path, sm_trace_format format, int rank,
                                      const sm_trace_meta *meta, int nmeta, sm_error *err);
/* Names a worker's lane. */
int sm_trace_writer_lane(sm_trace_writer *w, int tid, const char *name);
int sm_trace_writer_task(sm_trace_writer *w, const sm_trace_task *t);
/* A message's slice (Chrome only: Paje traces leave messages out). */
int sm_trace_writer_message(sm_trace_writer *w, const sm_trace_msg *m);
/* An arrow from task `from` (on lane from_tid, at from_ns) to task `to`; id unique. */
int sm_trace_writer_flow(sm_trace_writer *w, uint64_t id, int from_tid, int64_t from_ns,
                         int to_tid, int64_t to_ns);
/* The value of counter `name` from ts_ns on; `key` names the value in Chrome's args (a viewer
 * shows "name key"). */
int sm_trace_writer_counter(sm_trace_writer *w, const char *name, const char *key, int64_t ts_ns,
                            double value);
/* A mark across the whole rank (step boundaries, evaluation, checkpoints). */
int sm_trace_writer_instant(sm_trace_writer *w, const char *name, const char *cat, int64_t ts_ns,
                            const sm_trace_arg *args, int nargs);
/* Ends a batch of events (a step): formats that need time order write it now. */
int sm_trace_writer_flush(sm_trace_writer *w, sm_error *err);
/* Finishes the file and frees w (also on error); reports any write error, naming the file. */
int sm_trace_writer_close(sm_trace_writer *w, sm_error *err);

/* ---- Paje (trace/paje.c), behind the writer ---- */
typedef struct sm_paje sm_paje;
sm_paje *sm_paje_open(FILE *f, int rank);
void sm_paje_free(sm_paje *p);
int sm_paje_lane(sm_paje *p, int tid, const char *name);
int sm_paje_task(sm_paje *p, const sm_trace_task *t);
int sm_paje_flow(sm_paje *p, uint64_t id, int from_tid, int64_t from_ns, int to_tid,
                 int64_t to_ns);
int sm_paje_counter(sm_paje *p, const char *name, int64_t ts_ns, double value);
int sm_paje_instant(sm_paje *p, const char *name, int64_t ts_ns);
/* Writes the buffered events in time order. -1 when memory ran out. */
int sm_paje_flush(sm_paje *p);
/* Flushes, then closes every container at the last event's time. */
int sm_paje_finish(sm_paje *p);

#endif
