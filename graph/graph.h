/* The task graph: tensors are named StarPU handles with a shape, dtype, role and owner rank;
 * every task goes in through sm_graph_insert(), which records what schedulers, traces and the
 * DOT export read (op, layer, micro-batch, phase, expert, stage, accesses, flops) and, once a
 * task has run, what StarPU measured. Knows nothing of DeepSeek-V3. */
#ifndef STARMOE_GRAPH_H
#define STARMOE_GRAPH_H

#include <stddef.h>
#include <stdint.h>
#include <starpu.h>
#include <starmoe/error.h>
#include "base/dtype.h"
#include "base/phase.h"

#define SM_MAX_DIMS 4

typedef enum sm_role { SM_PARAM, SM_GRAD, SM_ACT, SM_OPT_STATE, SM_INPUT } sm_role;

typedef struct sm_tensor {
    char *name;
    int id;                      /* index in its graph */
    sm_dtype dtype;
    sm_role role;
    int owner;                   /* MPI rank holding the data */
    int ndim;
    int64_t shape[SM_MAX_DIMS];
    size_t numel;
    void *data;                  /* host memory (lazily committed mapping); NULL: resizable */
    starpu_data_handle_t handle;
    int resizable;               /* rows set by the task writing it (sm_tensor_rows_new_in) */
    int absent;                  /* held by another rank: name and shape only (sm_tensor_absent) */
} sm_tensor;

/* What a task is, as schedulers and traces see it (task->sched_data points to it). */
/* The part of a Transformer block a task belongs to, for policies that interleave the tasks of
 * two micro-batches' chunks (schedulers/overlap.h); none outside blocks (embedding, head). */
typedef enum sm_block_part {
    SM_PART_NONE = 0,
    SM_PART_ATTENTION,           /* norms, attention, the router: compute before a dispatch */
    SM_PART_DISPATCH,            /* tokens (forward) or their gradients (backward) to experts */
    SM_PART_MLP,                 /* the experts, shared or dense FFN */
    SM_PART_COMBINE              /* expert outputs (or output gradients) back and mixed */
} sm_block_part;

typedef struct sm_task_meta {
    const char *op;              /* op family and direction, e.g. "linear_fwd" */
    int layer;                   /* -1 outside layers (embedding, head, loss) */
    int micro;                   /* micro-batch, -1 for step-wide tasks */
    int expert;                  /* routed expert, -1 otherwise */
    int stage;                   /* pipeline rank (stage) running it, 0 without pipelining */
    sm_phase phase;
    sm_block_part part;
    /* for the "ordered" policies (schedulers/ordered.h): the task starts as number `order` of
     * lane `lane`'s sequence (a lane is a set of workers, e.g. a pipeline rank's); order -1:
     * unordered */
    int64_t order;
    int lane;
} sm_task_meta;

typedef struct sm_access {
    sm_tensor *t;
    enum starpu_data_access_mode mode;
} sm_access;

/* One inserted task as recorded by the graph. */
typedef struct sm_task_record {
    sm_task_meta meta;
    uint64_t seq;                /* submission index within the step */
    char name[64];
    double flops;
    int naccess;
    int access_at;               /* first entry in the graph's access log */
    /* filled from StarPU's profiling data when the task has run (done = 1); times in us on
     * starpu_timing_now()'s clock */
    int done, worker;
    double submit_us, ready_us, start_us, end_us;
    double predicted_us;         /* the perf model's expectation, NAN when not calibrated */
} sm_task_record;

typedef struct sm_graph sm_graph;

/* A graph either executes tasks through StarPU (execute = 1; StarPU must be initialised) or
 * only records them (execute = 0), e.g. to export the DAG without running it. */
sm_graph *sm_graph_new(int execute);
void sm_graph_free(sm_graph *g);
int sm_graph_executes(const sm_graph *g);

/* Creates a tensor with zeroed host memory and (when executing) its StarPU handle. NULL on
 * allocation failure (err says which tensor). */
sm_tensor *sm_tensor_new(sm_graph *g, const char *name, sm_dtype dtype, sm_role role, int ndim,
                         const int64_t *shape, sm_error *err);
size_t sm_tensor_bytes(const sm_tensor *t);
/* A tensor this process does not hold (another rank's shard of the model): its name, dtype,
 * role and shape, but no memory and no handle; no task may use it. sm_tensor_bytes gives 0. */
sm_tensor *sm_tensor_absent(sm_graph *g, const char *name, sm_dtype dtype, sm_role role,
                            int ndim, const int64_t *shape, sm_error *err);

