/* The engine against the official DeepSeek-V3 code and our float64 reference: for each
 * fixture folder (every folder under tests/fixtures, or the arguments) runs
 * forward and backward through StarPU and compares logits (max abs <= 1e-4), loss (<= 1e-5),
 * routing sets per token (identical), hidden states, and every gradient (relative Frobenius
 * <= 1e-4), with 1 and 2 micro-batches; with Multi-Token Prediction modules also the main and
 * each depth's loss and each depth's logits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <starmoe/starmoe.h>
#include "io/safetensors.h"
#include "tests/tap.h"
#include "tests/testutil.h"

#define MAX_DEPTH 4

typedef struct fixture {
    char dir[1024];
    sm_st_file inputs, expected;
    int B, S;
    int32_t *ids, *targets;
    int32_t *mtp_targets[MAX_DEPTH];         /* each MTP depth's, when the fixture has them */
} fixture;

/* An MTP depth's output name: `what` for depth 1, `what.K` for depth K > 1. */
static const char *depth_name(char *buf, size_t n, const char *what, int k)
{
    if (k == 1) snprintf(buf, n, "%s", what);
    else snprintf(buf, n, "%s.%d", what, k);
    return buf;
}

static float *read_expected(fixture *fx, const char *name, size_t *n)
{
    const sm_st_tensor *t = sm_st_find(&fx->expected, name);
    *n = 0;
    if (!t) return NULL;
    *n = (size_t)sm_st_numel(t);
    float *v = malloc(*n * sizeof *v);
    sm_error err;
    if (sm_st_read_f32(&fx->expected, name, t->ndim, t->shape, v, &err)) {
        tap_diag("%s", err.msg);
        free(v);
        return NULL;
    }
    return v;
}

static int same_set(const int32_t *a, const float *b, int K)
{
    for (int i = 0; i < K; i++) {
        int found = 0;
        for (int j = 0; j < K; j++) found |= a[i] == (int32_t)b[j];
        if (!found) return 0;
    }
    return 1;
}

static void check_routing(fixture *fx, sm_run *r, const sm_config *c, int l, const char *tag)
{
    char name[96];
    size_t n;
    snprintf(name, sizeof name, "routing.layers.%d.indices", l);
    float *want = read_expected(fx, name, &n);
    if (!want) return;
    int K = c->num_experts_per_tok, rows = (int)(n / K), same = 1;
    int32_t *idx = malloc(n * sizeof *idx);
    float *w = malloc(n * sizeof *w);
    sm_run_routing(r, l, idx, w);
    for (int t = 0; t < rows; t++) same &= same_set(idx + t * K, want + t * K, K);
    tap_ok(same, "%s layer %d routing sets identical on %d tokens", tag, l, rows);
    free(idx);
    free(w);
    free(want);
}

static void check_grads(fixture *fx, sm_model *m, const char *tag)
{
    double worst = 0;
    const char *worst_name = "";
    int missing = 0, checked = 0;
    for (int i = 0; i < sm_model_nparams(m); i++) {
        const float *g = sm_model_param_grad(m, i);
        char name[320];
        size_t n;
        if (!g) continue;
        snprintf(name, sizeof name, "grad.%s", sm_model_param_name(m, i));
        float *want = read_expected(fx, name, &n);
        if (!want) {
            missing++;
            continue;
        }
        double e = tu_rel_frob(g, want, n);
        if (e > worst) {
            worst = e;
            worst_name = sm_model_param_name(m, i);
        }
        checked++;
        free(want);
    }
    tap_ok(missing == 0, "%s every parameter gradient has a reference (%d missing)", tag, missing);
    tap_ok(checked > 0 && worst <= 1e-4, "%s %d gradients, worst relative Frobenius error %.3g "
           "(%s) <= 1e-4", tag, checked, worst, worst_name);
}

/* With MTP modules: the main loss, each depth's loss and logits. */
static void check_mtp(fixture *fx, sm_run *r, const char *tag)
{
    char name[32];
    size_t n;
    float *want = read_expected(fx, "loss_main", &n);
    if (want) tap_close(sm_run_loss_part(r, 0), want[0], 1e-5, "loss_main");
    free(want);
    for (int k = 1; k <= sm_run_mtp_depth(r); k++) {
        want = read_expected(fx, depth_name(name, sizeof name, "loss_mtp", k), &n);
        if (tap_ok(want != NULL, "%s the fixture has %s", tag, name))
            tap_close(sm_run_loss_part(r, k), want[0], 1e-5, name);
        free(want);
        want = read_expected(fx, depth_name(name, sizeof name, "mtp_logits", k), &n);
        if (!tap_ok(want != NULL, "%s the fixture has %s", tag, name)) continue;
        float *got = malloc(n * sizeof *got);
        sm_run_mtp_logits(r, k, got);
        double e = tu_max_abs_diff(got, want, n);
        tap_ok(e <= 1e-4, "%s %s max abs error %.3g <= 1e-4", tag, name, e);
        free(got);
        free(want);
    }
}

