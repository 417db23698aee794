/* The harness of the per-op codelet tests (tests/test_codelets.c): the implementations a case
 * runs on, a case's tensors with the values they must hold after its task, the task it must
 * record, routing plans for the MoE cases, and each op family's table of cases
 * (tests/codelets_<family>.c). */
#ifndef STARMOE_CODELET_HARNESS_H
#define STARMOE_CODELET_HARNESS_H

#include <stddef.h>
#include <starpu.h>
#include "graph/graph.h"
#include "tasks/codelet.h"
#include "tasks/moe_kernels.h"
#include "tests/testutil.h"

/* One implementation of the codelets: its tasks run on workers of one kind. */
typedef struct impl {
    const char *name;
    enum starpu_worker_archtype worker;
    int bitwise;                 /* runs the pure kernels' code: results must be bitwise equal */
} impl;

enum { MAX_TENSORS = 48 };

/* A tensor of a case. */
typedef struct ct {
    sm_tensor *t;
    void *ref;                   /* initial values, updated by the reference kernel */
    size_t numel;                /* elements of ref: the tensor's size after the task */
} ct;

/* A case being run: its graph, implementation, op context and tensors. */
typedef struct fx {
    sm_graph *g;
    const impl *im;
    sm_op_ctx c;
    tu_rng rng;
    sm_tensor_list owned;
    ct v[MAX_TENSORS];
    int n;
} fx;

/* the reference values as floats, int32 or doubles */
#define RF(x) ((float *)(x)->ref)
#define RI(x) ((int32_t *)(x)->ref)
#define RD(x) ((double *)(x)->ref)

/* A tensor of n elements holding `init` (zeros when NULL). */
ct *fx_tensor(fx *f, const char *name, sm_dtype dt, size_t n, const void *init);
/* n normal(0, std) floats; with a shift s, s + |x| instead (e.g. positive values). */
ct *fx_randn(fx *f, const char *name, size_t n, float std, float shift);
/* n normal(0, 1) floats */
ct *fx_rand(fx *f, const char *name, size_t n);
/* A resizable row tensor (graph.h) holding rows of `width` normal(0, 1) floats. */
ct *fx_rows(fx *f, const char *name, size_t rows, size_t width);
/* A resizable case tensor of rows * width elements of type dt holding `init`. */
ct *fx_rows_of(fx *f, const char *name, sm_dtype dt, size_t rows, size_t width,
               const void *init);
/* The size resizable case tensor x must have after the task: numel elements, its reference
 * values kept up to the old size (then zeros) for the reference kernel to write. */
void fx_resize(ct *x, size_t numel);
/* n int32 in [0, below) */
ct *fx_ids(fx *f, const char *name, size_t n, int below);
/* Releases the case's tensors, reference values and task records. */
void fx_end(fx *f);

/* What the case's one task must have recorded: op, flops and its n accesses in order. */
typedef struct want {
    const char *op;
    double flops;
    int n;
    const sm_access *acc;
} want;

#define WANT(op, flops, ...)                                                                   \
    ((want){(op), (flops), sizeof((sm_access[]){__VA_ARGS__}) / sizeof(sm_access),           \
            (sm_access[]){__VA_ARGS__}})

/* Waits for the case's task, checks its record and every tensor of the case, its size and its
 * values (two TAP lines named after `name`), and releases the case (fx_end). rc: what the
 * insert helper returned. */
void fx_check(fx *f, const char *name, int rc, want w);
/* One more TAP line for the case. */
void fx_expect(fx *f, int cond, const char *what);

/* The router geometry of the MoE cases. */
extern const sm_router_dims fx_router_dims;

/* A plan (with its mixing weights w and scores s) routed here from random u and Wg. */
typedef struct routed {
    ct *u, *Wg, *plan, *w, *s;
    int e;                       /* an expert past expert 0 with some tokens, not all */
} routed;

routed fx_route(fx *f, const sm_router_dims *r);

/* The case of insert helper sm_insert_<h> is case_<h>. */
typedef struct helper_case {
    const char *helper;
    void (*run)(fx *f);
} helper_case;

#define HELPER_CASE(h) {"sm_insert_" #h, case_##h}

/* Each family's cases, ending with {NULL, NULL}. */
extern const helper_case codelet_cases_dense[], codelet_cases_attention[], codelet_cases_moe[],
    codelet_cases_optim[], codelet_cases_mtp[], codelet_cases_mla_cache[], codelet_cases_fp8[];

#endif
