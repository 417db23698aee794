/* Per-op codelet tests through StarPU: every insert helper of tasks/ (dense, attention, MoE,
 * optimizer) runs on small tensors in an executing graph, once per implementation (the CPU
 * codelets now; each implementation is one entry of `impls`, selected by a scheduling context
 * of its workers), and is compared with its pure kernel called here on the same inputs
 * (bitwise where the implementation runs the same code). Its recorded task is checked too: op
 * name, buffers in the documented order with the weakest correct access modes (R inputs, W
 * pure outputs, RW only where a value is kept or accumulated), flops by the formula. Write
 * poisoning is on, so a kernel that reads a write-only buffer fails; the poisoning itself is
 * checked first. A helper declared in a tasks/ header without a case here fails the test. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <starmoe/model.h>
#include "tasks/attention.h"
#include "tasks/dense.h"
#include "tasks/dense_kernels.h"
#include "tasks/moe.h"
#include "tasks/optim.h"
#include "tests/tap.h"
#include "tests/testutil.h"

/* ---- implementations ---- */

typedef struct impl {
    const char *name;
    enum starpu_worker_archtype worker;
    int bitwise;                 /* runs the pure kernels' code: results must be bitwise equal */
} impl;

static const impl impls[] = {{"cpu", STARPU_CPU_WORKER, 1}};

/* ---- one case: tensors with the values they must hold after the task ---- */

enum { MAX_TENSORS = 48 };

typedef struct ct {
    sm_tensor *t;
    void *ref;                   /* initial values, updated by the reference kernel */
    size_t check;                /* leading elements compared (rows a W task leaves out) */
} ct;

typedef struct fx {
    sm_graph *g;
    const impl *im;
    sm_op_ctx c;
    tu_rng rng;
    sm_tensor_list owned;
    ct v[MAX_TENSORS];
    int n;
} fx;

#define RF(x) ((float *)(x)->ref)
#define RI(x) ((int32_t *)(x)->ref)
#define RD(x) ((double *)(x)->ref)

/* A tensor of n elements holding `init` (zeros when NULL). */
static ct *fx_tensor(fx *f, const char *name, sm_dtype dt, size_t n, const void *init)
{
    sm_error err = {{0}};
    ct *x = &f->v[f->n++];
    size_t bytes = n * sm_dtype_size(dt);
    x->t = sm_tensor_new_in(f->g, &f->owned, name, dt, SM_ACT, 1, (int64_t[]){(int64_t)n}, &err);
    x->ref = calloc(n ? n : 1, sm_dtype_size(dt));
    x->check = n;
    if (!x->t || !x->ref) {
        fprintf(stderr, "test_codelets: %s\n", x->t ? "out of memory" : err.msg);
        exit(1);
    }
    if (init) memcpy(x->ref, init, bytes);
    memcpy(sm_tensor_acquire(x->t, STARPU_W), x->ref, bytes);
    sm_tensor_release(x->t);
    return x;
}

/* n normal(0, std) floats, shifted by `shift` (e.g. positive values for an rstd). */
static ct *fx_randn(fx *f, const char *name, size_t n, float std, float shift)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    tu_fill(&f->rng, v, n, std);
    for (size_t i = 0; i < n; i++) v[i] = shift ? shift + fabsf(v[i]) : v[i];
    ct *x = fx_tensor(f, name, SM_F32, n, v);
    free(v);
    return x;
}

static ct *fx_rand(fx *f, const char *name, size_t n) { return fx_randn(f, name, n, 1, 0); }

/* n int32 in [0, below) */
static ct *fx_ids(fx *f, const char *name, size_t n, int below)
{
    int32_t *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = (int32_t)(tu_uniform(&f->rng) * below);
    ct *x = fx_tensor(f, name, SM_I32, n, v);
    free(v);
    return x;
}

static void fx_begin(fx *f)
{
    sm_graph_step_begin(f->g);
    f->n = 0;
}

/* Releases the case's tensors and reference copies. */
static void fx_end(fx *f)
{
    sm_graph_step_begin(f->g);
    sm_tensor_list_drop(f->g, &f->owned);
    for (int i = 0; i < f->n; i++) free(f->v[i].ref);
    f->n = 0;
}

/* What the case's one task must have recorded. */
typedef struct want {
    const char *op;
    double flops;
    int n;
    const sm_access *acc;
} want;

#define WANT(op, flops, ...)                                                                   \
    ((want){(op), (flops), sizeof((sm_access[]){__VA_ARGS__}) / sizeof(sm_access),           \
            (sm_access[]){__VA_ARGS__}})

static const char *mode_name(enum starpu_data_access_mode m)
{
    return m == STARPU_R ? "R" : m == STARPU_W ? "W" : m == STARPU_RW ? "RW" : "?";
}

/* The one recorded task: op, buffers and modes in order, flops, and where it ran. */
static int task_as_documented(fx *f, const char *name, want w)
{
    if (sm_graph_ntasks(f->g) != 1) {
        tap_diag("%s: %zu tasks recorded, want 1", name, sm_graph_ntasks(f->g));
        return 0;
    }
    const sm_task_record *r = sm_graph_task(f->g, 0);
    int ok = 1;
    if (strcmp(r->meta.op, w.op) != 0) {
        tap_diag("%s: op %s, want %s", name, r->meta.op, w.op);
        ok = 0;
    }
    if (fabs(r->flops - w.flops) > 1e-12 * fmax(1, fabs(w.flops))) {
        tap_diag("%s: %.17g flops, want %.17g", name, r->flops, w.flops);
        ok = 0;
    }
    if (r->naccess != w.n) {
        tap_diag("%s: %d buffers, want %d", name, r->naccess, w.n);
        return 0;
    }
    for (int i = 0; i < w.n; i++) {
        enum starpu_data_access_mode m;
        const sm_tensor *t = sm_graph_access(f->g, r, i, &m);
        if (t != w.acc[i].t || m != w.acc[i].mode) {
            tap_diag("%s: buffer %d is %s %s, want %s %s", name, i, mode_name(m), t->name,
                     mode_name(w.acc[i].mode), w.acc[i].t->name);
            ok = 0;
        }
    }
    if (!r->done || starpu_worker_get_type(r->worker) != f->im->worker) {
        tap_diag("%s: ran on worker %d, not a %s worker", name, r->worker, f->im->name);
        ok = 0;
    }
    return ok;
}

/* Element i of a and b of `size` bytes are the same (bitwise), or close floats. */
static int same_value(const fx *f, const void *a, const void *b, size_t i, size_t size,
                      sm_dtype dt)
{
    if (f->im->bitwise || dt != SM_F32)
        return memcmp((const char *)a + i * size, (const char *)b + i * size, size) == 0;
    float x = ((const float *)a)[i], y = ((const float *)b)[i];
    return fabsf(x - y) <= 1e-4f * (1 + fabsf(y)) || (isnan(x) && isnan(y));
}

