/* The task graph: named tensors registered as StarPU vector handles, the one insertion path
 * for every task, per-step task records (stable in memory, so task->sched_data can point at
 * them) and host access helpers. The dependency walk and the DOT export are in deps.c. */
#include "graph/graph.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "base/grow.h"
#include "graph/resizable.h"

#define SM_RECORD_CHUNK 4096

struct sm_graph {
    int execute;
    sm_tensor **tensors;         /* by id; NULL for a released one */
    int ntensors, nlive;
    size_t cap_tensors;
    int *free_ids;               /* released ids, reused last in first out */
    int nfree;
    size_t cap_free;
    sm_task_record **chunks;     /* records in fixed-size chunks: addresses never move */
    size_t nchunks, cap_chunks, nrecords;
    int32_t *access_log;         /* per access: tensor id << 8 | mode */
    size_t naccess, cap_access;
};

sm_graph *sm_graph_new(int execute)
{
    sm_graph *g = calloc(1, sizeof *g);
    if (g) g->execute = execute;
    return g;
}

int sm_graph_executes(const sm_graph *g) { return g->execute; }

size_t sm_tensor_bytes(const sm_tensor *t)
{
    if (t->resizable) return t->handle ? sm_resizable_bytes(t->handle) : 0;
    if (t->absent) return 0;
    return t->numel * sm_dtype_size(t->dtype);
}

/* Host memory comes from an anonymous mapping: zeroed, committed page by page on first
 * touch. */
static void *sm_map_zeroed(size_t bytes)
{
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

enum { SM_MADE_FIXED, SM_MADE_RESIZABLE, SM_MADE_ABSENT };

/* A tensor over its own zeroed memory, (resizable) a handle with no memory yet, or (absent)
 * neither. */
static sm_tensor *sm_tensor_make(sm_graph *g, const char *name, sm_dtype dtype, sm_role role,
                                 int ndim, const int64_t *shape, int kind, sm_error *err)
{
    int resizable = kind == SM_MADE_RESIZABLE;
    if (ndim < 1 || ndim > SM_MAX_DIMS) {
        sm_fail(err, "tensor '%s': %d dimensions (1..%d supported)", name, ndim, SM_MAX_DIMS);
        return NULL;
    }
    if (!g->nfree &&
        sm_grow(&g->tensors, &g->cap_tensors, (size_t)g->ntensors + 1, sizeof *g->tensors)) {
        sm_fail(err, "tensor '%s': out of memory", name);
        return NULL;
    }
    sm_tensor *t = calloc(1, sizeof *t);
    if (!t || !(t->name = strdup(name))) {
        free(t);
        sm_fail(err, "tensor '%s': out of memory", name);
        return NULL;
    }
    t->dtype = dtype;
    t->role = role;
    t->ndim = ndim;
    t->numel = 1;
    t->resizable = resizable;
    t->absent = kind == SM_MADE_ABSENT;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->numel *= (size_t)shape[i];
    }
    if (kind == SM_MADE_FIXED && !(t->data = sm_map_zeroed(sm_tensor_bytes(t)))) {
        sm_fail(err, "tensor '%s': cannot map %zu bytes", name, sm_tensor_bytes(t));
        free(t->name);
        free(t);
        return NULL;
    }
    if (g->execute && resizable)
        sm_resizable_register(&t->handle, sm_dtype_size(dtype));
    else if (g->execute && !t->absent)
        starpu_vector_data_register(&t->handle, STARPU_MAIN_RAM, (uintptr_t)t->data,
                                    (uint32_t)(t->numel ? t->numel : 1), sm_dtype_size(dtype));
    g->nlive++;
    if (g->nfree) {
        t->id = g->free_ids[--g->nfree];
        g->tensors[t->id] = t;
        return t;
    }
    t->id = g->ntensors;
    g->tensors[g->ntensors++] = t;
    return t;
}

sm_tensor *sm_tensor_new(sm_graph *g, const char *name, sm_dtype dtype, sm_role role, int ndim,
                         const int64_t *shape, sm_error *err)
{
    return sm_tensor_make(g, name, dtype, role, ndim, shape, SM_MADE_FIXED, err);
}