/* Tensors with one owner (a run's activations, an optimizer's state), released together. */
typedef struct sm_tensor_list {
    sm_tensor **v;
    int n;
    size_t cap;
} sm_tensor_list;

/* sm_tensor_new, the tensor recorded in `owner`. */
sm_tensor *sm_tensor_new_in(sm_graph *g, sm_tensor_list *owner, const char *name, sm_dtype dtype,
                            sm_role role, int ndim, const int64_t *shape, sm_error *err);
/* A resizable tensor of rows of `width` elements (graph/resizable.h), recorded in `owner`:
 * no rows until a task writing it sets how many (a routed expert's tokens, known only when
 * the routing has run); kernels see a vector of rows * width elements. Its shape says 0 rows;
 * sm_tensor_bytes gives its current size. Host memory only. */
sm_tensor *sm_tensor_rows_new_in(sm_graph *g, sm_tensor_list *owner, const char *name,
                                 sm_dtype dtype, sm_role role, int64_t width, sm_error *err);

/* Releases every tensor of the list (waiting for their pending tasks) and empties it; their
 * ids go to later tensors. No record of the current step may refer to them any more (start a
 * new step first). */
void sm_tensor_list_drop(sm_graph *g, sm_tensor_list *owner);

/* Submits (and records) one task. `args` (args_size bytes) is copied and handed to the kernel
 * as cl_arg. The codelet must use STARPU_VARIABLE_NBUFFERS; buffers arrive in `acc` order.
 * A task that cannot go in (a buffer that is NULL or not a live tensor of g, a bad access
 * mode, no memory, StarPU refusing it) adds nothing: -1, with err naming the task, the buffer
 * and the reason. */
int sm_graph_insert(sm_graph *g, struct starpu_codelet *cl, const sm_task_meta *meta,
                    const sm_access *acc, int nacc, const void *args, size_t args_size,
                    double flops, sm_error *err);

/* Starts a new step: forgets the previous step's task records. */
void sm_graph_step_begin(sm_graph *g);
/* Waits for every submitted task. */
void sm_graph_wait(sm_graph *g);

/* Host access for the main thread between steps (waits for pending tasks on the tensor). */
void *sm_tensor_acquire(sm_tensor *t, enum starpu_data_access_mode mode);
void sm_tensor_release(sm_tensor *t);
/* sm_tensor_acquire for writing a resizable tensor, made to hold numel elements first. */
void *sm_tensor_acquire_resized(sm_tensor *t, size_t numel);

/* Accesses of a record: tensor and mode of access i < r->naccess. */
const sm_tensor *sm_graph_access(const sm_graph *g, const sm_task_record *r, int i,
                                 enum starpu_data_access_mode *mode);
/* Tensor ids run below sm_graph_ntensors; sm_graph_tensor is NULL for a released id. */
int sm_graph_ntensors(const sm_graph *g);
const sm_tensor *sm_graph_tensor(const sm_graph *g, int id);
/* Tensors alive in the graph. */
int sm_graph_live_tensors(const sm_graph *g);

/* Records of the current step. */
size_t sm_graph_ntasks(const sm_graph *g);
const sm_task_record *sm_graph_task(const sm_graph *g, size_t i);

/* ---- dependencies (graph/deps.c) ---- */

/* Scratch memory of dependency walks, kept from one step to the next so that a warm walk
 * allocates nothing. */
typedef struct sm_dep_walk sm_dep_walk;
sm_dep_walk *sm_dep_walk_new(void);
void sm_dep_walk_free(sm_dep_walk *w);

/* Called once per task of the current step, in submission order, with the distinct earlier
 * tasks it truly depends on. Returns 0 to go on; anything else stops the walk. */
typedef int (*sm_dep_fn)(void *ctx, size_t task, const size_t *deps, int ndeps);

/* Walks the current step's true dependencies: read after write (the last writer before a
 * reader), write after read and write after write on a tensor. Returns 0, or -1 when fn stopped
 * the walk (fn reports why) or memory ran out (err says so). */
int sm_graph_walk_deps(const sm_graph *g, sm_dep_walk *w, sm_dep_fn fn, void *ctx,
                       sm_error *err);

/* Writes the current step's DAG as Graphviz DOT: one node per task, an edge per dependency of
 * sm_graph_walk_deps. */
int sm_graph_write_dot(const sm_graph *g, const char *path, sm_error *err);

#endif