/* Every tensor of the case holds its reference values. */
static int values_match(fx *f, const char *name)
{
    int ok = 1;
    for (int k = 0; k < f->n; k++) {
        const ct *x = &f->v[k];
        size_t size = sm_dtype_size(x->t->dtype);
        const void *got = sm_tensor_acquire(x->t, STARPU_R);
        for (size_t i = 0; i < x->check; i++)
            if (!same_value(f, got, x->ref, i, size, x->t->dtype)) {
                double g = x->t->dtype == SM_F32 ? ((const float *)got)[i]
                         : x->t->dtype == SM_I32 ? ((const int32_t *)got)[i]
                                                 : ((const double *)got)[i];
                double r = x->t->dtype == SM_F32 ? RF(x)[i]
                         : x->t->dtype == SM_I32 ? RI(x)[i] : RD(x)[i];
                tap_diag("%s: %s[%zu] = %.9g, the kernel gives %.9g", name, x->t->name, i, g, r);
                ok = 0;
                break;
            }
        sm_tensor_release(x->t);
    }
    return ok;
}

/* Waits for the case's task, checks its record and every tensor, and releases the case. */
static void fx_check(fx *f, const char *name, int rc, want w)
{
    sm_graph_wait(f->g);
    tap_ok(rc == 0 && task_as_documented(f, name, w),
           "%s %s: task recorded as documented (%s, %d buffers, modes, flops)", f->im->name,
           name, w.op, w.n);
    tap_ok(rc == 0 && values_match(f, name), "%s %s: outputs %s the kernel's, inputs unchanged",
           f->im->name, name, f->im->bitwise ? "bitwise equal to" : "close to");
    fx_end(f);
}

/* ---- dense ---- */

enum { T = 6, D = 8, V = 5, IN = 7, OUT = 5, I_FF = 6 };

static void case_embedding_fwd(fx *f)
{
    ct *x = fx_rand(f, "x", T * D), *ids = fx_ids(f, "ids", T, V), *E = fx_rand(f, "E", V * D);
    int rc = sm_insert_embedding_fwd(&f->c, x->t, ids->t, E->t, T, D);
    sm_embedding_fwd(RF(x), RI(ids), RF(E), T, D);
    fx_check(f, "embedding_fwd", rc,
             WANT("embedding_fwd", T * D, SM_W(x->t), SM_R(ids->t), SM_R(E->t)));
}

static void case_embedding_bwd(fx *f)
{
    ct *dE = fx_rand(f, "dE", V * D), *ids = fx_ids(f, "ids", T, V), *dx = fx_rand(f, "dx", T * D);
    int rc = sm_insert_embedding_bwd(&f->c, dE->t, ids->t, dx->t, T, D);
    sm_embedding_bwd(RF(dE), RI(ids), RF(dx), T, D);
    fx_check(f, "embedding_bwd", rc,
             WANT("embedding_bwd", T * D, SM_RW(dE->t), SM_R(ids->t), SM_R(dx->t)));
}

static void case_rmsnorm_fwd(fx *f)
{
    for (int wide = 0; wide < 2; wide++) {
        int ldx = D + 3 * wide;
        char name[64];
        snprintf(name, sizeof name, "rmsnorm_fwd ldx %d", ldx);
        ct *y = fx_rand(f, "y", T * D), *rstd = fx_rand(f, "rstd", T);
        ct *x = fx_rand(f, "x", T * ldx), *g = fx_rand(f, "g", D);
        int rc = sm_insert_rmsnorm_fwd(&f->c, y->t, rstd->t, x->t, ldx, g->t, T, D, 1e-6f);
        sm_rmsnorm_fwd(RF(y), RF(rstd), RF(x), ldx, RF(g), T, D, 1e-6f);
        fx_check(f, name, rc,
                 WANT("rmsnorm_fwd", 4.0 * T * D, SM_W(y->t), SM_W(rstd->t), SM_R(x->t),
                      SM_R(g->t)));
    }
}

static void case_rmsnorm_bwd(fx *f)
{
    for (int accumulate = 0; accumulate < 2; accumulate++)
        for (int wide = 0; wide < 2; wide++) {
            int ld = D + 2 * wide;
            char name[64];
            snprintf(name, sizeof name, "rmsnorm_bwd accumulate %d ld %d", accumulate, ld);
            ct *dx = fx_rand(f, "dx", T * ld), *dg = fx_rand(f, "dg", D);
            ct *dy = fx_rand(f, "dy", T * D), *x = fx_rand(f, "x", T * ld);
            ct *g = fx_rand(f, "g", D), *rstd = fx_randn(f, "rstd", T, 0.2f, 0.5f);
            int rc = sm_insert_rmsnorm_bwd(&f->c, dx->t, ld, dg->t, dy->t, x->t, ld, g->t,
                                           rstd->t, T, D, accumulate);
            sm_rmsnorm_bwd(RF(dx), ld, RF(dg), RF(dy), RF(x), ld, RF(g), RF(rstd), T, D,
                           accumulate);
            /* a dx wider than the rows keeps its other columns: read-write */
            fx_check(f, name, rc,
                     WANT("rmsnorm_bwd", 8.0 * T * D, SM_ACC(dx->t, accumulate || wide),
                          SM_RW(dg->t), SM_R(dy->t), SM_R(x->t), SM_R(g->t), SM_R(rstd->t)));
        }
}

static void case_linear_fwd(fx *f)
{
    for (int residual = 0; residual < 2; residual++) {
        ct *y = fx_rand(f, "y", T * OUT), *x = fx_rand(f, "x", T * IN);
        ct *W = fx_rand(f, "W", OUT * IN), *res = fx_rand(f, "res", T * OUT);
        int rc = sm_insert_linear_fwd(&f->c, y->t, x->t, W->t, residual ? res->t : NULL, T, IN,
                                      OUT);
        sm_linear_fwd(RF(y), RF(x), RF(W), T, IN, OUT);
        for (int i = 0; residual && i < T * OUT; i++) RF(y)[i] += RF(res)[i];
        double flops = 2.0 * T * IN * OUT;
        if (residual)
            fx_check(f, "linear_fwd residual", rc,
                     WANT("linear_fwd", flops, SM_W(y->t), SM_R(x->t), SM_R(W->t),
                          SM_R(res->t)));
        else
            fx_check(f, "linear_fwd", rc,
                     WANT("linear_fwd", flops, SM_W(y->t), SM_R(x->t), SM_R(W->t)));
    }
}

static void case_linear_bwd_input(fx *f)
{
    for (int accumulate = 0; accumulate < 2; accumulate++) {
        ct *dx = fx_rand(f, "dx", T * IN), *dy = fx_rand(f, "dy", T * OUT);
        ct *W = fx_rand(f, "W", OUT * IN);
        int rc = sm_insert_linear_bwd_input(&f->c, dx->t, dy->t, W->t, T, IN, OUT, accumulate);
        sm_linear_bwd_input(RF(dx), RF(dy), RF(W), T, IN, OUT, accumulate);
        fx_check(f, accumulate ? "linear_bwd_input accumulate" : "linear_bwd_input", rc,
                 WANT("linear_bwd_input", 2.0 * T * IN * OUT, SM_ACC(dx->t, accumulate),
                      SM_R(dy->t), SM_R(W->t)));
    }
}

static void case_linear_bwd_weight(fx *f)
{
    ct *dW = fx_rand(f, "dW", OUT * IN), *dy = fx_rand(f, "dy", T * OUT);
    ct *x = fx_rand(f, "x", T * IN);
    int rc = sm_insert_linear_bwd_weight(&f->c, dW->t, dy->t, x->t, T, IN, OUT);
    sm_linear_bwd_weight(RF(dW), RF(dy), RF(x), T, IN, OUT);
    fx_check(f, "linear_bwd_weight", rc,
             WANT("linear_bwd_weight", 2.0 * T * IN * OUT, SM_RW(dW->t), SM_R(dy->t),
                  SM_R(x->t)));
}

