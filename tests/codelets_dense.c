/* Codelet cases of the dense op families (tasks/dense.h): embedding, RMSNorm, linear, SwiGLU
 * (dense and routed expert), cross-entropy and the small utilities, each variant of a helper's
 * optional buffers and accumulate flag. */
#include <stdio.h>
#include <string.h>
#include "tasks/dense.h"
#include "tasks/dense_kernels.h"
#include "tests/codelet_harness.h"

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

/* ---- SwiGLU: a dense FFN over T rows, or a routed expert over the rows of its resizable
 * input buffer (EXPERT_ROWS of them, not its shape's n, the mean count the flops use); the row
 * buffers such a task writes start with STALE_ROWS rows, and must end with EXPERT_ROWS ---- */

enum { EXPERT = 3, EXPERT_ROWS = 5, EXPERT_MEAN_ROWS = 2, STALE_ROWS = 7 };

typedef struct ffn {
    sm_ffn_shape s;
    int rows;                    /* rows the task works on */
    const char *kind;            /* "ffn" or "expert" */
} ffn;

static ffn fx_ffn(int routed_expert)
{
    if (!routed_expert)
        return (ffn){.s = {.n = T, .d = D, .I = I_FF, .expert = -1}, .rows = T, .kind = "ffn"};
    return (ffn){.s = {.n = EXPERT_MEAN_ROWS, .d = D, .I = I_FF, .expert = EXPERT},
                 .rows = EXPERT_ROWS, .kind = "expert"};
}

/* "<kind>_<suffix>" */
static const char *ffn_op(const ffn *x, const char *suffix, char *buf, size_t size)
{
    snprintf(buf, size, "%s_%s", x->kind, suffix);
    return buf;
}

/* Every tensor a SwiGLU task may touch (a case uses the ones its task takes). */
typedef struct ffn_tensors {
    ct *y, *x, *res, *h1, *h3, *W1, *W3, *W2;        /* forward */
    ct *dx, *dy, *dh1, *dh3, *dW1, *dW3, *dW2;       /* backward */
} ffn_tensors;

/* The row tensors a case's task writes: y, h1, h3 (forward), dx, dh1, dh3 (backward). */
enum ffn_writes { WRITES_NONE, WRITES_FWD, WRITES_BWD };

/* A row tensor of `width` columns over the case's rows: plain for a dense FFN; resizable for a
 * routed expert, holding STALE_ROWS rows when the task writes it (its reference: the rows the
 * task must leave). */
static ct *ffn_rows(fx *f, const ffn *x, const char *name, int width, int written)
{
    if (x->s.expert < 0) return fx_rand(f, name, (size_t)x->rows * width);
    ct *t = fx_rows(f, name, written ? STALE_ROWS : x->rows, width);
    if (written) fx_resize(t, (size_t)x->rows * width);
    return t;
}

static ffn_tensors fx_ffn_tensors(fx *f, const ffn *x, enum ffn_writes writes)
{
    int fw = writes == WRITES_FWD, bw = writes == WRITES_BWD;
    ffn_tensors t = {
        ffn_rows(f, x, "y", D, fw),        ffn_rows(f, x, "x", D, 0),
        ffn_rows(f, x, "res", D, 0),       ffn_rows(f, x, "h1", I_FF, fw),
        ffn_rows(f, x, "h3", I_FF, fw),    fx_rand(f, "W1", I_FF * D),
        fx_rand(f, "W3", I_FF * D),        fx_rand(f, "W2", D * I_FF),
        ffn_rows(f, x, "dx", D, bw),       ffn_rows(f, x, "dy", D, 0),
        ffn_rows(f, x, "dh1", I_FF, bw),   ffn_rows(f, x, "dh3", I_FF, bw),
        fx_rand(f, "dW1", I_FF * D),       fx_rand(f, "dW3", I_FF * D),
        fx_rand(f, "dW2", D * I_FF)};
    return t;
}

