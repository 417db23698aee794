/* FP8 training's graph (model/linear.c, tasks/fp8.c) on the fixture dsv3-tiny-a: a step with
 * sm_run_opts.fp8 has the casts and FP8 GEMMs as tasks of their own ops (per linear of the
 * recipe one Fprop, Dgrad and Wgrad GEMM; per input one cast and one re-quantisation for
 * Wgrad, shared by the linears that read it; per weight one block cast and one transpose), its
 * loss within 1e-3 relative of the float32 step's and its gradients close to the float32 ones
 * (the recipe's E4M3 rounding: a few percent per GEMM), the same bit for bit when run again,
 * and a step of the MTP fixture runs too. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <starmoe/starmoe.h>
#include "io/safetensors.h"
#include "model/model.h"
#include "tests/tap.h"
#include "tests/testutil.h"

typedef struct inputs {
    int B, S;
    int32_t *ids, *targets;
} inputs;

static int load_inputs(const char *dir, inputs *in, sm_error *err)
{
    char path[1200];
    sm_st_file f;
    snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
    if (sm_st_open(&f, path, err)) return -1;
    const sm_st_tensor *t = sm_st_find(&f, "input_ids");
    in->B = (int)t->shape[0];
    in->S = (int)t->shape[1];
    in->ids = malloc((size_t)in->B * in->S * sizeof *in->ids);
    in->targets = malloc((size_t)in->B * in->S * sizeof *in->targets);
    int rc = sm_st_read_i32(&f, "input_ids", 2, t->shape, in->ids, err) ||
                     sm_st_read_i32(&f, "targets", 2, t->shape, in->targets, err)
                 ? -1
                 : 0;
    sm_st_close(&f);
    return rc;
}

/* One step; the loss, every gradient (concatenated) and the count of each op in `ops`. */
static float *step(sm_model *m, const inputs *in, int fp8, double *loss, const char *const *ops,
                   int nops, int *count, size_t *ngrad)
{
    sm_error err = {{0}};
    sm_run_opts o = {.fp8 = fp8};
    sm_run *r = sm_run_new_with(m, in->B, in->S, 1, 1, &o, &err);
    if (!r || sm_run_step(r, in->ids, in->targets, loss, &err)) {
        tap_diag("step: %s", err.msg);
        sm_run_free(r);
        return NULL;
    }
    memset(count, 0, nops * sizeof *count);
    for (size_t i = 0; i < sm_graph_ntasks(m->g); i++)
        for (int k = 0; k < nops; k++) count[k] += !strcmp(sm_graph_task(m->g, i)->meta.op, ops[k]);
    size_t n = 0;
    for (int i = 0; i < m->nall; i++) n += m->all[i].g ? m->all[i].g->numel : 0;
    float *g = malloc(n * sizeof *g);
    *ngrad = 0;
    for (int i = 0; i < m->nall; i++) {
        const float *gi = sm_model_param_grad(m, i);
        if (!gi) continue;
        memcpy(g + *ngrad, gi, m->all[i].g->numel * sizeof *g);
        *ngrad += m->all[i].g->numel;
    }
    sm_run_free(r);
    return g;
}

