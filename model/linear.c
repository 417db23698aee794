/* The linear layers of the FP8 recipe (docs/fp8.md: the MLA projections, the dense FFN, the
 * shared and routed experts) as tasks, forward and backward side by side: float32 GEMMs, or
 * under FP8 training (sm_run.fp8) E4M3 operands made by cast tasks:
 *   Fprop  y  = x W^T   x in 1x128 tiles (cached for Wgrad), W in 128x128 blocks;
 *   Dgrad  dx = dy W    dy in 1x128 tiles, W^T's blocks (W's, transposed);
 *   Wgrad  dW += dy^T x dy and the cached x re-quantised in tiles along the tokens.
 * A weight is quantised once per step (and transposed once), at its first use. A SwiGLU is
 * its three linears with its activation (swiglu_act, swiglu_grad) between them, its quantised
 * input and activation cached. The FP8 tensors are made on first use and kept by the run: per
 * micro-batch and block the cached inputs, and the backward's temporaries (shared by the
 * blocks of a micro-batch without a pipeline, as the float32 backward temporaries are:
 * model/activations.c); a routed expert's are resizable, as its rows. */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <starmoe/fp8.h>
#include "base/fp8_quant.h"
#include "base/grow.h"
#include "tasks/fp8.h"

/* A quantised tensor: its E4M3 codes and its scales, and what its values were last made for:
 * the step (0: never) and block. */
typedef struct sm_q8 {
    sm_tensor *codes, *scales;
    unsigned step;
    int layer;
} sm_q8;

/* A weight's quantisation: its blocks, and W^T's. */
typedef struct sm_q8_weight {
    sm_q8 w, wt;
} sm_q8_weight;

typedef struct sm_q8_named {
    char *name;
    sm_q8 q;
} sm_q8_named;

struct sm_fp8_state {
    unsigned step;                           /* counts the run's builds */
    sm_q8_weight *weights;                   /* [the model's parameters] */
    sm_q8_named **named;                     /* activations and temporaries, by name (each
                                              * allocated alone: their addresses stay) */
    size_t nnamed, cap;
    sm_tensor_list floats;                   /* float32 temporaries (the SwiGLU's activation) */
};

/* Whether q was made for this step and the context's block; if not, marks it so (the caller
 * inserts the task that makes it). */
static int sm_q8_made(const sm_run *r, const sm_op_ctx *c, sm_q8 *q)
{
    if (q->step == r->fp8->step && q->layer == c->layer) return 1;
    q->step = r->fp8->step;
    q->layer = c->layer;
    return 0;
}

int sm_fp8_state_new(sm_run *r, sm_error *err)
{
    if (!(r->fp8 = calloc(1, sizeof *r->fp8)) ||
        !(r->fp8->weights = calloc(r->m->nall, sizeof *r->fp8->weights)))
        return sm_fail(err, "FP8 training: out of memory");
    return 0;
}

void sm_fp8_state_free(sm_run *r)
{
    if (!r->fp8) return;
    for (size_t i = 0; i < r->fp8->nnamed; i++) {
        free(r->fp8->named[i]->name);
        free(r->fp8->named[i]);
    }
    free(r->fp8->named);
    free(r->fp8->floats.v);
    free(r->fp8->weights);
    free(r->fp8);
    r->fp8 = NULL;
}

void sm_fp8_step_begin(sm_run *r)
{
    if (r->fp8) r->fp8->step++;
}

/* A new quantised tensor "<name>" of rows x cols codes with the scales of its tiles along
 * the rows (or of its blocks); resizable (rows known when a task writes it) when dynamic. */
static int sm_q8_new(sm_run *r, sm_q8 *q, const char *name, sm_fp8_rows rows, int cols,
                     int blocks, sm_error *err)
{
    char n[300];
    sm_graph *g = r->m->g;
    int64_t cshape[2] = {rows.n, cols};
    int64_t sshape[2] = {blocks ? sm_fp8_groups(rows.n) : rows.n, sm_fp8_groups(cols)};
    snprintf(n, sizeof n, "%s.fp8", name);
    q->codes = rows.dynamic ? sm_tensor_rows_new_in(g, &r->owned, n, SM_U8, SM_ACT, cols, err)
                            : sm_tensor_new_in(g, &r->owned, n, SM_U8, SM_ACT, 2, cshape, err);
    snprintf(n, sizeof n, "%s.scales", name);
    q->scales = !q->codes ? NULL
                : rows.dynamic
                    ? sm_tensor_rows_new_in(g, &r->owned, n, SM_F32, SM_ACT, sshape[1], err)
                    : sm_tensor_new_in(g, &r->owned, n, SM_F32, SM_ACT, 2, sshape, err);
    return q->scales ? 0 : -1;
}

