/* The true dependencies of a step's tasks, found from their accesses the way StarPU orders
 * them: per tensor the last writer and the readers since, so a reader depends on the last
 * writer and a writer on the last writer and every reader since. One walk serves the DOT export
 * here and the traces (trace/recorder.c); its scratch memory is reused from step to step. */
#include "graph/graph.h"

#include <stdio.h>
#include <stdlib.h>
#include "base/grow.h"

typedef struct sm_reader_node {
    size_t task;
    long next;                   /* next node of the same tensor's list, -1 at the end */
} sm_reader_node;

struct sm_dep_walk {
    long *writer, *readers;      /* per tensor: last writer, head of its readers list (-1: none) */
    size_t cap_writer, cap_readers;
    sm_reader_node *pool;        /* every tensor's readers lists */
    size_t npool, cap_pool;
    size_t *deps, *stamp;        /* the current task's dependencies; stamp[j] = task + 1 once
                                    j is among them */
    size_t cap_deps, cap_tasks;
    int ndeps;
};

sm_dep_walk *sm_dep_walk_new(void) { return calloc(1, sizeof(sm_dep_walk)); }

void sm_dep_walk_free(sm_dep_walk *w)
{
    if (!w) return;
    free(w->writer);
    free(w->readers);
    free(w->pool);
    free(w->deps);
    free(w->stamp);
    free(w);
}

/* Grows *p to hold at least n elements of size sz (doubling); 0 on success. */
static int sm_walk_reset(sm_dep_walk *w, const sm_graph *g)
{
    size_t nt = (size_t)sm_graph_ntensors(g);
    if (sm_grow(&w->writer, &w->cap_writer, nt, sizeof *w->writer) ||
        sm_grow(&w->readers, &w->cap_readers, nt, sizeof *w->readers) ||
        sm_grow(&w->stamp, &w->cap_tasks, sm_graph_ntasks(g), sizeof *w->stamp))
        return -1;
    for (size_t i = 0; i < nt; i++) w->writer[i] = w->readers[i] = -1;
    for (size_t i = 0; i < sm_graph_ntasks(g); i++) w->stamp[i] = 0;
    w->npool = 0;
    return 0;
}

static int sm_add_dep(sm_dep_walk *w, long from, size_t task)
{
    if (from < 0 || (size_t)from == task || w->stamp[from] == task + 1) return 0;
    if (sm_grow(&w->deps, &w->cap_deps, (size_t)w->ndeps + 1, sizeof *w->deps)) return -1;
    w->stamp[from] = task + 1;
    w->deps[w->ndeps++] = (size_t)from;
    return 0;
}

/* One access of `task` to tensor t: adds its dependencies and updates the tensor's state. */
static int sm_walk_access(sm_dep_walk *w, int t, size_t task, int mode)
{
    if (sm_add_dep(w, w->writer[t], task)) return -1;
    if (mode & STARPU_W) {
        for (long n = w->readers[t]; n >= 0; n = w->pool[n].next)
            if (sm_add_dep(w, (long)w->pool[n].task, task)) return -1;
        w->writer[t] = (long)task;
        w->readers[t] = -1;
        return 0;
    }
    if (sm_grow(&w->pool, &w->cap_pool, w->npool + 1, sizeof *w->pool)) return -1;
    w->pool[w->npool] = (sm_reader_node){task, w->readers[t]};
    w->readers[t] = (long)w->npool++;
    return 0;
}

int sm_graph_walk_deps(const sm_graph *g, sm_dep_walk *w, sm_dep_fn fn, void *ctx,
                       sm_error *err)
{
    if (sm_walk_reset(w, g)) return sm_fail(err, "out of memory in the dependency walk");
    for (size_t i = 0, n = sm_graph_ntasks(g); i < n; i++) {
        const sm_task_record *r = sm_graph_task(g, i);
        w->ndeps = 0;
        for (int a = 0; a < r->naccess; a++) {
            enum starpu_data_access_mode mode;
            const sm_tensor *t = sm_graph_access(g, r, a, &mode);
            if (sm_walk_access(w, t->id, i, (int)mode))
                return sm_fail(err, "out of memory in the dependency walk");
        }
        if (fn(ctx, i, w->deps, w->ndeps)) return -1;
    }
    return 0;
}

typedef struct sm_dot_ctx {
    const sm_graph *g;
    FILE *f;
} sm_dot_ctx;

static int sm_dot_task(void *ctx, size_t task, const size_t *deps, int ndeps)
{
    sm_dot_ctx *d = ctx;
    const sm_task_record *r = sm_graph_task(d->g, task);
    fprintf(d->f, "  t%zu [label=\"%s\", fillcolor=\"%s\"];\n", task, r->name,
            sm_phase_info_of(r->meta.phase)->color);
    for (int i = 0; i < ndeps; i++) fprintf(d->f, "  t%zu -> t%zu;\n", deps[i], task);
    return 0;
}

int sm_graph_write_dot(const sm_graph *g, const char *path, sm_error *err)
{
    sm_dep_walk *w = sm_dep_walk_new();
    if (!w) return sm_fail(err, "%s: out of memory", path);
    FILE *f = fopen(path, "w");
    if (!f) {
        sm_dep_walk_free(w);
        return sm_fail(err, "%s: cannot open for writing", path);
    }
    sm_dot_ctx d = {g, f};
    fprintf(f, "digraph starmoe_step {\n  node [shape=box, style=filled, fontsize=9];\n");
    int rc = sm_graph_walk_deps(g, w, sm_dot_task, &d, err);
    fprintf(f, "}\n");
    sm_dep_walk_free(w);
    if (fclose(f) != 0 && rc == 0) return sm_fail(err, "%s: write failed", path);
    return rc ? sm_fail(err, "%s: out of memory in the dependency walk", path) : 0;
}
