/* Reading Chrome traces back (trace/read.c): a streaming scanner of the top-level object
 * that hands each event of "traceEvents" to a callback (the file is mapped, events are parsed
 * one at a time), a loader that keeps what the summary and the report need in compact arrays,
 * and the summary itself (trace/summary.c). Errors name the file, the line and the event. The
 * loader keeps messages between ranks (category "message") apart from the tasks. It refuses what
 * no run can have written: times outside [0, SM_TRACE_MAX_US], a task
 * submitted after it was ready or ready after it started, two tasks with one id, a dependency on
 * a task of another step graph or one that ended after its consumer started. */
#ifndef STARMOE_IO_TRACE_READ_H
#define STARMOE_IO_TRACE_READ_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <starmoe/error.h>

/* Where an event is: for messages. */
typedef struct sm_trace_pos {
    const char *path;
    size_t index;                /* 0-based position in traceEvents */
    size_t offset;               /* byte offset of the event */
    int line;                    /* 1-based line of the event */
} sm_trace_pos;

/* Called with each event (any JSON value: the callback checks it). */
typedef int (*sm_trace_event_fn)(void *ctx, const json_t *ev, const sm_trace_pos *pos,
                                 sm_error *err);
/* Scans path: the top level must be an object holding a "traceEvents" array. *other_data
 * (when other_data is not NULL) receives the "otherData" object (a new reference, NULL when
 * absent). */
int sm_trace_scan(const char *path, sm_trace_event_fn fn, void *ctx, json_t **other_data,
                  sm_error *err);