/* ---- MoE geometry shared by routed experts and the MoE family ---- */

static const sm_router_dims router_dims = {.T = 8, .d = 6, .E = 8, .K = 2, .G = 4, .Gk = 2,
                                   .route_scale = 2.5f, .norm_topk = 1};

/* A plan (with its w and s) routed from random u and Wg, computed here. */
typedef struct routed {
    ct *u, *Wg, *plan, *w, *s;
    int e;                       /* an expert with some tokens, not all */
    int count;                   /* its tokens */
} routed;

static routed fx_route(fx *f, const sm_router_dims *r)
{
    routed x = {.u = fx_rand(f, "u", r->T * r->d), .Wg = fx_rand(f, "Wg", r->E * r->d)};
    int32_t *plan = calloc(sm_moe_plan_len(r->T, r->K, r->E), sizeof *plan);
    float *w = malloc(r->T * r->K * sizeof *w), *s = malloc(r->T * r->E * sizeof *s);
    sm_router_fwd(plan, w, s, RF(x.u), RF(x.Wg), NULL, r);
    x.plan = fx_tensor(f, "plan", SM_I32, sm_moe_plan_len(r->T, r->K, r->E), plan);
    x.w = fx_tensor(f, "w", SM_F32, r->T * r->K, w);
    x.s = fx_tensor(f, "s", SM_F32, r->T * r->E, s);
    const int32_t *count = sm_plan_count(plan, r->T, r->K, r->E);
    x.e = 0;
    for (int e = 0; e < r->E; e++)
        if (count[e] > count[x.e] && count[e] < r->T) x.e = e;
    x.count = count[x.e];
    free(plan);
    free(w);
    free(s);
    return x;
}

/* ---- SwiGLU: a dense FFN over T rows, or routed expert e over its rows of a capacity T ---- */

typedef struct ffn {
    sm_ffn_shape s;
    int rows;                    /* rows the task works on */
    const char *kind;            /* "ffn" or "expert" */
    double mean_rows;            /* rows the flops count */
} ffn;

static ffn fx_ffn(fx *f, int routed_expert, ct **plan)
{
    ffn x = {.s = {.n = T, .d = D, .I = I_FF, .expert = -1}, .rows = T, .kind = "ffn",
             .mean_rows = T};
    *plan = NULL;
    if (!routed_expert) return x;
    sm_router_dims r = router_dims;
    r.d = D;
    routed rt = fx_route(f, &r);
    *plan = rt.plan;
    x.s = (sm_ffn_shape){.n = r.T, .d = D, .I = I_FF, .plan = rt.plan->t, .expert = rt.e,
                         .T = r.T, .K = r.K, .E = r.E};
    x.rows = rt.count;
    x.kind = "expert";
    x.mean_rows = (double)r.T * r.K / r.E;
    return x;
}

/* "<kind>_<suffix>" */
static const char *ffn_op(const ffn *x, const char *suffix, char *buf, size_t size)
{
    snprintf(buf, size, "%s_%s", x->kind, suffix);
    return buf;
}

/* Its plan as the last buffer of acc (n entries before it); returns the count. */
static int with_plan(sm_access *acc, int n, ct *plan)
{
    if (plan) acc[n++] = SM_R(plan->t);
    return n;
}

static void case_swiglu_fwd(fx *f)
{
    for (int variant = 0; variant < 3; variant++) {
        int routed_expert = variant == 2, residual = variant == 1;
        ct *plan;
        ffn x = fx_ffn(f, routed_expert, &plan);
        int n = x.s.n, rows = x.rows;
        ct *y = fx_rand(f, "y", n * D), *h1 = fx_rand(f, "h1", n * I_FF);
        ct *h3 = fx_rand(f, "h3", n * I_FF), *in = fx_rand(f, "x", n * D);
        ct *W1 = fx_rand(f, "W1", I_FF * D), *W3 = fx_rand(f, "W3", I_FF * D);
        ct *W2 = fx_rand(f, "W2", D * I_FF), *res = fx_rand(f, "res", n * D);
        int rc = sm_insert_swiglu_fwd(&f->c, &x.s, y->t, h1->t, h3->t, in->t, W1->t, W3->t,
                                      W2->t, residual ? res->t : NULL);
        sm_swiglu_fwd(RF(y), RF(h1), RF(h3), RF(in), RF(W1), RF(W3), RF(W2), rows, D, I_FF);
        for (int i = 0; residual && i < rows * D; i++) RF(y)[i] += RF(res)[i];
        y->check = (size_t)rows * D;
        h1->check = h3->check = (size_t)rows * I_FF;
        sm_access acc[10] = {SM_W(y->t), SM_W(h1->t), SM_W(h3->t), SM_R(in->t), SM_R(W1->t),
                             SM_R(W3->t), SM_R(W2->t), SM_R(res->t)};
        char op[32], name[64];
        snprintf(name, sizeof name, "swiglu_fwd %s%s", x.kind, residual ? " residual" : "");
        fx_check(f, name, rc,
                 (want){ffn_op(&x, "fwd", op, sizeof op), 3 * 2.0 * x.mean_rows * D * I_FF,
                        with_plan(acc, 7 + residual, plan), acc});
    }
}

static void case_swiglu_bwd_input(fx *f)
{
    for (int variant = 0; variant < 3; variant++) {
        int routed_expert = variant == 2, accumulate = variant == 1;
        ct *plan;
        ffn x = fx_ffn(f, routed_expert, &plan);
        int n = x.s.n, rows = x.rows;
        ct *dx = fx_rand(f, "dx", n * D), *dh1 = fx_rand(f, "dh1", n * I_FF);
        ct *dh3 = fx_rand(f, "dh3", n * I_FF), *dy = fx_rand(f, "dy", n * D);
        ct *h1 = fx_rand(f, "h1", n * I_FF), *h3 = fx_rand(f, "h3", n * I_FF);
        ct *W1 = fx_rand(f, "W1", I_FF * D), *W3 = fx_rand(f, "W3", I_FF * D);
        ct *W2 = fx_rand(f, "W2", D * I_FF);
        int rc = sm_insert_swiglu_bwd_input(&f->c, &x.s, dx->t, dh1->t, dh3->t, dy->t, h1->t,
                                            h3->t, W1->t, W3->t, W2->t, accumulate);
        sm_swiglu_bwd_input(RF(dx), RF(dh1), RF(dh3), RF(dy), RF(h1), RF(h3), RF(W1), RF(W3),
                            RF(W2), rows, D, I_FF, accumulate);
        if (!accumulate) dx->check = (size_t)rows * D;
        dh1->check = dh3->check = (size_t)rows * I_FF;
        sm_access acc[10] = {SM_ACC(dx->t, accumulate), SM_W(dh1->t), SM_W(dh3->t),
                             SM_R(dy->t), SM_R(h1->t), SM_R(h3->t), SM_R(W1->t), SM_R(W3->t),
                             SM_R(W2->t)};
        char op[32], name[64];
        snprintf(name, sizeof name, "swiglu_bwd_input %s%s", x.kind,
                 accumulate ? " accumulate" : "");
        fx_check(f, name, rc,
                 (want){ffn_op(&x, "bwd_input", op, sizeof op),
                        3 * 2.0 * x.mean_rows * D * I_FF, with_plan(acc, 9, plan), acc});
    }
}

