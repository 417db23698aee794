/* `starmoe eval`'s dump of a model with Multi-Token Prediction (the mtp-d1 fixture) against the
 * float64 reference's expected.safetensors, through the public sm_eval(): every tensor the
 * reference wrote is in the dump (loss, loss_main, loss_mtp, logits, mtp_logits, hidden states,
 * routing of the layers and of the MTP block, every gradient including those of the module's
 * copies of the embedding and the head) and agrees; the copies' gradients are the shared
 * tensors' bit for bit; inputs without mtp_targets (derived from the targets) give the same
 * dump; a bad mtp target is refused with the tensor named. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <starmoe/starmoe.h>
#include "io/safetensors.h"
#include "tests/tap.h"
#include "tests/testutil.h"

static float *load(const sm_st_file *f, const sm_st_tensor *t)
{
    sm_error err;
    float *v = malloc((size_t)sm_st_numel(t) * sizeof *v);
    if (v && sm_st_convert_f32(f, t, v, &err)) {
        tap_diag("%s", err.msg);
        free(v);
        return NULL;
    }
    return v;
}

static int same_row_set(const float *a, const float *b, int K)
{
    for (int i = 0; i < K; i++) {
        int found = 0;
        for (int j = 0; j < K; j++) found |= a[i] == b[j];
        if (!found) return 0;
    }
    return 1;
}

/* Compares every tensor of `want` with the dump's tensor of that name; routing indices as
 * per-token sets, losses to 1e-5, activations to 1e-4 max abs, gradients to 1e-4 relative
 * Frobenius. Returns the number of tensors that differ (each reported). */
static int compare_all(const sm_st_file *got, const sm_st_file *want, int K)
{
    int bad = 0;
    for (int i = 0; i < want->ntensors; i++) {
        const sm_st_tensor *w = &want->tensors[i], *g = sm_st_find(got, w->name);
        if (!strncmp(w->name, "rope.", 5)) continue;  /* the reference's tables, not dumped */
        if (strstr(w->name, "routing.") && strstr(w->name, ".weights")) continue; /* by set */
        if (!g || sm_st_numel(g) != sm_st_numel(w)) {
            tap_diag("%s: %s in the dump", w->name, g ? "another size" : "missing");
            bad++;
            continue;
        }
        float *a = load(got, g), *b = load(want, w);
        size_t n = (size_t)sm_st_numel(w);
        double e = 0, tol;
        int ok = a && b;
        if (ok && strstr(w->name, ".indices")) {
            for (size_t r = 0; r < n / K; r++) ok &= same_row_set(a + r * K, b + r * K, K);
            e = !ok;
            tol = 0;
        } else if (ok && !strncmp(w->name, "grad.", 5)) {
            e = tu_rel_frob(a, b, n);
            tol = 1e-4;
        } else if (ok && !strncmp(w->name, "loss", 4)) {
            e = fabs((double)a[0] - b[0]);
            tol = 1e-5;
        } else {
            e = ok ? tu_max_abs_diff(a, b, n) : INFINITY;
            tol = 1e-4;
        }
        if (!ok || !(e <= tol)) {
            tap_diag("%s: error %.3g > %.3g", w->name, e, tol);
            bad++;
        }
        free(a);
        free(b);
    }
    return bad;
}

/* Whether dump tensors a and b hold the same bytes. */
static int same_bytes(const sm_st_file *f, const char *a, const char *b)
{
    const sm_st_tensor *x = sm_st_find(f, a), *y = sm_st_find(f, b);
    sm_error err;
    if (!x || !y || x->end - x->begin != y->end - y->begin) return 0;
    void *p = sm_st_load_raw(f, x, &err), *q = sm_st_load_raw(f, y, &err);
    int same = p && q && !memcmp(p, q, x->end - x->begin);
    free(p);
    free(q);
    return same;
}

/* inputs.safetensors of the fixture rewritten into `path` with input_ids, targets and, when
 * mtp_target is not 0, mtp_targets = -1 everywhere but position 0 of sequence 0, set to it. */