/* Fails with "path:line: event N ("name"): msg". */
int sm_trace_event_fail(const sm_trace_pos *pos, const json_t *ev, sm_error *err,
                        const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* A table of distinct strings, by index. */
typedef struct sm_strtab {
    char **v;
    int n;
    size_t cap;
    int *slot;                   /* open addressing: index + 1, 0 empty */
    int nslot;
} sm_strtab;
/* Index of s, added when missing; -1 when out of memory. */
int sm_strtab_intern(sm_strtab *t, const char *s);
void sm_strtab_free(sm_strtab *t);

/* Pipeline stages a trace may have. */
#define SM_TRACE_MAX_STAGE 4095
/* Latest time a trace may hold (about 31 years, in microseconds since it began). */
#define SM_TRACE_MAX_US 1e15
/* What the written times' rounding (to the nanosecond) may put a consumer before its
 * dependency's end or a task's start before its ready time, in us. */
#define SM_TRACE_TIME_SLACK_US 1e-3

/* One task ("X" event). Times in microseconds as in the file. */
typedef struct sm_trace_slice {
    double ts, dur, submit, ready;
    double predicted;            /* NAN when absent */
    double flops, bytes;
    int64_t id;                  /* -1 when absent */
    int64_t graph, step;
    int lane, op, cat;           /* indexes: lanes, ops (args.op, else the name), cats */
    int layer, micro, expert, stage;
    int64_t order;               /* number in its pipeline rank's program order, -1: none */
    size_t deps_at;              /* ids in deps[deps_at ..] */
    int ndeps;
    size_t event;                /* its position in traceEvents and its line, for messages */
    int line;
} sm_trace_slice;

/* A message between ranks (an "X" slice of category "message"), kept apart from the tasks. */
typedef struct sm_trace_msg_slice {
    double ts, dur, bytes;
    int pid, tid, peer, send;
    int name;                    /* index in msg_names */
    int64_t tag;                 /* -1 when absent */
} sm_trace_msg_slice;

typedef struct sm_trace_lane {
    int pid, tid;
    char *name;                  /* thread_name, NULL when not given */
} sm_trace_lane;

typedef struct sm_trace_mark {   /* an instant */
    double ts;
    char *name, *cat;
    int64_t tasks;               /* a step mark's "tasks", -1 otherwise */
} sm_trace_mark;

typedef struct sm_trace_point {  /* a counter's value from ts on */
    double ts, v;
    int counter;                 /* index in counters ("name key") */
} sm_trace_point;

/* A slice that has an id (>= 0), in the index by id. */
typedef struct sm_trace_id {
    int64_t id;
    size_t slice;
} sm_trace_id;

typedef struct sm_trace_data {
    sm_trace_slice *slices;
    size_t nslices, cap_slices;
    sm_trace_id *by_id;          /* the slices that have an id, by id (the loader refuses two
                                    with one id) */
    size_t nby_id;
    int64_t *deps;
    size_t ndeps, cap_deps;
    sm_trace_lane *lanes;
    int nlanes;
    size_t cap_lanes;
    sm_strtab ops, cats, counters;
    sm_trace_mark *marks;
    size_t nmarks, cap_marks;
    sm_trace_point *points;
    size_t npoints, cap_points;
    sm_trace_msg_slice *msgs;    /* messages between ranks (not in slices) */
    size_t nmsgs, cap_msgs;
    sm_strtab msg_names;
    json_t *meta;                /* otherData, NULL when absent */
    double begin, end;           /* first start and last end of a slice */
    int multi_pid;               /* lanes of more than one process (merged ranks) */
} sm_trace_data;

/* Loads a trace; d is zeroed first. Free with sm_trace_data_free (also after a failure). */
int sm_trace_load(sm_trace_data *d, const char *path, sm_error *err);
void sm_trace_data_free(sm_trace_data *d);
/* A lane's display name: thread_name, else "tid T", after "P: " when the trace has several
 * processes; written in buf (cap bytes), which it returns. */
const char *sm_trace_lane_name(const sm_trace_data *d, int lane, char *buf, size_t cap);
/* Per lane (d->nlanes flags, malloc'd; NULL when out of memory): 1 when it carries messages and
 * no task (the recorder's lanes per peer and direction), which are not workers. */
char *sm_trace_message_only_lanes(const sm_trace_data *d);
/* The display name of a lane named name of process pid ("P: name" when the trace has several
 * processes), written in buf (cap bytes), which it returns. */
const char *sm_trace_pid_lane_name(const sm_trace_data *d, int pid, const char *name, char *buf,
                                   size_t cap);
/* Index in slices of the slice with this id, -1 when none. */
long sm_trace_find_id(const sm_trace_data *d, int64_t id);
/* A metadata string of otherData, "" when absent. */
const char *sm_trace_meta_str(const sm_trace_data *d, const char *key);

/* ---- the summary (trace/summary.c) ---- */
typedef struct sm_op_stat {
    int op;
    size_t count;
    double total, mean, share;   /* us, us, share of the summed durations */
    size_t npredicted;           /* tasks with a prediction */
    double predicted, measured;  /* their predicted and measured sums (us) */
} sm_op_stat;

typedef struct sm_worker_stat {
    int lane;
    size_t tasks;
    double busy, idle;           /* us; busy + idle = makespan */
} sm_worker_stat;

typedef struct sm_stage_stat {
    int rank;                    /* the MPI rank (process) of a merged trace; -1: one process */
    int stage, workers;
    double span, busy, bubble;   /* summed over step graphs: span of the stage's tasks, busy time
                                    of its workers in it, their idle time inside the span */
} sm_stage_stat;

/* A rank's messages (a process of the trace that has some): their time (the union of their
 * slices), the part of it during which a task of the rank ran, and the rest (exposed). */
typedef struct sm_rank_stat {
    int pid;
    size_t sends, recvs;
    double bytes_sent, bytes_received;
    double comm, overlapped, exposed;  /* us; overlapped + exposed = comm */
} sm_rank_stat;

typedef struct sm_trace_stats {
    size_t tasks;
    int64_t graphs;              /* distinct step graphs */
    double begin, end, makespan, busy;
    sm_op_stat *ops;             /* by total time, largest first */
    int nops;
    sm_worker_stat *workers;     /* in lane order */
    int nworkers;
    sm_stage_stat *stages;
    int nstages;
    int stages_scheduled;        /* pipelined trace: only the ranks' scheduled (ordered) tasks
                                    count in the stage statistics */
    double critical_path;        /* sum over graphs of the longest dependency chain (us) */
    size_t critical_tasks;       /* tasks on those chains */
    double graphs_span;          /* sum over graphs of first start to last end */
    double comm, comm_overlapped; /* communication time, and the part of it during which another
                                     worker ran a compute task */
    sm_rank_stat *ranks;         /* per process with messages, by pid */
    int nranks;
} sm_trace_stats;

int sm_trace_summarise(const sm_trace_data *d, sm_trace_stats *s, sm_error *err);
void sm_trace_stats_free(sm_trace_stats *s);
void sm_trace_stats_print(const sm_trace_data *d, const sm_trace_stats *s, const char *path,
                            FILE *f);
/* The summary as a JSON object (NULL when out of memory). */
json_t *sm_trace_stats_json(const sm_trace_data *d, const sm_trace_stats *s);

/* ---- the HTML report (trace/html.c, page template in trace/html_page.c) ---- */
extern const char sm_trace_html_style[];
extern const char sm_trace_html_script[];

#endif