/* The run's quantised tensor of that name (tiles along rows), made on first use. */
static sm_q8 *sm_q8_named_get(sm_run *r, const char *name, sm_fp8_rows rows, int cols,
                              sm_error *err)
{
    struct sm_fp8_state *s = r->fp8;
    for (size_t i = 0; i < s->nnamed; i++)
        if (!strcmp(s->named[i]->name, name)) return &s->named[i]->q;
    sm_q8_named *e = calloc(1, sizeof *e);
    if (!e || !(e->name = strdup(name)) ||
        sm_grow(&s->named, &s->cap, s->nnamed + 1, sizeof *s->named)) {
        if (e) free(e->name);
        free(e);
        sm_fail(err, "FP8 training: out of memory");
        return NULL;
    }
    if (sm_q8_new(r, &e->q, name, rows, cols, 0, err)) {
        free(e->name);
        free(e);
        return NULL;
    }
    s->named[s->nnamed++] = e;
    return &e->q;
}

/* A backward temporary "<what>" of rows x cols of the context's micro-batch: one per block
 * with a pipeline (its B and W parts run apart), else shared by the micro-batch's blocks. */
static sm_q8 *sm_q8_tmp(sm_run *r, const sm_op_ctx *c, const char *what, sm_fp8_rows rows,
                        int cols)
{
    char name[160];
    const char *kind = rows.dynamic ? "rows" : "fixed";
    if (r->share_bwd)
        snprintf(name, sizeof name, "mb%d.bwd.%s.%s.%dx%d", c->micro, what, kind, rows.n, cols);
    else
        snprintf(name, sizeof name, "mb%d.L%d.%s.%s.%dx%d", c->micro, c->layer, what, kind,
                 rows.n, cols);
    return sm_q8_named_get(r, name, rows, cols, c->err);
}

/* Weight p in 128x128 blocks (transposed: W^T's), quantised at its first use this step. */
static sm_q8 *sm_q8_weight_get(sm_run *r, const sm_op_ctx *c, const sm_param *p, int transposed)
{
    sm_q8_weight *q = &r->fp8->weights[p->index];
    int N = (int)p->w->shape[0], K = (int)p->w->shape[1];
    if (!q->w.codes && sm_q8_new(r, &q->w, p->w->name, (sm_fp8_rows){N, 0}, K, 1, c->err))
        return NULL;
    if (!sm_q8_made(r, c, &q->w) &&
        sm_insert_fp8_quant_blocks(c, q->w.codes, q->w.scales, p->w, N, K))
        return NULL;
    if (!transposed) return &q->w;
    if (!q->wt.codes) {
        char n[300];
        snprintf(n, sizeof n, "%s.T", p->w->name);
        if (sm_q8_new(r, &q->wt, n, (sm_fp8_rows){K, 0}, N, 1, c->err)) return NULL;
    }
    if (!sm_q8_made(r, c, &q->wt) &&
        sm_insert_fp8_transpose_blocks(c, q->wt.codes, q->wt.scales, q->w.codes, q->w.scales, N,
                                       K))
        return NULL;
    return &q->wt;
}

/* The cached FP8 copy of a linear input "<what>" of the context's micro-batch and block. */
static sm_q8 *sm_q8_input(sm_run *r, const sm_op_ctx *c, const char *what, sm_fp8_rows T, int K)
{
    char name[160];
    snprintf(name, sizeof name, "mb%d.L%d.%s", c->micro, c->layer, what);
    return sm_q8_named_get(r, name, T, K, c->err);
}

/* ---- one linear in FP8 ---- */

static int sm_fp8_quant_input(sm_run *r, const sm_op_ctx *c, const char *what, sm_tensor *x,
                              sm_fp8_rows T, int K)
{
    sm_q8 *q = sm_q8_input(r, c, what, T, K);
    return q ? sm_insert_fp8_quant_tiles(c, SM_FORWARD, q->codes, q->scales, x, T, K) : -1;
}