static int write_inputs(const char *fixture, const char *path, int mtp_target, sm_error *err)
{
    char src[1200];
    sm_st_file f;
    snprintf(src, sizeof src, "%s/inputs.safetensors", fixture);
    if (sm_st_open(&f, src, err)) return -1;
    const sm_st_tensor *t = sm_st_find(&f, "input_ids");
    size_t n = (size_t)sm_st_numel(t);
    int32_t *ids = malloc(n * sizeof *ids), *tg = malloc(n * sizeof *tg), *mt = malloc(n * sizeof *mt);
    sm_st_writer *w = sm_st_writer_new();
    int rc = sm_st_read_i32(&f, "input_ids", 2, t->shape, ids, err) ||
             sm_st_read_i32(&f, "targets", 2, t->shape, tg, err) ||
             sm_st_writer_add(w, "input_ids", SM_I32, 2, t->shape, ids, err) ||
             sm_st_writer_add(w, "targets", SM_I32, 2, t->shape, tg, err);
    for (size_t i = 0; i < n; i++) mt[i] = i ? -1 : mtp_target;
    if (!rc && mtp_target) rc = sm_st_writer_add(w, "mtp_targets", SM_I32, 2, t->shape, mt, err);
    rc = rc ? -1 : sm_st_writer_write(w, path, err);
    sm_st_writer_free(w);
    sm_st_close(&f);
    free(ids);
    free(tg);
    free(mt);
    return rc;
}

int main(void)
{
    char fixture[1100], path[1200], derived[1200], inputs[1200], bad_in[1200], tmp[] =
        "/tmp/starmoe-eval-mtp-XXXXXX";
    sm_error err = {{0}};
    sm_engine_opts e = {.ncpus = 2};
    if (!tap_ok(sm_engine_init(&e, &err) == 0, "engine starts %s", err.msg) || !mkdtemp(tmp))
        return tap_done();
    snprintf(fixture, sizeof fixture, "%s/tests/fixtures/mtp-d1", tu_srcdir());
    snprintf(inputs, sizeof inputs, "%s/inputs.safetensors", fixture);
    snprintf(path, sizeof path, "%s/dump.safetensors", tmp);
    double loss = 0, parts[2] = {0, 0};
    sm_eval_opts o = {.model_dir = fixture, .inputs = inputs, .dump = path, .micro = 2,
                      .loss_parts = parts};
    tap_ok(sm_eval(&o, &loss, NULL, &err) == 0, "eval of the MTP fixture runs %s", err.msg);
    tap_ok(fabs(loss - (parts[0] + 0.3 * parts[1])) < 1e-5,
           "loss %.6f = loss_main %.6f + 0.3 x loss_mtp %.6f", loss, parts[0], parts[1]);

    sm_st_file got, want, again;
    char exp_path[1200];
    snprintf(exp_path, sizeof exp_path, "%s/expected.safetensors", fixture);
    if (tap_ok(sm_st_open(&got, path, &err) == 0 && sm_st_open(&want, exp_path, &err) == 0,
               "dump and reference open %s", err.msg)) {
        tap_ok(compare_all(&got, &want, 2) == 0, "every one of the reference's %d tensors is in "
               "the dump and agrees", want.ntensors);
        tap_ok(sm_st_find(&got, "mtp_logits") && sm_st_find(&got, "routing.layers.3.indices") &&
                   sm_st_find(&got, "loss_mtp"),
               "the dump has mtp_logits, loss_mtp and the MTP block's routing");
        tap_ok(same_bytes(&got, "grad.model.layers.3.embed_tokens.weight",
                          "grad.model.embed_tokens.weight") &&
                   same_bytes(&got, "grad.model.layers.3.shared_head.head.weight",
                              "grad.lm_head.weight"),
               "the copies' gradients are the embedding's and the head's bit for bit");
        /* without mtp_targets the targets shifted by one are the depth's */
        snprintf(derived, sizeof derived, "%s/derived.safetensors", tmp);
        snprintf(bad_in, sizeof bad_in, "%s/inputs.safetensors", tmp);
        o.inputs = bad_in;
        o.dump = derived;
        if (tap_ok(write_inputs(fixture, bad_in, 0, &err) == 0 &&
                       sm_eval(&o, &loss, NULL, &err) == 0 && sm_st_open(&again, derived, &err) == 0,
                   "eval without mtp_targets runs %s", err.msg)) {
            tap_ok(compare_all(&again, &want, 2) == 0,
                   "without mtp_targets (the targets shifted by one): the dump agrees too");
            sm_st_close(&again);
        }
        sm_st_close(&got);
        sm_st_close(&want);
    }
    /* a target outside the vocabulary */
    o.dump = NULL;
    tap_ok(write_inputs(fixture, bad_in, 99999, &err) == 0 && sm_eval(&o, &loss, NULL, &err) != 0 &&
               strstr(err.msg, "mtp_targets") && strstr(err.msg, "99999"),
           "an mtp target outside the vocabulary is refused: %s", err.msg);
    unlink(path);
    unlink(derived);
    unlink(bad_in);
    rmdir(tmp);
    sm_engine_shutdown();
    return tap_done();
}