sm_tensor *sm_tensor_absent(sm_graph *g, const char *name, sm_dtype dtype, sm_role role,
                            int ndim, const int64_t *shape, sm_error *err)
{
    return sm_tensor_make(g, name, dtype, role, ndim, shape, SM_MADE_ABSENT, err);
}

static void sm_tensor_free(sm_tensor *t)
{
    if (t->resizable && t->handle) sm_resizable_unregister(t->handle);
    else if (t->handle) starpu_data_unregister(t->handle);
    if (t->data && !t->resizable) munmap(t->data, sm_tensor_bytes(t) ? sm_tensor_bytes(t) : 1);
    free(t->name);
    free(t);
}

/* A tensor made by sm_tensor_make, recorded in `owner`. */
static sm_tensor *sm_tensor_make_in(sm_graph *g, sm_tensor_list *owner, const char *name,
                                    sm_dtype dtype, sm_role role, int ndim, const int64_t *shape,
                                    int kind, sm_error *err)
{
    if (sm_grow(&owner->v, &owner->cap, (size_t)owner->n + 1, sizeof *owner->v)) {
        sm_fail(err, "tensor '%s': out of memory", name);
        return NULL;
    }
    sm_tensor *t = sm_tensor_make(g, name, dtype, role, ndim, shape, kind, err);
    if (!t) return NULL;
    owner->v[owner->n++] = t;
    return t;
}

sm_tensor *sm_tensor_new_in(sm_graph *g, sm_tensor_list *owner, const char *name, sm_dtype dtype,
                            sm_role role, int ndim, const int64_t *shape, sm_error *err)
{
    return sm_tensor_make_in(g, owner, name, dtype, role, ndim, shape, SM_MADE_FIXED, err);
}

sm_tensor *sm_tensor_rows_new_in(sm_graph *g, sm_tensor_list *owner, const char *name,
                                 sm_dtype dtype, sm_role role, int64_t width, sm_error *err)
{
    return sm_tensor_make_in(g, owner, name, dtype, role, 2, (int64_t[]){0, width},
                             SM_MADE_RESIZABLE, err);
}

void sm_tensor_list_drop(sm_graph *g, sm_tensor_list *owner)
{
    /* without memory for the free list the ids are not reused (their slots stay NULL) */
    int reuse = !sm_grow(&g->free_ids, &g->cap_free, (size_t)g->nfree + (size_t)owner->n,
                         sizeof *g->free_ids);
    for (int i = 0; i < owner->n; i++) {
        sm_tensor *t = owner->v[i];
        if (reuse) g->free_ids[g->nfree++] = t->id;
        g->tensors[t->id] = NULL;
        g->nlive--;
        sm_tensor_free(t);
    }
    free(owner->v);
    *owner = (sm_tensor_list){0};
}

void sm_graph_free(sm_graph *g)
{
    if (!g) return;
    if (g->execute) starpu_task_wait_for_all();
    for (int i = 0; i < g->ntensors; i++)
        if (g->tensors[i]) sm_tensor_free(g->tensors[i]);
    free(g->free_ids);
    for (size_t i = 0; i < g->nchunks; i++) free(g->chunks[i]);
    free(g->chunks);
    free(g->tensors);
    free(g->access_log);
    free(g);
}

/* The next record's slot, NULL when out of memory. */
static sm_task_record *sm_record_slot(sm_graph *g)
{
    size_t chunk = g->nrecords / SM_RECORD_CHUNK;
    if (chunk == g->nchunks) {
        sm_task_record *c = malloc(SM_RECORD_CHUNK * sizeof *c);
        if (!c || sm_grow(&g->chunks, &g->cap_chunks, g->nchunks + 1, sizeof *g->chunks)) {
            free(c);
            return NULL;
        }
        g->chunks[g->nchunks++] = c;
    }
    return &g->chunks[chunk][g->nrecords++ % SM_RECORD_CHUNK];
}