static void case_swiglu_bwd_weight(fx *f)
{
    for (int routed_expert = 0; routed_expert < 2; routed_expert++) {
        ct *plan;
        ffn x = fx_ffn(f, routed_expert, &plan);
        int n = x.s.n;
        ct *dW1 = fx_rand(f, "dW1", I_FF * D), *dW3 = fx_rand(f, "dW3", I_FF * D);
        ct *dW2 = fx_rand(f, "dW2", D * I_FF), *dy = fx_rand(f, "dy", n * D);
        ct *in = fx_rand(f, "x", n * D), *h1 = fx_rand(f, "h1", n * I_FF);
        ct *h3 = fx_rand(f, "h3", n * I_FF), *dh1 = fx_rand(f, "dh1", n * I_FF);
        ct *dh3 = fx_rand(f, "dh3", n * I_FF);
        int rc = sm_insert_swiglu_bwd_weight(&f->c, &x.s, dW1->t, dW3->t, dW2->t, dy->t, in->t,
                                             h1->t, h3->t, dh1->t, dh3->t);
        sm_swiglu_bwd_weight(RF(dW1), RF(dW3), RF(dW2), RF(dy), RF(in), RF(h1), RF(h3),
                             RF(dh1), RF(dh3), x.rows, D, I_FF);
        sm_access acc[10] = {SM_RW(dW1->t), SM_RW(dW3->t), SM_RW(dW2->t), SM_R(dy->t),
                             SM_R(in->t), SM_R(h1->t), SM_R(h3->t), SM_R(dh1->t),
                             SM_R(dh3->t)};
        char op[32], name[64];
        snprintf(name, sizeof name, "swiglu_bwd_weight %s", x.kind);
        fx_check(f, name, rc,
                 (want){ffn_op(&x, "bwd_weight", op, sizeof op),
                        3 * 2.0 * x.mean_rows * D * I_FF, with_plan(acc, 9, plan), acc});
    }
}

static void case_swiglu_bwd(fx *f)
{
    for (int variant = 0; variant < 3; variant++) {
        int routed_expert = variant == 2, accumulate = variant == 1;
        ct *plan;
        ffn x = fx_ffn(f, routed_expert, &plan);
        int n = x.s.n, rows = x.rows;
        ct *dx = fx_rand(f, "dx", n * D), *dh1 = fx_rand(f, "dh1", n * I_FF);
        ct *dh3 = fx_rand(f, "dh3", n * I_FF), *dW1 = fx_rand(f, "dW1", I_FF * D);
        ct *dW3 = fx_rand(f, "dW3", I_FF * D), *dW2 = fx_rand(f, "dW2", D * I_FF);
        ct *dy = fx_rand(f, "dy", n * D), *in = fx_rand(f, "x", n * D);
        ct *h1 = fx_rand(f, "h1", n * I_FF), *h3 = fx_rand(f, "h3", n * I_FF);
        ct *W1 = fx_rand(f, "W1", I_FF * D), *W3 = fx_rand(f, "W3", I_FF * D);
        ct *W2 = fx_rand(f, "W2", D * I_FF);
        sm_ffn_grads g = {dx->t, dh1->t, dh3->t, dW1->t, dW3->t, dW2->t};
        int rc = sm_insert_swiglu_bwd(&f->c, &x.s, &g, dy->t, in->t, h1->t, h3->t, W1->t, W3->t,
                                      W2->t, accumulate);
        sm_swiglu_bwd_input(RF(dx), RF(dh1), RF(dh3), RF(dy), RF(h1), RF(h3), RF(W1), RF(W3),
                            RF(W2), rows, D, I_FF, accumulate);
        sm_swiglu_bwd_weight(RF(dW1), RF(dW3), RF(dW2), RF(dy), RF(in), RF(h1), RF(h3),
                             RF(dh1), RF(dh3), rows, D, I_FF);
        if (!accumulate) dx->check = (size_t)rows * D;
        dh1->check = dh3->check = (size_t)rows * I_FF;
        sm_access acc[14] = {SM_ACC(dx->t, accumulate), SM_W(dh1->t), SM_W(dh3->t),
                             SM_RW(dW1->t), SM_RW(dW3->t), SM_RW(dW2->t), SM_R(dy->t),
                             SM_R(in->t), SM_R(h1->t), SM_R(h3->t), SM_R(W1->t), SM_R(W3->t),
                             SM_R(W2->t)};
        char op[32], name[64];
        snprintf(name, sizeof name, "swiglu_bwd %s%s", x.kind, accumulate ? " accumulate" : "");
        fx_check(f, name, rc,
                 (want){ffn_op(&x, "bwd", op, sizeof op), 6 * 2.0 * x.mean_rows * D * I_FF,
                        with_plan(acc, 13, plan), acc});
    }
}

/* ---- loss and utilities ---- */

static void case_cross_entropy(fx *f)
{
    for (int with_grad = 0; with_grad < 2; with_grad++) {
        ct *loss = fx_rand(f, "loss", 1), *dlogits = fx_rand(f, "dlogits", T * V);
        ct *logits = fx_rand(f, "logits", T * V), *targets = fx_ids(f, "targets", T, V);
        int rc = sm_insert_cross_entropy(&f->c, loss->t, with_grad ? dlogits->t : NULL,
                                         logits->t, targets->t, T, V, 0.25f);
        RF(loss)[0] = (float)sm_cross_entropy(with_grad ? RF(dlogits) : NULL, RF(logits),
                                              RI(targets), T, V, 0.25f);
        if (with_grad)
            fx_check(f, "cross_entropy with gradient", rc,
                     WANT("cross_entropy", 5.0 * T * V, SM_W(loss->t), SM_R(logits->t),
                          SM_R(targets->t), SM_W(dlogits->t)));
        else
            fx_check(f, "cross_entropy", rc,
                     WANT("cross_entropy", 5.0 * T * V, SM_W(loss->t), SM_R(logits->t),
                          SM_R(targets->t)));
    }
}

static void case_sum_scalars(fx *f)
{
    ct *out = fx_rand(f, "out", 1), *p[3] = {fx_rand(f, "p0", 1), fx_rand(f, "p1", 1),
                                             fx_rand(f, "p2", 1)};
    sm_tensor *parts[3] = {p[0]->t, p[1]->t, p[2]->t};
    int rc = sm_insert_sum_scalars(&f->c, out->t, parts, 3, 0.5f);
    double s = 0;
    for (int i = 0; i < 3; i++) s += RF(p[i])[0];
    RF(out)[0] = (float)(s * 0.5f);
    fx_check(f, "sum_scalars", rc,
             WANT("sum_scalars", 3, SM_W(out->t), SM_R(parts[0]), SM_R(parts[1]),
                  SM_R(parts[2])));
}

static void case_copy(fx *f)
{
    ct *dst = fx_rand(f, "dst", 10), *src = fx_rand(f, "src", 10);
    ct *other = fx_rand(f, "other", 11);
    tap_ok(sm_insert_copy(&f->c, SM_FORWARD, other->t, src->t) == -1 &&
               sm_graph_ntasks(f->g) == 0,
           "%s copy: tensors of different sizes are refused", f->im->name);
    int rc = sm_insert_copy(&f->c, SM_FORWARD, dst->t, src->t);
    memcpy(dst->ref, src->ref, 10 * sizeof(float));
    fx_check(f, "copy", rc, WANT("copy", 0, SM_W(dst->t), SM_R(src->t)));
}

