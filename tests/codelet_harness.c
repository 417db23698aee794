/* A codelet case's tensors (each with the size and values it must have after the task) and the
 * routing plans of the MoE cases; the checks are in tests/test_codelets.c. */
#include "tests/codelet_harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A case tensor of n elements holding `init`: a plain tensor (width 0), or a resizable row
 * tensor of n / width rows of `width` elements. */
static ct *fx_make(fx *f, const char *name, sm_dtype dt, size_t n, const void *init,
                   size_t width)
{
    sm_error err = {{0}};
    if (f->n == MAX_TENSORS) {
        fprintf(stderr, "test_codelets: more than %d tensors in a case\n", MAX_TENSORS);
        exit(1);
    }
    ct *x = &f->v[f->n++];
    size_t bytes = n * sm_dtype_size(dt);
    int64_t shape[1] = {(int64_t)n};
    if (width)
        x->t = sm_tensor_rows_new_in(f->g, &f->owned, name, dt, SM_ACT, (int64_t)width, &err);
    else
        x->t = sm_tensor_new_in(f->g, &f->owned, name, dt, SM_ACT, 1, shape, &err);
    x->ref = calloc(n ? n : 1, sm_dtype_size(dt));
    x->numel = n;
    if (!x->t || !x->ref) {
        fprintf(stderr, "test_codelets: %s\n", x->t ? "out of memory" : err.msg);
        exit(1);
    }
    if (init) memcpy(x->ref, init, bytes);
    void *data = sm_tensor_acquire_resized(x->t, n);
    if (bytes) memcpy(data, x->ref, bytes);
    sm_tensor_release(x->t);
    return x;
}

ct *fx_tensor(fx *f, const char *name, sm_dtype dt, size_t n, const void *init)
{
    return fx_make(f, name, dt, n, init, 0);
}

ct *fx_rows(fx *f, const char *name, size_t rows, size_t width)
{
    size_t n = rows * width;
    float *v = malloc((n ? n : 1) * sizeof *v);
    tu_fill(&f->rng, v, n, 1);
    ct *x = fx_make(f, name, SM_F32, n, v, width);
    free(v);
    return x;
}

ct *fx_rows_of(fx *f, const char *name, sm_dtype dt, size_t rows, size_t width,
               const void *init)
{
    return fx_make(f, name, dt, rows * width, init, width);
}

void fx_resize(ct *x, size_t numel)
{
    size_t size = sm_dtype_size(x->t->dtype);
    char *ref = realloc(x->ref, (numel ? numel : 1) * size);
    if (!ref) {
        fprintf(stderr, "test_codelets: out of memory\n");
        exit(1);
    }
    if (numel > x->numel) memset(ref + x->numel * size, 0, (numel - x->numel) * size);
    x->ref = ref;
    x->numel = numel;
}

ct *fx_randn(fx *f, const char *name, size_t n, float std, float shift)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    tu_fill(&f->rng, v, n, std);
    for (size_t i = 0; i < n; i++) v[i] = shift ? shift + fabsf(v[i]) : v[i];
    ct *x = fx_tensor(f, name, SM_F32, n, v);
    free(v);
    return x;
}

ct *fx_rand(fx *f, const char *name, size_t n) { return fx_randn(f, name, n, 1, 0); }

ct *fx_ids(fx *f, const char *name, size_t n, int below)
{
    int32_t *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = (int32_t)(tu_uniform(&f->rng) * below);
    ct *x = fx_tensor(f, name, SM_I32, n, v);
    free(v);
    return x;
}

void fx_end(fx *f)
{
    sm_graph_step_begin(f->g);
    sm_tensor_list_drop(f->g, &f->owned);
    for (int i = 0; i < f->n; i++) free(f->v[i].ref);
    f->n = 0;
}

const sm_router_dims fx_router_dims = {.T = 8, .d = 6, .E = 8, .K = 2, .G = 4, .Gk = 2,
                                       .route_scale = 2.5f, .norm_topk = 1};

routed fx_route(fx *f, const sm_router_dims *r)
{
    routed x = {.u = fx_rand(f, "u", r->T * r->d), .Wg = fx_rand(f, "Wg", r->E * r->d)};
    int32_t *plan = calloc(sm_moe_plan_len(r->T, r->K, r->E), sizeof *plan);
    float *w = malloc(r->T * r->K * sizeof *w), *s = malloc(r->T * r->E * sizeof *s);
    sm_router_fwd(plan, w, s, RF(x.u), RF(x.Wg), NULL, r);
    x.plan = fx_tensor(f, "plan", SM_I32, sm_moe_plan_len(r->T, r->K, r->E), plan);
    x.w = fx_tensor(f, "w", SM_F32, r->T * r->K, w);
    x.s = fx_tensor(f, "s", SM_F32, r->T * r->E, s);
    const int32_t *count = sm_plan_count(plan, r->T, r->K, r->E);
    x.e = 1;
    for (int e = 1; e < r->E; e++)
        if (count[e] > count[x.e] && count[e] < r->T) x.e = e;
    free(plan);
    free(w);
    free(s);
    return x;
}