/* The pure kernels of the two backward halves, on the case's tensors. */
static void ref_swiglu_bwd_input(const ffn *x, const ffn_tensors *t, int accumulate)
{
    sm_swiglu_bwd_input(RF(t->dx), RF(t->dh1), RF(t->dh3), RF(t->dy), RF(t->h1), RF(t->h3),
                        RF(t->W1), RF(t->W3), RF(t->W2), x->rows, D, I_FF, accumulate);
}

static void ref_swiglu_bwd_weight(const ffn *x, const ffn_tensors *t)
{
    sm_swiglu_bwd_weight(RF(t->dW1), RF(t->dW3), RF(t->dW2), RF(t->dy), RF(t->x), RF(t->h1),
                         RF(t->h3), RF(t->dh1), RF(t->dh3), x->rows, D, I_FF);
}

/* How the case's task writes a row tensor: an expert's write-only (whole, resized); otherwise
 * read-write when accumulating, write-only when overwriting. */
static sm_access out_mode(const ffn *x, ct *t, int accumulate)
{
    return SM_ACC(t->t, x->s.expert < 0 && accumulate);
}

/* The flops of a task doing `gemms` of the case's shape. */
static double ffn_flops(const ffn *x, double gemms) { return gemms * 2.0 * x->s.n * D * I_FF; }

static void case_swiglu_fwd(fx *f)
{
    for (int variant = 0; variant < 3; variant++) {
        int routed_expert = variant == 2, residual = variant == 1;
        ffn x = fx_ffn(routed_expert);
        int rows = x.rows;
        ffn_tensors t = fx_ffn_tensors(f, &x, WRITES_FWD);
        int rc = sm_insert_swiglu_fwd(&f->c, &x.s, t.y->t, t.h1->t, t.h3->t, t.x->t, t.W1->t,
                                      t.W3->t, t.W2->t, residual ? t.res->t : NULL);
        sm_swiglu_fwd(RF(t.y), RF(t.h1), RF(t.h3), RF(t.x), RF(t.W1), RF(t.W3), RF(t.W2), rows,
                      D, I_FF);
        for (int i = 0; residual && i < rows * D; i++) RF(t.y)[i] += RF(t.res)[i];
        sm_access acc[10] = {out_mode(&x, t.y, 0), out_mode(&x, t.h1, 0), out_mode(&x, t.h3, 0),
                             SM_R(t.x->t), SM_R(t.W1->t), SM_R(t.W3->t), SM_R(t.W2->t),
                             SM_R(t.res->t)};
        char op[32], name[64];
        snprintf(name, sizeof name, "swiglu_fwd %s%s", x.kind, residual ? " residual" : "");
        fx_check(f, name, rc,
                 (want){ffn_op(&x, "fwd", op, sizeof op), ffn_flops(&x, 3), 7 + residual, acc});
    }
}

static void case_swiglu_bwd_input(fx *f)
{
    for (int variant = 0; variant < 3; variant++) {
        int routed_expert = variant == 2, accumulate = variant == 1;
        ffn x = fx_ffn(routed_expert);
        ffn_tensors t = fx_ffn_tensors(f, &x, WRITES_BWD);
        int rc = sm_insert_swiglu_bwd_input(&f->c, &x.s, t.dx->t, t.dh1->t, t.dh3->t, t.dy->t,
                                            t.h1->t, t.h3->t, t.W1->t, t.W3->t, t.W2->t,
                                            accumulate);
        ref_swiglu_bwd_input(&x, &t, accumulate);
        sm_access acc[10] = {out_mode(&x, t.dx, accumulate), out_mode(&x, t.dh1, 0),
                             out_mode(&x, t.dh3, 0), SM_R(t.dy->t), SM_R(t.h1->t),
                             SM_R(t.h3->t), SM_R(t.W1->t), SM_R(t.W3->t), SM_R(t.W2->t)};
        char op[32], name[64];
        snprintf(name, sizeof name, "swiglu_bwd_input %s%s", x.kind,
                 accumulate ? " accumulate" : "");
        fx_check(f, name, rc,
                 (want){ffn_op(&x, "bwd_input", op, sizeof op), ffn_flops(&x, 3), 9, acc});
    }
}