static void case_sum_tensors(fx *f)
{
    for (int accumulate = 0; accumulate < 2; accumulate++) {
        ct *out = fx_rand(f, "out", 9), *s[3] = {fx_rand(f, "s0", 9), fx_rand(f, "s1", 9),
                                                 fx_rand(f, "s2", 9)};
        sm_tensor *srcs[3] = {s[0]->t, s[1]->t, s[2]->t};
        const float *src[3] = {RF(s[0]), RF(s[1]), RF(s[2])};
        int rc = sm_insert_sum_tensors(&f->c, out->t, srcs, 3, accumulate);
        sm_sum_into(RF(out), src, 3, 9, accumulate);
        fx_check(f, accumulate ? "sum_tensors accumulate" : "sum_tensors", rc,
                 WANT("grad_reduce", 3.0 * 9, SM_ACC(out->t, accumulate), SM_R(srcs[0]),
                      SM_R(srcs[1]), SM_R(srcs[2])));
    }
}

static void case_zero(fx *f)
{
    ct *t = fx_rand(f, "t", 13);
    int rc = sm_insert_zero(&f->c, t->t);
    memset(t->ref, 0, 13 * sizeof(float));
    fx_check(f, "zero", rc, WANT("zero", 0, SM_W(t->t)));
}

static void case_nop(fx *f)
{
    ct *t = fx_rand(f, "t", 4);
    int rc = sm_insert_nop(&f->c, t->t);
    fx_check(f, "nop", rc, WANT("nop", 0, SM_RW(t->t)));
}

/* ---- MLA attention ---- */

static sm_mla_dims mla_dims(void)
{
    sm_mla_dims m = {.B = 2, .S = 4, .H = 2, .dn = 3, .dr = 4, .dv = 3, .dc = 5};
    m.scale = (float)sm_mla_softmax_scale(m.dn + m.dr, NULL);
    return m;
}

/* q, kv, kvu and the rope tables of one attention problem */
typedef struct attn_in {
    ct *q, *kv, *kvu, *cos_t, *sin_t;
} attn_in;

static attn_in fx_attn_in(fx *f, const sm_mla_dims *m)
{
    int T_ = m->B * m->S;
    double theta[8];
    float cos_t[4 * 2], sin_t[4 * 2];
    sm_rope_freqs(theta, m->dr, 10000.0, NULL);
    sm_rope_table(cos_t, sin_t, theta, m->S, m->dr);
    return (attn_in){fx_rand(f, "q", T_ * m->H * (m->dn + m->dr)),
                     fx_rand(f, "kv", T_ * (m->dc + m->dr)),
                     fx_rand(f, "kvu", T_ * m->H * (m->dn + m->dv)),
                     fx_tensor(f, "cos", SM_F32, m->S * m->dr / 2, cos_t),
                     fx_tensor(f, "sin", SM_F32, m->S * m->dr / 2, sin_t)};
}

static double attn_flops(const sm_mla_dims *m)
{
    return (double)m->B * m->H * m->S * (m->S + 1) * (m->dn + m->dr + m->dv);
}

static void case_mla_attn_fwd(fx *f)
{
    sm_mla_dims m = mla_dims();
    int T_ = m.B * m.S;
    attn_in a = fx_attn_in(f, &m);
    ct *o = fx_rand(f, "o", T_ * m.H * m.dv), *P = fx_rand(f, "P", m.B * m.H * m.S * m.S);
    int rc = sm_insert_mla_attn_fwd(&f->c, &m, o->t, P->t, a.q->t, a.kv->t, a.kvu->t,
                                    a.cos_t->t, a.sin_t->t);
    sm_mla_attn_fwd(RF(o), RF(P), RF(a.q), RF(a.kv), RF(a.kvu), RF(a.cos_t), RF(a.sin_t), &m);
    fx_check(f, "mla_attn_fwd", rc,
             WANT("attention_fwd", attn_flops(&m), SM_W(o->t), SM_W(P->t), SM_R(a.q->t),
                  SM_R(a.kv->t), SM_R(a.kvu->t), SM_R(a.cos_t->t), SM_R(a.sin_t->t)));
}

static void case_mla_attn_bwd(fx *f)
{
    sm_mla_dims m = mla_dims();
    int T_ = m.B * m.S, nP = m.B * m.H * m.S * m.S;
    attn_in a = fx_attn_in(f, &m);
    float *o = malloc(T_ * m.H * m.dv * sizeof *o), *p = malloc(nP * sizeof *p);
    sm_mla_attn_fwd(o, p, RF(a.q), RF(a.kv), RF(a.kvu), RF(a.cos_t), RF(a.sin_t), &m);
    ct *P = fx_tensor(f, "P", SM_F32, nP, p);
    ct *dq = fx_rand(f, "dq", T_ * m.H * (m.dn + m.dr)), *dkpe = fx_rand(f, "dkpe", T_ * m.dr);
    ct *dkvu = fx_rand(f, "dkvu", T_ * m.H * (m.dn + m.dv));
    ct *dout = fx_rand(f, "dout", T_ * m.H * m.dv);
    free(o);
    free(p);
    int rc = sm_insert_mla_attn_bwd(&f->c, &m, dq->t, dkpe->t, dkvu->t, dout->t, P->t, a.q->t,
                                    a.kv->t, a.kvu->t, a.cos_t->t, a.sin_t->t);
    sm_mla_attn_bwd(RF(dq), RF(dkpe), RF(dkvu), RF(dout), RF(P), RF(a.q), RF(a.kv), RF(a.kvu),
                    RF(a.cos_t), RF(a.sin_t), &m);
    fx_check(f, "mla_attn_bwd", rc,
             WANT("attention_bwd", 2 * attn_flops(&m), SM_W(dq->t), SM_W(dkpe->t),
                  SM_W(dkvu->t), SM_R(dout->t), SM_R(P->t), SM_R(a.q->t), SM_R(a.kv->t),
                  SM_R(a.kvu->t), SM_R(a.cos_t->t), SM_R(a.sin_t->t)));
}

static void case_kv_norm_bwd(fx *f)
{
    enum { DC = 5, DR = 4, LD = DC + DR };
    ct *dkv = fx_rand(f, "dkv", T * LD), *dg = fx_rand(f, "dg", DC);
    ct *dkvn = fx_rand(f, "dkvn", T * DC), *kv = fx_rand(f, "kv", T * LD);
    ct *g = fx_rand(f, "g", DC), *rstd = fx_randn(f, "rstd", T, 0.2f, 0.5f);
    ct *dkpe = fx_rand(f, "dkpe", T * DR);
    int rc = sm_insert_kv_norm_bwd(&f->c, dkv->t, dg->t, dkvn->t, kv->t, g->t, rstd->t, dkpe->t,
                                   T, DC, DR);
    sm_rmsnorm_bwd(RF(dkv), LD, RF(dg), RF(dkvn), RF(kv), LD, RF(g), RF(rstd), T, DC, 0);
    for (int t = 0; t < T; t++)
        memcpy(RF(dkv) + t * LD + DC, RF(dkpe) + t * DR, DR * sizeof(float));
    fx_check(f, "kv_norm_bwd", rc,
             WANT("kv_norm_bwd", 8.0 * T * DC, SM_W(dkv->t), SM_RW(dg->t), SM_R(dkvn->t),
                  SM_R(kv->t), SM_R(g->t), SM_R(rstd->t), SM_R(dkpe->t)));
}