static int sm_fp8_fwd(sm_run *r, const sm_op_ctx *c, sm_tensor *y, const char *what,
                      const sm_param *p, sm_tensor *res, sm_fp8_rows T, int in, int out)
{
    sm_q8 *q = sm_q8_input(r, c, what, T, in), *w = q ? sm_q8_weight_get(r, c, p, 0) : NULL;
    return w ? sm_insert_fp8_gemm(c, SM_FORWARD, y, q->codes, q->scales, w->codes, w->scales, res,
                                  T, out, in, 0)
             : -1;
}

/* Dgrad of the linear whose input is "<what>" (its gradient temporaries are named after it: a
 * routed expert's are its own, so experts run side by side). */
static int sm_fp8_bwd_input(sm_run *r, const sm_op_ctx *c, sm_tensor *dx, sm_tensor *dy,
                            const char *what, const sm_param *p, sm_fp8_rows T, int in, int out,
                            int accumulate)
{
    char n[128];
    snprintf(n, sizeof n, "%s.dy", what);
    sm_q8 *g = sm_q8_tmp(r, c, n, T, out), *wt = g ? sm_q8_weight_get(r, c, p, 1) : NULL;
    return wt && !sm_insert_fp8_quant_tiles(c, SM_BACKWARD_INPUT, g->codes, g->scales, dy, T,
                                            out)
               ? sm_insert_fp8_gemm(c, SM_BACKWARD_INPUT, dx, g->codes, g->scales, wt->codes,
                                    wt->scales, NULL, T, in, out, accumulate)
               : -1;
}

static int sm_fp8_bwd_weight(sm_run *r, const sm_op_ctx *c, sm_tensor *dW, sm_tensor *dy,
                             const char *what, sm_fp8_rows T, int in, int out)
{
    char n[2][128];
    snprintf(n[0], sizeof n[0], "%s.dy_t", what);
    snprintf(n[1], sizeof n[1], "%s.x_t", what);
    sm_q8 *q = sm_q8_input(r, c, what, T, in);
    sm_q8 *gt = q ? sm_q8_tmp(r, c, n[0], T, out) : NULL;
    sm_q8 *xt = gt ? sm_q8_tmp(r, c, n[1], T, in) : NULL;
    /* the linears sharing an input (q_a and kv_a, a SwiGLU's gate and up) run their Wgrads one
     * after the other: the second reuses the first's re-quantised input */
    return xt && !sm_insert_fp8_quant_tiles_t(c, gt->codes, gt->scales, dy, T, out) &&
                   (sm_q8_made(r, c, xt) ||
                    !sm_insert_fp8_requant_t(c, xt->codes, xt->scales, q->codes, q->scales, T,
                                             in))
               ? sm_insert_fp8_gemm_tiles(c, dW, gt->codes, gt->scales, xt->codes, xt->scales,
                                          out, in, T)
               : -1;
}

/* ---- the model's linears: float32 or FP8 ---- */

static sm_fp8_rows sm_fixed(int T) { return (sm_fp8_rows){T, 0}; }

int sm_proj_quant_input(sm_run *r, const sm_op_ctx *c, const char *what, sm_tensor *x, int T,
                        int K)
{
    return r->fp8 ? sm_fp8_quant_input(r, c, what, x, sm_fixed(T), K) : 0;
}

int sm_proj_fwd(sm_run *r, const sm_op_ctx *c, sm_tensor *y, sm_tensor *x, const char *what,
                const sm_param *p, sm_tensor *res, int T, int in, int out)
{
    if (!r->fp8) return sm_insert_linear_fwd(c, y, x, p->w, res, T, in, out);
    return sm_fp8_fwd(r, c, y, what, p, res, sm_fixed(T), in, out);
}

int sm_proj_bwd_input(sm_run *r, const sm_op_ctx *c, sm_tensor *dx, sm_tensor *dy,
                      const char *what, const sm_param *p, int T, int in, int out,
                      int accumulate)
{
    if (!r->fp8) return sm_insert_linear_bwd_input(c, dx, dy, p->w, T, in, out, accumulate);
    return sm_fp8_bwd_input(r, c, dx, dy, what, p, sm_fixed(T), in, out, accumulate);
}

int sm_proj_bwd_weight(sm_run *r, const sm_op_ctx *c, sm_tensor *dW, sm_tensor *dy,
                       sm_tensor *x, const char *what, int T, int in, int out)
{
    if (!r->fp8) return sm_insert_linear_bwd_weight(c, dW, dy, x, T, in, out);
    return sm_fp8_bwd_weight(r, c, dW, dy, what, sm_fixed(T), in, out);
}