static void check_run(fixture *fx, sm_model *m, int micro)
{
    const sm_config *c = sm_model_config(m);
    char tag[32];
    sm_error err = {{0}};
    double loss = 0;
    size_t n;
    snprintf(tag, sizeof tag, "[micro %d]", micro);
    sm_run *r = sm_run_new(m, fx->B, fx->S, micro, 1, &err);
    const char *lambda = sm_st_meta(&fx->expected, "mtp_lambda");
    if (r && lambda) sm_run_set_mtp_lambda(r, atof(lambda));
    if (!tap_ok(r && sm_run_submit_mtp(r, fx->ids, fx->targets,
                                       (const int32_t *const *)fx->mtp_targets, &err) == 0,
                "%s step runs %s", tag, err.msg)) {
        sm_run_free(r);
        return;
    }
    sm_run_wait(r, &loss);
    float *want = read_expected(fx, "loss", &n);
    tap_close(loss, want ? want[0] : 0, 1e-5, "loss");
    free(want);
    want = read_expected(fx, "logits", &n);
    float *logits = malloc(n * sizeof *logits);
    sm_run_logits(r, logits);
    double e = tu_max_abs_diff(logits, want, n);
    tap_ok(e <= 1e-4, "%s logits max abs error %.3g <= 1e-4", tag, e);
    free(logits);
    free(want);
    check_mtp(fx, r, tag);
    for (int l = 0; l < c->num_hidden_layers + sm_run_mtp_depth(r); l++) {
        char name[64];
        snprintf(name, sizeof name, "hidden.layers.%d.output", l);
        if ((want = read_expected(fx, name, &n))) {
            float *h = malloc(n * sizeof *h);
            sm_run_hidden(r, l, h);
            e = tu_max_abs_diff(h, want, n);
            tap_ok(e <= 1e-4, "%s hidden after layer %d max abs error %.3g", tag, l, e);
            free(h);
            free(want);
        }
        if (sm_config_layer_is_moe(c, l)) check_routing(fx, r, c, l, tag);
    }
    check_grads(fx, m, tag);
    sm_run_free(r);
}

static int load_inputs(fixture *fx, sm_error *err)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/inputs.safetensors", fx->dir);
    if (sm_st_open(&fx->inputs, path, err)) return -1;
    snprintf(path, sizeof path, "%s/expected.safetensors", fx->dir);
    if (sm_st_open(&fx->expected, path, err)) return -1;
    const sm_st_tensor *t = sm_st_find(&fx->inputs, "input_ids");
    if (!t || t->ndim != 2) return sm_fail(err, "no input_ids [B, S]");
    fx->B = (int)t->shape[0];
    fx->S = (int)t->shape[1];
    fx->ids = malloc(sm_st_numel(t) * sizeof *fx->ids);
    fx->targets = malloc(sm_st_numel(t) * sizeof *fx->targets);
    if (sm_st_read_i32(&fx->inputs, "input_ids", 2, t->shape, fx->ids, err) ||
        sm_st_read_i32(&fx->inputs, "targets", 2, t->shape, fx->targets, err))
        return -1;
    for (int k = 1; k <= MAX_DEPTH; k++) {
        char name[32];
        if (!sm_st_find(&fx->inputs, depth_name(name, sizeof name, "mtp_targets", k))) break;
        fx->mtp_targets[k - 1] = malloc(sm_st_numel(t) * sizeof *fx->ids);
        if (sm_st_read_i32(&fx->inputs, name, 2, t->shape, fx->mtp_targets[k - 1], err))
            return -1;
    }
    return 0;
}

static void check_fixture(const char *dir)
{
    fixture fx;
    sm_error err = {{0}};
    memset(&fx, 0, sizeof fx);
    snprintf(fx.dir, sizeof fx.dir, "%s", dir);
    if (tap_ok(load_inputs(&fx, &err) == 0, "fixture %s loads %s", fx.dir, err.msg)) {
        sm_model *m = sm_model_open_hf(fx.dir, &err);
        if (tap_ok(m != NULL, "model folder opens %s", err.msg)) {
            check_run(&fx, m, 1);
            if (fx.B % 2 == 0) check_run(&fx, m, 2);
        }
        sm_model_free(m);
    }
    sm_st_close(&fx.inputs);
    sm_st_close(&fx.expected);
    free(fx.ids);
    free(fx.targets);
    for (int k = 0; k < MAX_DEPTH; k++) free(fx.mtp_targets[k]);
}

/* Fixture folders: the arguments, or every folder of the project's tests/fixtures (the
 * official-code fixture dsv3-tiny-a and those made by tests/ref/dsv3_reference.py). */
int main(int argc, char **argv)
{
    static const char *own[] = {"dsv3-tiny-a", "yarn-g4", "noq-lora", "mscale", "mtp-d1"};
    char dir[1100];
    sm_error err = {{0}};
    sm_engine_opts e = {.ncpus = 2};
    if (!tap_ok(sm_engine_init(&e, &err) == 0, "engine starts %s", err.msg)) return tap_done();
    for (int i = 1; i < argc; i++) check_fixture(argv[i]);
    if (argc == 1) {
        for (size_t i = 0; i < sizeof own / sizeof *own; i++) {
            snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", tu_srcdir(), own[i]);
            check_fixture(dir);
        }
    }
    sm_engine_shutdown();
    return tap_done();
}