/* ---- MoE ---- */

enum { MAXE = 8 };

static void case_router_fwd(fx *f)
{
    const sm_router_dims *r = &router_dims;
    for (int variant = 0; variant < 2; variant++) {
        int with_bias = variant == 1;
        sm_balance bal = {.S = 4, .coef = variant ? 0.01f : 0};
        int np = sm_moe_plan_len(r->T, r->K, r->E);
        ct *plan = fx_ids(f, "plan", np, 100), *w = fx_rand(f, "w", r->T * r->K);
        ct *s = fx_rand(f, "s", r->T * r->E), *bl = fx_rand(f, "bal_loss", 1);
        ct *u = fx_rand(f, "u", r->T * r->d), *Wg = fx_rand(f, "Wg", r->E * r->d);
        ct *bias = fx_randn(f, "bias", r->E, 0.1f, 0);
        int rc = sm_insert_router_fwd(&f->c, r, &bal, plan->t, w->t, s->t, bl->t, u->t, Wg->t,
                                      with_bias ? bias->t : NULL);
        sm_router_fwd(RI(plan), RF(w), RF(s), RF(u), RF(Wg), with_bias ? RF(bias) : NULL, r);
        RF(bl)[0] = bal.coef > 0 ? (float)sm_balance_loss(NULL, RF(s), RI(plan), r->T, bal.S,
                                                          r->K, r->E, bal.coef)
                                 : 0.0f;
        double flops = 2.0 * r->T * r->d * r->E;
        if (with_bias)
            fx_check(f, "router_fwd bias balance", rc,
                     WANT("router_fwd", flops, SM_W(plan->t), SM_W(w->t), SM_W(s->t),
                          SM_W(bl->t), SM_R(u->t), SM_R(Wg->t), SM_R(bias->t)));
        else
            fx_check(f, "router_fwd", rc,
                     WANT("router_fwd", flops, SM_W(plan->t), SM_W(w->t), SM_W(s->t),
                          SM_W(bl->t), SM_R(u->t), SM_R(Wg->t)));
    }
}

static void case_router_bwd(fx *f)
{
    const sm_router_dims *r = &router_dims;
    for (int variant = 0; variant < 2; variant++) {
        int accumulate = variant;
        sm_balance bal = {.S = 4, .coef = variant ? 0.01f : 0};
        routed rt = fx_route(f, r);
        ct *du = fx_rand(f, "du", r->T * r->d), *dWg = fx_rand(f, "dWg", r->E * r->d);
        ct *dge[MAXE];
        sm_tensor *dget[MAXE];
        const float *dgep[MAXE];
        sm_access acc[6 + MAXE] = {SM_ACC(du->t, accumulate), SM_RW(dWg->t), SM_R(rt.s->t),
                                   SM_R(rt.plan->t), SM_R(rt.u->t), SM_R(rt.Wg->t)};
        for (int e = 0; e < r->E; e++) {
            dge[e] = fx_rand(f, "dge", r->T);
            dget[e] = dge[e]->t;
            dgep[e] = RF(dge[e]);
            acc[6 + e] = SM_R(dget[e]);
        }
        int rc = sm_insert_router_bwd(&f->c, r, &bal, du->t, dWg->t, dget, rt.s->t, rt.plan->t,
                                      rt.u->t, rt.Wg->t, accumulate);
        float dw[8 * 2], ds[8 * 8];
        sm_moe_collect_dw(dw, dgep, RI(rt.plan), r->T, r->K, r->E);
        if (bal.coef > 0)
            sm_balance_loss(ds, RF(rt.s), RI(rt.plan), r->T, bal.S, r->K, r->E, bal.coef);
        sm_router_bwd(RF(du), RF(dWg), dw, bal.coef > 0 ? ds : NULL, RF(rt.s), RI(rt.plan),
                      RF(rt.u), RF(rt.Wg), r, accumulate);
        fx_check(f, variant ? "router_bwd accumulate balance" : "router_bwd", rc,
                 (want){"router_bwd", 4.0 * r->T * r->d * r->E, 6 + r->E, acc});
    }
}

static void case_moe_dispatch(fx *f)
{
    const sm_router_dims *r = &router_dims;
    routed rt = fx_route(f, r);
    ct *xe = fx_rand(f, "xe", r->T * r->d);
    int rc = sm_insert_moe_dispatch(&f->c, r, rt.e, xe->t, rt.u->t, rt.plan->t);
    sm_moe_gather(RF(xe), RF(rt.u), RI(rt.plan), rt.e, r->T, r->K, r->E, r->d);
    xe->check = (size_t)rt.count * r->d;
    fx_check(f, "moe_dispatch", rc,
             WANT("dispatch", (double)r->T * r->K / r->E * r->d, SM_W(xe->t), SM_R(rt.u->t),
                  SM_R(rt.plan->t)));
}

static void case_moe_dispatch_bwd(fx *f)
{
    const sm_router_dims *r = &router_dims;
    for (int accumulate = 0; accumulate < 2; accumulate++) {
        routed rt = fx_route(f, r);
        ct *du = fx_rand(f, "du", r->T * r->d);
        sm_tensor *dxe[MAXE];
        const float *dxep[MAXE];
        sm_access acc[2 + MAXE] = {SM_ACC(du->t, accumulate), SM_R(rt.plan->t)};
        for (int e = 0; e < r->E; e++) {
            ct *x = fx_rand(f, "dxe", r->T * r->d);
            dxe[e] = x->t;
            dxep[e] = RF(x);
            acc[2 + e] = SM_R(x->t);
        }
        int rc = sm_insert_moe_dispatch_bwd(&f->c, r, du->t, dxe, rt.plan->t, accumulate);
        sm_moe_gather_bwd(RF(du), dxep, RI(rt.plan), r->T, r->K, r->E, r->d, accumulate);
        fx_check(f, accumulate ? "moe_dispatch_bwd accumulate" : "moe_dispatch_bwd", rc,
                 (want){"dispatch_bwd", (double)r->T * r->K * r->d, 2 + r->E, acc});
    }
}

static void case_moe_combine(fx *f)
{
    const sm_router_dims *r = &router_dims;
    for (int extras = 0; extras < 2; extras++) {
        routed rt = fx_route(f, r);
        ct *y = fx_rand(f, "y", r->T * r->d), *shared = fx_rand(f, "shared", r->T * r->d);
        ct *res = fx_rand(f, "res", r->T * r->d);
        sm_tensor *ye[MAXE];
        const float *yep[MAXE];
        sm_access acc[5 + MAXE] = {SM_W(y->t), SM_R(rt.w->t), SM_R(rt.plan->t)};
        int n = 3;
        for (int e = 0; e < r->E; e++) {
            ct *x = fx_rand(f, "ye", r->T * r->d);
            ye[e] = x->t;
            yep[e] = RF(x);
            acc[n++] = SM_R(x->t);
        }
        if (extras) {
            acc[n++] = SM_R(shared->t);
            acc[n++] = SM_R(res->t);
        }
        int rc = sm_insert_moe_combine(&f->c, r, y->t, ye, extras ? shared->t : NULL, rt.w->t,
                                       rt.plan->t, extras ? res->t : NULL);
        sm_moe_combine(RF(y), yep, extras ? RF(shared) : NULL, RF(rt.w), RI(rt.plan), r->T, r->K,
                       r->E, r->d);
        for (int i = 0; extras && i < r->T * r->d; i++) RF(y)[i] += RF(res)[i];
        fx_check(f, extras ? "moe_combine shared residual" : "moe_combine", rc,
                 (want){"combine", 2.0 * r->T * r->K * r->d, n, acc});
    }
}