static void case_swiglu_bwd_weight(fx *f)
{
    for (int routed_expert = 0; routed_expert < 2; routed_expert++) {
        ffn x = fx_ffn(routed_expert);
        ffn_tensors t = fx_ffn_tensors(f, &x, WRITES_NONE);
        int rc = sm_insert_swiglu_bwd_weight(&f->c, &x.s, t.dW1->t, t.dW3->t, t.dW2->t, t.dy->t,
                                             t.x->t, t.h1->t, t.h3->t, t.dh1->t, t.dh3->t);
        ref_swiglu_bwd_weight(&x, &t);
        sm_access acc[10] = {SM_RW(t.dW1->t), SM_RW(t.dW3->t), SM_RW(t.dW2->t), SM_R(t.dy->t),
                             SM_R(t.x->t), SM_R(t.h1->t), SM_R(t.h3->t), SM_R(t.dh1->t),
                             SM_R(t.dh3->t)};
        char op[32], name[64];
        snprintf(name, sizeof name, "swiglu_bwd_weight %s", x.kind);
        fx_check(f, name, rc,
                 (want){ffn_op(&x, "bwd_weight", op, sizeof op), ffn_flops(&x, 3), 9, acc});
    }
}

static void case_swiglu_bwd(fx *f)
{
    for (int variant = 0; variant < 3; variant++) {
        int routed_expert = variant == 2, accumulate = variant == 1;
        ffn x = fx_ffn(routed_expert);
        ffn_tensors t = fx_ffn_tensors(f, &x, WRITES_BWD);
        sm_ffn_grads g = {t.dx->t, t.dh1->t, t.dh3->t, t.dW1->t, t.dW3->t, t.dW2->t};
        int rc = sm_insert_swiglu_bwd(&f->c, &x.s, &g, t.dy->t, t.x->t, t.h1->t, t.h3->t,
                                      t.W1->t, t.W3->t, t.W2->t, accumulate);
        ref_swiglu_bwd_input(&x, &t, accumulate);
        ref_swiglu_bwd_weight(&x, &t);
        sm_access acc[14] = {out_mode(&x, t.dx, accumulate), out_mode(&x, t.dh1, 0),
                             out_mode(&x, t.dh3, 0),
                             SM_RW(t.dW1->t), SM_RW(t.dW3->t), SM_RW(t.dW2->t), SM_R(t.dy->t),
                             SM_R(t.x->t), SM_R(t.h1->t), SM_R(t.h3->t), SM_R(t.W1->t),
                             SM_R(t.W3->t), SM_R(t.W2->t)};
        char op[32], name[64];
        snprintf(name, sizeof name, "swiglu_bwd %s%s", x.kind, accumulate ? " accumulate" : "");
        fx_check(f, name, rc,
                 (want){ffn_op(&x, "bwd", op, sizeof op), ffn_flops(&x, 6), 13, acc});
    }
}

/* ---- loss and utilities ---- */

/* without gradient, with one, and with one written over the logits (bitwise the separate
 * gradient) */
/* A routed expert's activation: as many rows as h1 holds (R_ROWS), not the mean given (1). */
enum { R_ROWS = 4 };

static void swiglu_act_rows(fx *f)
{
    sm_ffn_shape s = {.n = 1, .d = D, .I = I_FF, .expert = 2};
    ct *act = fx_rows_of(f, "act", SM_F32, 0, I_FF, NULL), *h1 = fx_rows(f, "h1", R_ROWS, I_FF);
    ct *h3 = fx_rows(f, "h3", R_ROWS, I_FF);
    int rc = sm_insert_swiglu_act(&f->c, &s, act->t, h1->t, h3->t);
    fx_resize(act, R_ROWS * I_FF);
    sm_swiglu_act(RF(act), RF(h1), RF(h3), (size_t)R_ROWS * I_FF);
    fx_check(f, "swiglu_act of an expert's rows", rc,
             WANT("swiglu_act", 6.0 * I_FF, SM_W(act->t), SM_R(h1->t), SM_R(h3->t)));
}