int main(void)
{
    static const char *const ops[] = {"fp8_quant_tiles", "fp8_quant_blocks",
                                      "fp8_transpose_blocks", "fp8_quant_tiles_t",
                                      "fp8_requant_t", "fp8_gemm", "fp8_gemm_wgrad",
                                      "swiglu_act", "swiglu_grad"};
    enum { NOPS = sizeof ops / sizeof *ops };
    sm_error err = {{0}};
    sm_engine_opts e = {.ncpus = 2};
    char dir[1100];
    inputs in = {0};
    alarm(300); /* a hang fails the test */
    if (!tap_ok(sm_engine_init(&e, &err) == 0, "engine starts %s", err.msg)) return tap_done();
    snprintf(dir, sizeof dir, "%s/tests/fixtures/dsv3-tiny-a", tu_srcdir());
    sm_model *m = sm_model_open_hf(dir, &err);
    if (!tap_ok(m && load_inputs(dir, &in, &err) == 0, "fixture dsv3-tiny-a opens %s", err.msg))
        return tap_done();
    double l32, l8, again;
    int c32[NOPS], c8[NOPS], c8b[NOPS];
    size_t n32, n8, n8b;
    float *g32 = step(m, &in, 0, &l32, ops, NOPS, c32, &n32);
    float *g8 = step(m, &in, 1, &l8, ops, NOPS, c8, &n8);
    float *g8b = step(m, &in, 1, &again, ops, NOPS, c8b, &n8b);
    if (!tap_ok(g32 && g8 && g8b && n32 == n8 && n8 == n8b, "float32 and FP8 steps run"))
        return tap_done();
    /* 3 layers: 5 MLA linears (q_a, q_b, kv_a, kv_b, o) each; the dense FFN of layer 0, the
     * shared experts of layers 1 and 2 and their 8 routed experts each (3 linears a SwiGLU):
     * 72 linears and weights; the inputs cast, and re-quantised once for the Wgrads: 4 an
     * attention (q_a and kv_a share theirs), 2 a SwiGLU (gate and up share theirs) */
    int swiglus = 3 + 2 * 8, linears = 3 * 5 + 3 * swiglus, inputs_cast = 3 * 4 + 2 * swiglus;
    tap_ok(c32[5] == 0 && c8[1] == linears && c8[2] == linears && c8[5] == 2 * linears &&
               c8[6] == linears && c8[3] == linears && c8[4] == inputs_cast &&
               c8[0] == inputs_cast + linears && c8[7] == swiglus && c8[8] == swiglus,
           "the FP8 step's casts and GEMMs are tasks: %d fp8_quant_tiles (%d inputs, %d "
           "gradients), %d fp8_quant_blocks, %d fp8_transpose_blocks, %d fp8_gemm, %d "
           "fp8_gemm_wgrad, %d fp8_quant_tiles_t, %d fp8_requant_t, %d swiglu_act/grad",
           c8[0], inputs_cast, linears, c8[1], c8[2], c8[5], c8[6], c8[3], c8[4], c8[7]);
    double rel = fabs(l8 - l32) / l32;
    tap_ok(rel < 1e-3, "FP8 loss %.6f vs float32 %.6f: relative %.2g < 1e-3", l8, l32, rel);
    double gerr = tu_rel_frob(g8, g32, n32);
    tap_ok(gerr < 0.25, "FP8 gradients vs float32: relative Frobenius error %.3f < 0.25 (E4M3 "
                        "keeps 3 mantissa bits)", gerr);
    tap_ok(again == l8 && !memcmp(g8, g8b, n8 * sizeof *g8),
           "the FP8 step again: the same loss and gradients bit for bit");
    free(g32);
    free(g8);
    free(g8b);
    free(in.ids);
    free(in.targets);
    sm_model_free(m);

    /* MTP: the module's block runs its linears in FP8 too */
    snprintf(dir, sizeof dir, "%s/tests/fixtures/mtp-d1", tu_srcdir());
    m = sm_model_open_hf(dir, &err);
    if (tap_ok(m && load_inputs(dir, &in, &err) == 0, "fixture mtp-d1 opens %s", err.msg)) {
        g8 = step(m, &in, 1, &l8, ops, NOPS, c8, &n8);
        g32 = step(m, &in, 0, &l32, ops, NOPS, c32, &n32);
        tap_ok(g8 && g32 && fabs(l8 - l32) / l32 < 1e-3 && c8[5] > 0,
               "an FP8 step with an MTP module: loss %.6f vs float32 %.6f", l8, l32);
        free(g8);
        free(g32);
    }
    free(in.ids);
    free(in.targets);
    sm_model_free(m);
    sm_engine_shutdown();
    return tap_done();
}