static void case_moe_combine_bwd(fx *f)
{
    const sm_router_dims *r = &router_dims;
    routed rt = fx_route(f, r);
    ct *dye = fx_rand(f, "dye", r->T * r->d), *dge = fx_rand(f, "dge", r->T);
    ct *dy = fx_rand(f, "dy", r->T * r->d), *ye = fx_rand(f, "ye", r->T * r->d);
    int rc = sm_insert_moe_combine_bwd(&f->c, r, rt.e, dye->t, dge->t, dy->t, ye->t, rt.w->t,
                                       rt.plan->t);
    sm_moe_combine_bwd(RF(dye), RF(dge), RF(dy), RF(ye), RF(rt.w), RI(rt.plan), rt.e, r->T, r->K,
                       r->E, r->d);
    dye->check = (size_t)rt.count * r->d;
    dge->check = rt.count;
    fx_check(f, "moe_combine_bwd", rc,
             WANT("combine_bwd", 3.0 * r->T * r->K / r->E * r->d, SM_W(dye->t), SM_W(dge->t),
                  SM_R(dy->t), SM_R(ye->t), SM_R(rt.w->t), SM_R(rt.plan->t)));
}

/* ---- optimizer ---- */

enum { NG = 3 };
static const int group_sizes[NG] = {5, 7, 3};

static void case_grad_sumsq(fx *f)
{
    ct *sumsq = fx_tensor(f, "sumsq", SM_F64, 1, (double[]){7.0});
    sm_tensor *g[NG];
    sm_access acc[1 + NG] = {SM_W(sumsq->t)};
    double s = 0, numel = 0;
    for (int i = 0; i < NG; i++) {
        ct *x = fx_rand(f, "g", group_sizes[i]);
        g[i] = x->t;
        acc[1 + i] = SM_R(x->t);
        s += sm_sumsq(RF(x), group_sizes[i]);
        numel += group_sizes[i];
    }
    sm_param_group grp = {.n = NG, .g = g};
    int rc = sm_insert_grad_sumsq(&f->c, &grp, sumsq->t);
    RD(sumsq)[0] = s;
    fx_check(f, "grad_sumsq", rc, (want){"grad_sumsq", 2 * numel, 1 + NG, acc});
}

static void case_clip_decide(fx *f)
{
    for (int finite = 0; finite < 2; finite++) {
        ct *clip = fx_rand(f, "clip", SM_CLIP_LEN);
        ct *loss = fx_tensor(f, "loss", SM_F32, 1, (float[]){finite ? 2.5f : NAN});
        sm_tensor *sumsq[NG];
        double s[NG];
        sm_access acc[2 + NG] = {SM_W(clip->t), SM_R(loss->t)};
        for (int i = 0; i < NG; i++) {
            s[i] = 0.5 + i;
            sumsq[i] = fx_tensor(f, "sumsq", SM_F64, 1, &s[i])->t;
            acc[2 + i] = SM_R(sumsq[i]);
        }
        int rc = sm_insert_clip_decide(&f->c, clip->t, sumsq, NG, loss->t, 1.0f);
        sm_clip_decide(RF(clip), s, NG, 1.0f, RF(loss)[0]);
        fx_check(f, finite ? "clip_decide" : "clip_decide NaN loss", rc,
                 (want){"clip_decide", NG, 2 + NG, acc});
    }
}

/* clip values: the step applied with gradients scaled by 0.7, or skipped */
static ct *fx_clip(fx *f, int apply)
{
    float clip[SM_CLIP_LEN] = {[SM_CLIP_NORM] = 1.4f, [SM_CLIP_SCALE] = 0.7f,
                               [SM_CLIP_APPLY] = (float)apply, [SM_CLIP_LOSS] = 2.0f};
    return fx_tensor(f, "clip", SM_F32, SM_CLIP_LEN, clip);
}

static void case_adamw(fx *f)
{
    enum { N = 2 };
    static const int sizes[N] = {6, 4};
    for (int apply = 0; apply < 2; apply++) {
        ct *clip = fx_clip(f, apply), *w[N], *g[N], *m[N], *v[N];
        sm_tensor *tw[N], *tg[N], *tm[N], *tv[N];
        float decay[N] = {1, 0};
        sm_access acc[1 + 4 * N] = {SM_R(clip->t)};
        double numel = 0;
        for (int i = 0; i < N; i++) {
            tw[i] = (w[i] = fx_rand(f, "w", sizes[i]))->t;
            tg[i] = (g[i] = fx_rand(f, "g", sizes[i]))->t;
            tm[i] = (m[i] = fx_randn(f, "m", sizes[i], 0.1f, 0))->t;
            tv[i] = (v[i] = fx_randn(f, "v", sizes[i], 0.1f, 0.01f))->t;
            acc[1 + i] = SM_RW(tw[i]);
            acc[1 + N + i] = SM_R(tg[i]);
            acc[1 + 2 * N + i] = SM_RW(tm[i]);
            acc[1 + 3 * N + i] = SM_RW(tv[i]);
            numel += sizes[i];
        }
        sm_param_group grp = {.n = N, .w = tw, .g = tg, .m = tm, .v = tv, .decay = decay};
        sm_adamw_hp hp = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                          .weight_decay = 0.1f, .step = 3};
        int rc = sm_insert_adamw(&f->c, &grp, clip->t, &hp);
        for (int i = 0; apply && i < N; i++) {
            sm_adamw_hp h = hp;
            h.weight_decay *= decay[i];
            sm_adamw(RF(w[i]), RF(m[i]), RF(v[i]), RF(g[i]), sizes[i], 0.7f, &h);
        }
        fx_check(f, apply ? "adamw" : "adamw skipped step", rc,
                 (want){"adamw", 12 * numel, 1 + 4 * N, acc});
    }
}

static void case_bias_update(fx *f)
{
    const sm_router_dims *r = &router_dims;
    enum { N = 2 };
    for (int apply = 0; apply < 2; apply++) {
        ct *bias = fx_randn(f, "bias", r->E, 0.1f, 0), *load = fx_rand(f, "load", r->E);
        ct *clip = fx_clip(f, apply);
        sm_tensor *plans[N];
        const int32_t *counts[N];
        /* the load keeps its values on a skipped step: read-write */
        sm_access acc[3 + N] = {SM_RW(bias->t), SM_RW(load->t), SM_R(clip->t)};
        for (int i = 0; i < N; i++) {
            routed rt = fx_route(f, r);
            plans[i] = rt.plan->t;
            counts[i] = sm_plan_count(RI(rt.plan), r->T, r->K, r->E);
            acc[3 + i] = SM_R(plans[i]);
        }
        int rc = sm_insert_bias_update(&f->c, bias->t, load->t, plans, N, r->T, r->K, r->E,
                                       1e-3f, clip->t);
        if (apply) sm_bias_update(RF(bias), RF(load), counts, N, r->E, 1e-3f);
        fx_check(f, apply ? "bias_update" : "bias_update skipped step", rc,
                 (want){"bias_update", (double)N * r->E, 3 + N, acc});
    }
}

/* ---- every helper has a case ---- */

typedef struct helper_case {
    const char *helper;
    void (*run)(fx *f);
} helper_case;