static void case_swiglu_act(fx *f)
{
    ct *act = fx_rand(f, "act", T * I_FF), *h1 = fx_rand(f, "h1", T * I_FF);
    ct *h3 = fx_rand(f, "h3", T * I_FF);
    sm_ffn_shape s = {.n = T, .d = D, .I = I_FF, .expert = -1};
    int rc = sm_insert_swiglu_act(&f->c, &s, act->t, h1->t, h3->t);
    sm_swiglu_act(RF(act), RF(h1), RF(h3), (size_t)T * I_FF);
    fx_check(f, "swiglu_act", rc,
             WANT("swiglu_act", 6.0 * T * I_FF, SM_W(act->t), SM_R(h1->t), SM_R(h3->t)));
    swiglu_act_rows(f);
}

static void case_swiglu_grad(fx *f)
{
    ct *dh1 = fx_rand(f, "dh1", T * I_FF), *dh3 = fx_rand(f, "dh3", T * I_FF);
    ct *h1 = fx_rand(f, "h1", T * I_FF), *h3 = fx_rand(f, "h3", T * I_FF);
    sm_ffn_shape s = {.n = T, .d = D, .I = I_FF, .expert = -1};
    int rc = sm_insert_swiglu_grad(&f->c, &s, dh1->t, dh3->t, h1->t, h3->t);
    sm_swiglu_grad(RF(dh1), RF(dh3), RF(h1), RF(h3), (size_t)T * I_FF);
    fx_check(f, "swiglu_grad", rc,
             WANT("swiglu_grad", 10.0 * T * I_FF, SM_RW(dh1->t), SM_W(dh3->t), SM_R(h1->t),
                  SM_R(h3->t)));
}

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
    ct *loss = fx_rand(f, "loss", 1), *logits = fx_rand(f, "logits", T * V);
    ct *targets = fx_ids(f, "targets", T, V);
    float grad[T * V];
    int rc = sm_insert_cross_entropy(&f->c, loss->t, logits->t, logits->t, targets->t, T, V,
                                     0.25f);
    RF(loss)[0] = (float)sm_cross_entropy(grad, RF(logits), RI(targets), T, V, 0.25f);
    memcpy(RF(logits), grad, sizeof grad);
    fx_check(f, "cross_entropy with gradient over the logits", rc,
             WANT("cross_entropy", 5.0 * T * V, SM_W(loss->t), SM_RW(logits->t),
                  SM_R(targets->t)));
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

static void case_weighted_scalars(fx *f)
{
    const float w[3] = {1.0f, 0.15f, -2.5f};
    ct *out = fx_rand(f, "out", 1), *p[3] = {fx_rand(f, "p0", 1), fx_rand(f, "p1", 1),
                                             fx_rand(f, "p2", 1)};
    sm_tensor *parts[3] = {p[0]->t, p[1]->t, p[2]->t};
    fx_expect(f, sm_insert_weighted_scalars(&f->c, out->t, parts, w, 0) == -1 &&
                     sm_graph_ntasks(f->g) == 0,
              "weighted_scalars: no parts is refused");
    int rc = sm_insert_weighted_scalars(&f->c, out->t, parts, w, 3);
    double s = 0;
    for (int i = 0; i < 3; i++) s += (double)w[i] * RF(p[i])[0];
    RF(out)[0] = (float)s;
    fx_check(f, "weighted_scalars", rc,
             WANT("weighted_scalars", 6, SM_W(out->t), SM_R(parts[0]), SM_R(parts[1]),
                  SM_R(parts[2])));
}