/* The name traces show: the op, then the layer, expert and micro-batch when set. */
static void sm_task_name(char *name, size_t cap, const sm_task_meta *meta)
{
    int n = snprintf(name, cap, "%s", meta->op);
    if (meta->layer >= 0) n += snprintf(name + n, cap - n, " L%d", meta->layer);
    if (meta->expert >= 0) n += snprintf(name + n, cap - n, " e%d", meta->expert);
    if (meta->micro >= 0) snprintf(name + n, cap - n, " mb%d", meta->micro);
}

/* Records a task and logs its accesses; NULL when out of memory (nothing recorded then). */
static sm_task_record *sm_record_task(sm_graph *g, const sm_task_meta *meta, const sm_access *acc,
                                      int nacc, double flops)
{
    if (sm_grow(&g->access_log, &g->cap_access, g->naccess + (size_t)nacc,
                sizeof *g->access_log))
        return NULL;
    sm_task_record *r = sm_record_slot(g);
    if (!r) return NULL;
    r->meta = *meta;
    r->seq = g->nrecords - 1;
    r->flops = flops;
    r->naccess = nacc;
    r->access_at = (int)g->naccess;
    r->done = 0;
    r->worker = -1;
    r->submit_us = r->ready_us = r->start_us = r->end_us = 0;
    r->predicted_us = NAN;
    sm_task_name(r->name, sizeof r->name, meta);
    for (int i = 0; i < nacc; i++)
        g->access_log[g->naccess++] = (int32_t)(acc[i].t->id << 8 | (acc[i].mode & 0xff));
    return r;
}

/* Task-end callback: copies what StarPU's profiling measured into the task's record. */
static void sm_task_done(void *arg)
{
    sm_task_record *r = arg;
    struct starpu_task *task = starpu_task_get_current();
    struct starpu_profiling_task_info *info = task ? task->profiling_info : NULL;
    if (!info) return;
    r->worker = info->workerid;
    r->submit_us = starpu_timing_timespec_to_us(&info->submit_time);
    r->ready_us = starpu_timing_timespec_to_us(&info->push_start_time);
    r->start_us = starpu_timing_timespec_to_us(&info->start_time);
    r->end_us = starpu_timing_timespec_to_us(&info->end_time);
    r->predicted_us = r->worker >= 0 ? starpu_task_expected_length(
                                           task, starpu_worker_get_perf_archtype(r->worker,
                                                                                 task->sched_ctx),
                                           0)
                                     : NAN;
    r->done = 1;
}