/* ---- a SwiGLU in FP8 ---- */

/* The float32 temporary "mb<m>.fwd.<what>" of the context's micro-batch, shared by its blocks
 * (only a quantisation reads it), made on first use: [rows, cols], or resizable rows. */
static sm_tensor *sm_fp8_float_tmp(sm_run *r, const sm_op_ctx *c, const char *what,
                                   sm_fp8_rows rows, int cols)
{
    char name[160];
    int64_t shape[2] = {rows.n, cols};
    snprintf(name, sizeof name, "mb%d.fwd.%s.%s.%dx%d", c->micro, what,
             rows.dynamic ? "rows" : "fixed", rows.n, cols);
    sm_tensor_list *l = &r->fp8->floats;
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->v[i]->name, name)) return l->v[i];
    sm_tensor *t = rows.dynamic
                       ? sm_tensor_rows_new_in(r->m->g, &r->owned, name, SM_F32, SM_ACT, cols,
                                               c->err)
                       : sm_tensor_new_in(r->m->g, &r->owned, name, SM_F32, SM_ACT, 2, shape,
                                          c->err);
    if (t && sm_grow(&l->v, &l->cap, l->n + 1, sizeof *l->v)) {
        sm_fail(c->err, "FP8 training: out of memory");
        return NULL;
    }
    if (t) l->v[l->n++] = t;
    return t;
}

/* The names of a SwiGLU's cached input and activation: "<tag>.x", "<tag>.act". */
static void sm_swiglu_names(char (*n)[96], const char *tag)
{
    snprintf(n[0], sizeof n[0], "%s.x", tag);
    snprintf(n[1], sizeof n[1], "%s.act", tag);
}

int sm_swiglu_fp8_fwd(sm_run *r, const sm_op_ctx *c, const char *tag, const sm_ffn_shape *s,
                      const sm_ffn_params *f, sm_tensor *y, sm_tensor *h1, sm_tensor *h3,
                      sm_tensor *x, sm_tensor *res)
{
    int d = s->d, I = s->I;
    sm_fp8_rows T = {s->n, s->expert >= 0};
    char n[2][96];
    sm_swiglu_names(n, tag);
    sm_tensor *act = sm_fp8_float_tmp(r, c, n[1], T, I);
    return act && !sm_fp8_quant_input(r, c, n[0], x, T, d) &&
                   !sm_fp8_fwd(r, c, h1, n[0], &f->gate, NULL, T, d, I) &&
                   !sm_fp8_fwd(r, c, h3, n[0], &f->up, NULL, T, d, I) &&
                   !sm_insert_swiglu_act(c, s, act, h1, h3) &&
                   !sm_fp8_quant_input(r, c, n[1], act, T, I)
               ? sm_fp8_fwd(r, c, y, n[1], &f->down, res, T, I, d)
               : -1;
}

int sm_swiglu_fp8_bwd(sm_run *r, const sm_op_ctx *c, const char *tag, const sm_ffn_shape *s,
                      const sm_ffn_params *f, const sm_ffn_grads *g, sm_tensor *dy,
                      sm_tensor *h1, sm_tensor *h3, int parts)
{
    int d = s->d, I = s->I;
    sm_fp8_rows T = {s->n, s->expert >= 0};
    char n[2][96];
    sm_swiglu_names(n, tag);
    if ((parts & SM_BWD_INPUT) &&
        (sm_fp8_bwd_input(r, c, g->dh1, dy, n[1], &f->down, T, I, d, 0) ||
         sm_insert_swiglu_grad(c, s, g->dh1, g->dh3, h1, h3) ||
         sm_fp8_bwd_input(r, c, g->dx, g->dh1, n[0], &f->gate, T, d, I, 0) ||
         sm_fp8_bwd_input(r, c, g->dx, g->dh3, n[0], &f->up, T, d, I, 1)))
        return -1;
    if (!(parts & SM_BWD_WEIGHT)) return 0;
    return sm_fp8_bwd_weight(r, c, g->dW2, dy, n[1], T, I, d) ||
                   sm_fp8_bwd_weight(r, c, g->dW1, g->dh1, n[0], T, d, I) ||
                   sm_fp8_bwd_weight(r, c, g->dW3, g->dh3, n[0], T, d, I)
               ? -1
               : 0;
}