static void case_copy(fx *f)
{
    ct *dst = fx_rand(f, "dst", 10), *src = fx_rand(f, "src", 10);
    ct *other = fx_rand(f, "other", 11);
    fx_expect(f, sm_insert_copy(&f->c, SM_FORWARD, other->t, src->t) == -1 &&
                     sm_graph_ntasks(f->g) == 0,
              "copy: tensors of different sizes are refused");
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

/* a bucket of three members (sizes 5, 7, 3) and the members themselves */
enum { BUCKET_N = 3, BUCKET_NUMEL = 15 };
static const size_t bucket_sizes[BUCKET_N] = {5, 7, 3};

static void case_pack(fx *f)
{
    ct *bucket = fx_rand(f, "bucket", BUCKET_NUMEL), *m[BUCKET_N];
    sm_tensor *members[BUCKET_N];
    const float *src[BUCKET_N];
    for (int i = 0; i < BUCKET_N; i++) {
        m[i] = fx_rand(f, "member", bucket_sizes[i]);
        members[i] = m[i]->t;
        src[i] = RF(m[i]);
    }
    int rc = sm_insert_pack(&f->c, bucket->t, members, BUCKET_N);
    sm_pack(RF(bucket), src, bucket_sizes, BUCKET_N);
    fx_expect(f, RF(bucket)[5] == src[1][0] && RF(bucket)[14] == src[2][2],
              "pack: member 1 starts at 5, member 2 ends the bucket");
    fx_check(f, "pack", rc, WANT("pack", 0, SM_W(bucket->t), SM_R(members[0]), SM_R(members[1]),
                                 SM_R(members[2])));
}

static void case_unpack(fx *f)
{
    ct *bucket = fx_rand(f, "bucket", BUCKET_NUMEL), *m[BUCKET_N];
    ct *other = fx_rand(f, "other", BUCKET_NUMEL + 1);
    sm_tensor *members[BUCKET_N];
    float *dst[BUCKET_N];
    for (int i = 0; i < BUCKET_N; i++) {
        m[i] = fx_rand(f, "member", bucket_sizes[i]);
        members[i] = m[i]->t;
        dst[i] = RF(m[i]);
    }
    sm_error err = {0};
    sm_op_ctx refused = f->c;
    refused.err = &err;
    fx_expect(f, sm_insert_unpack(&refused, other->t, members, BUCKET_N) == -1 &&
                     strstr(err.msg, "holds 16 floats, its 3 members 15") &&
                     sm_graph_ntasks(f->g) == 0,
              "unpack: members of another size than the bucket are refused");
    int rc = sm_insert_unpack(&f->c, bucket->t, members, BUCKET_N);
    sm_unpack(dst, bucket_sizes, BUCKET_N, RF(bucket));
    fx_expect(f, dst[1][0] == RF(bucket)[5] && dst[2][2] == RF(bucket)[14],
              "unpack: member 1 starts at 5, member 2 ends the bucket");
    fx_check(f, "unpack", rc, WANT("unpack", 0, SM_R(bucket->t), SM_W(members[0]),
                                   SM_W(members[1]), SM_W(members[2])));
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

const helper_case codelet_cases_dense[] = {
    HELPER_CASE(embedding_fwd), HELPER_CASE(embedding_bwd), HELPER_CASE(rmsnorm_fwd),
    HELPER_CASE(rmsnorm_bwd), HELPER_CASE(linear_fwd), HELPER_CASE(linear_bwd_input),
    HELPER_CASE(linear_bwd_weight), HELPER_CASE(swiglu_fwd), HELPER_CASE(swiglu_bwd_input),
    HELPER_CASE(swiglu_bwd_weight), HELPER_CASE(swiglu_bwd), HELPER_CASE(swiglu_act),
    HELPER_CASE(swiglu_grad), HELPER_CASE(cross_entropy),
    HELPER_CASE(sum_scalars), HELPER_CASE(weighted_scalars), HELPER_CASE(copy), HELPER_CASE(sum_tensors), HELPER_CASE(pack),
    HELPER_CASE(unpack), HELPER_CASE(zero), HELPER_CASE(nop), {NULL, NULL}};