/* Fills err with "task 'NAME': " and the reason; returns -1. */
static int sm_insert_fail(sm_error *err, const sm_task_meta *meta, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int sm_insert_fail(sm_error *err, const sm_task_meta *meta, const char *fmt, ...)
{
    char name[sizeof ((sm_task_record *)0)->name], why[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    sm_task_name(name, sizeof name, meta);
    return sm_fail(err, "task '%s': %s", name, why);
}

/* 0 when every buffer of the task is a live tensor of g accessed R, W or RW; else -1 with err
 * naming the buffer. */
static int sm_check_accesses(const sm_graph *g, const sm_task_meta *meta, const sm_access *acc,
                             int nacc, sm_error *err)
{
    if (nacc < 0 || (nacc > 0 && !acc))
        return sm_insert_fail(err, meta, "%d buffers%s", nacc, acc ? "" : " and no list");
    for (int i = 0; i < nacc; i++) {
        const sm_tensor *t = acc[i].t;
        enum starpu_data_access_mode m = acc[i].mode;
        if (!t) return sm_insert_fail(err, meta, "buffer %d is a NULL tensor", i);
        if (t->id < 0 || t->id >= g->ntensors || g->tensors[t->id] != t)
            return sm_insert_fail(err, meta, "buffer %d (tensor '%s') is not a tensor of this "
                                  "graph (made in another graph, or released)", i, t->name);
        if (t->absent)
            return sm_insert_fail(err, meta, "buffer %d (tensor '%s') is held by another rank",
                                  i, t->name);
        if (m != STARPU_R && m != STARPU_W && m != STARPU_RW)
            return sm_insert_fail(err, meta, "buffer %d (tensor '%s') has access mode %d (R, W "
                                  "or RW expected)", i, t->name, (int)m);
    }
    return 0;
}

int sm_graph_insert(sm_graph *g, struct starpu_codelet *cl, const sm_task_meta *meta,
                    const sm_access *acc, int nacc, const void *args, size_t args_size,
                    double flops, sm_error *err)
{
    if (!g) return sm_insert_fail(err, meta, "no graph to insert it into");
    if (sm_check_accesses(g, meta, acc, nacc, err)) return -1;
    if (!g->execute)
        return sm_record_task(g, meta, acc, nacc, flops)
                   ? 0 : sm_insert_fail(err, meta, "out of memory for the task records");
    if (!cl) return sm_insert_fail(err, meta, "no codelet");
    void *arg_copy = NULL;
    if (args_size) {
        if (!(arg_copy = malloc(args_size)))
            return sm_insert_fail(err, meta, "out of memory for %zu bytes of arguments",
                                  args_size);
        memcpy(arg_copy, args, args_size);
    }
    sm_task_record *r = sm_record_task(g, meta, acc, nacc, flops);
    if (!r) {
        free(arg_copy);
        return sm_insert_fail(err, meta, "out of memory for the task records");
    }
    struct starpu_data_descr descr[nacc ? nacc : 1];
    for (int i = 0; i < nacc; i++) {
        descr[i].handle = acc[i].t->handle;
        descr[i].mode = acc[i].mode;
    }
    /* when it fails, StarPU frees arg_copy with the task */
    int rc = starpu_task_insert(cl, STARPU_DATA_MODE_ARRAY, descr, nacc,
                                STARPU_CL_ARGS, arg_copy, args_size,
                                STARPU_NAME, r->name,
                                STARPU_FLOPS, flops > 0 ? flops : 1.0,
                                STARPU_TASK_SCHED_DATA, (void *)r,
                                STARPU_CALLBACK_WITH_ARG_NFREE, sm_task_done, (void *)r,
                                0);
    if (rc == 0) return 0;
    /* the task is not in the graph, so neither is its record (the last one) */
    g->nrecords--;
    g->naccess -= nacc;
    return sm_insert_fail(err, meta, "StarPU refused it: %s",
                          rc == -ENODEV ? "no worker can run its codelet" : strerror(-rc));
}

void sm_graph_step_begin(sm_graph *g)
{
    if (g->execute) starpu_task_wait_for_all();
    g->nrecords = 0;
    g->naccess = 0;
}

void sm_graph_wait(sm_graph *g)
{
    if (g->execute) starpu_task_wait_for_all();
}

void *sm_tensor_acquire(sm_tensor *t, enum starpu_data_access_mode mode)
{
    if (t->handle) starpu_data_acquire(t->handle, mode);
    return t->resizable && t->handle ? starpu_data_get_local_ptr(t->handle) : t->data;
}

void *sm_tensor_acquire_resized(sm_tensor *t, size_t numel)
{
    void *p = sm_tensor_acquire(t, STARPU_W);
    if (!t->resizable || !t->handle) return p;
    return sm_resizable_resize(starpu_data_get_interface_on_node(t->handle, STARPU_MAIN_RAM),
                               numel);
}

void sm_tensor_release(sm_tensor *t)
{
    if (t->handle) starpu_data_release(t->handle);
}

size_t sm_graph_ntasks(const sm_graph *g) { return g->nrecords; }
int sm_graph_ntensors(const sm_graph *g) { return g->ntensors; }
int sm_graph_live_tensors(const sm_graph *g) { return g->nlive; }
const sm_tensor *sm_graph_tensor(const sm_graph *g, int id) { return g->tensors[id]; }

const sm_tensor *sm_graph_access(const sm_graph *g, const sm_task_record *r, int i,
                                 enum starpu_data_access_mode *mode)
{
    int32_t log = g->access_log[r->access_at + i];
    if (mode) *mode = (enum starpu_data_access_mode)(log & 0xff);
    return g->tensors[log >> 8];
}

const sm_task_record *sm_graph_task(const sm_graph *g, size_t i)
{
    return &g->chunks[i / SM_RECORD_CHUNK][i % SM_RECORD_CHUNK];
}