#define CASE(h) {"sm_insert_" #h, case_##h}

static const helper_case cases[] = {
    CASE(embedding_fwd), CASE(embedding_bwd), CASE(rmsnorm_fwd), CASE(rmsnorm_bwd),
    CASE(linear_fwd), CASE(linear_bwd_input), CASE(linear_bwd_weight), CASE(swiglu_fwd),
    CASE(swiglu_bwd_input), CASE(swiglu_bwd_weight), CASE(swiglu_bwd), CASE(cross_entropy),
    CASE(sum_scalars), CASE(copy), CASE(sum_tensors), CASE(zero), CASE(nop),
    CASE(mla_attn_fwd), CASE(mla_attn_bwd), CASE(kv_norm_bwd),
    CASE(router_fwd), CASE(router_bwd), CASE(moe_dispatch), CASE(moe_dispatch_bwd),
    CASE(moe_combine), CASE(moe_combine_bwd),
    CASE(grad_sumsq), CASE(clip_decide), CASE(adamw), CASE(bias_update),
};
enum { NCASES = sizeof cases / sizeof cases[0] };

static int has_case(const char *helper)
{
    for (int i = 0; i < NCASES; i++)
        if (strcmp(cases[i].helper, helper) == 0) return 1;
    return 0;
}

/* Every `int sm_insert_<name>(` the op-family headers declare has a case; returns how many
 * they declare (-1: a header cannot be read). */
static int check_coverage(void)
{
    static const char *const headers[] = {"dense.h", "attention.h", "moe.h", "optim.h"};
    int declared = 0;
    for (size_t h = 0; h < sizeof headers / sizeof headers[0]; h++) {
        char path[1200], line[512];
        snprintf(path, sizeof path, "%s/tasks/%s", tu_srcdir(), headers[h]);
        FILE *fp = fopen(path, "r");
        if (!fp) {
            tap_diag("cannot open %s", path);
            return -1;
        }
        while (fgets(line, sizeof line, fp)) {
            char name[128];
            if (sscanf(line, "int %127[a-z0-9_](", name) != 1) continue;
            if (strncmp(name, "sm_insert_", 10) != 0) continue;
            declared++;
            if (!has_case(name)) tap_diag("%s (tasks/%s) has no case", name, headers[h]);
        }
        fclose(fp);
    }
    return declared;
}

/* ---- write poisoning ---- */

static float seen_w_f32, seen_rw;
static int32_t seen_w_i32;
static double seen_w_f64;

enum { READ_WRITES_F32, READ_WRITES_I32, READ_WRITES_F64, READ_WRITES_RW, READ_WRITES_NBUF };

/* Reads what it should only write (the first three buffers, W) and its RW buffer. */
static void read_writes_cpu(void *b[], void *arg)
{
    (void)arg;
    seen_w_f32 = SM_BUF(b, READ_WRITES_F32, float)[0];
    seen_w_i32 = SM_BUF(b, READ_WRITES_I32, int32_t)[0];
    seen_w_f64 = SM_BUF(b, READ_WRITES_F64, double)[0];
    seen_rw = SM_BUF(b, READ_WRITES_RW, float)[0];
}
SM_CODELET(read_writes, read_writes_cpu);

/* Runs read_writes on buffers holding 3, 7, 5 and 9. */
static void run_read_writes(fx *f)
{
    ct *a = fx_tensor(f, "a", SM_F32, 4, (float[]){3, 3, 3, 3});
    ct *b = fx_tensor(f, "b", SM_I32, 2, (int32_t[]){7, 7});
    ct *c = fx_tensor(f, "c", SM_F64, 3, (double[]){5, 5, 5});
    ct *d = fx_tensor(f, "d", SM_F32, 1, (float[]){9});
    sm_access acc[READ_WRITES_NBUF] = {[READ_WRITES_F32] = SM_W(a->t),
                                       [READ_WRITES_I32] = SM_W(b->t),
                                       [READ_WRITES_F64] = SM_W(c->t),
                                       [READ_WRITES_RW] = SM_RW(d->t)};
    sm_op_insert(&f->c, &sm_cl_read_writes, "read_writes", SM_FORWARD, -1, acc, READ_WRITES_NBUF,
                 NULL, 0, 0);
    sm_graph_wait(f->g);
    fx_end(f);
}

static void test_poison(fx *f)
{
    const char *env = getenv("STARMOE_POISON_WRITES");
    tap_ok(sm_codelet_poison_on == (env && strcmp(env, "1") == 0),
           "write poisoning follows STARMOE_POISON_WRITES (%s): %s", env ? env : "unset",
           sm_codelet_poison_on ? "on" : "off");
    sm_codelet_poison_writes(1);
    run_read_writes(f);
    uint32_t bits;
    memcpy(&bits, &seen_w_f32, sizeof bits);
    tap_ok(bits == 0x7fc00000u && seen_w_i32 == 0x7fc00000 && isnan(seen_w_f64) &&
               seen_rw == 9.0f,
           "poisoned: a kernel reading its W buffers sees NaN (f32 %g, i32 0x%x, f64 %g), its "
           "RW buffer keeps %g", seen_w_f32, (unsigned)seen_w_i32, seen_w_f64, seen_rw);
    sm_codelet_poison_writes(0);
    run_read_writes(f);
    tap_ok(seen_w_f32 == 3.0f && seen_w_i32 == 7 && seen_w_f64 == 5.0,
           "not poisoned: the same kernel sees the old values (%g, %d, %g)", seen_w_f32,
           seen_w_i32, seen_w_f64);
    sm_codelet_poison_writes(1);
}

/* ---- implementations: each runs every case on its own workers ---- */

static void run_impl(sm_graph *g, const impl *im)
{
    int ids[STARPU_NMAXWORKERS];
    int n = starpu_worker_get_ids_by_type(im->worker, ids, STARPU_NMAXWORKERS);
    if (n <= 0) {
        printf("ok %d - # SKIP %s: no worker of this kind\n", ++tap_n, im->name);
        return;
    }
    unsigned ctx = starpu_sched_ctx_create(ids, n, im->name, STARPU_SCHED_CTX_POLICY_NAME,
                                           "eager", 0);
    starpu_sched_ctx_set_context(&ctx);
    fx f = {.g = g, .im = im, .c = {.g = g, .layer = -1, .micro = -1}};
    tu_seed(&f.rng, 20261207);
    for (int i = 0; i < NCASES; i++) {
        fx_begin(&f);
        cases[i].run(&f);
    }
    unsigned global = 0;
    starpu_sched_ctx_set_context(&global);
    starpu_sched_ctx_delete(ctx);
}

int main(void)
{
    sm_error err = {{0}};
    int declared = check_coverage();
    tap_ok(declared == NCASES, "every insert helper of tasks/*.h has a case (%d declared, %d "
                               "cases)", declared, (int)NCASES);
    sm_engine_opts e = {.ncpus = 2};
    if (sm_engine_init(&e, &err)) {
        tap_ok(0, "engine: %s", err.msg);
        return tap_done();
    }
    sm_graph *g = sm_graph_new(1);
    fx f = {.g = g, .im = &impls[0], .c = {.g = g, .layer = -1, .micro = -1}};
    test_poison(&f);
    for (size_t i = 0; i < sizeof impls / sizeof impls[0]; i++) run_impl(g, &impls[i]);
    sm_graph_free(g);
    sm_engine_shutdown();
    return tap_done();
}
