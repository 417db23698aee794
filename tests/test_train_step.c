/* Training steps as task graphs: on a fixed batch, AdamW steps with clipping, the balance loss
 * and the bias update drive the loss down; the same seed gives bitwise the same losses; a
 * non-finite loss skips the step and leaves every weight and moment untouched. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <starmoe/starmoe.h>
#include "tests/tap.h"
#include "tests/testutil.h"

enum { B = 4, S = 16, STEPS = 12 };

static const sm_optim_hp hp = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8,
                               .weight_decay = 0.1, .grad_clip = 1.0, .bias_update_speed = 1e-3};

/* Trains STEPS steps from seed 7 on one batch; writes the losses. */
static int train(double *losses, int *applied_all)
{
    sm_config c = tu_tiny_config();
    sm_error err = {{0}};
    sm_model *m = sm_model_new(&c, 1, &err);
    sm_optimizer *o = m ? sm_optimizer_new(m, &err) : NULL;
    sm_run *r = o ? sm_run_new(m, B, S, 2, 1, &err) : NULL;
    int32_t ids[B * S], tg[B * S];
    if (!r) {
        tap_diag("%s", err.msg);
        return -1;
    }
    sm_model_init_random(m, 7, 0.02);
    sm_run_set_balance(r, 1e-4);
    for (int i = 0; i < B * S; i++) {
        ids[i] = (i * 37 + 11) % c.vocab_size;
        tg[i] = (i * 37 + 48) % c.vocab_size;
    }
    *applied_all = 1;
    for (int s = 0; s < STEPS; s++) {
        int applied;
        if (sm_run_submit(r, ids, tg, &err) || sm_optimizer_submit(o, r, &hp, &err)) return -1;
        sm_run_wait(r, &losses[s]);
        sm_optimizer_result(o, NULL, &applied);
        *applied_all &= applied;
    }
    sm_run_free(r);
    sm_optimizer_free(o);
    sm_model_free(m);
    return 0;
}

/* All parameters, concatenated (malloc'd); *n receives the count. */
static float *snapshot(sm_model *m, size_t *n)
{
    size_t total = 0, at = 0;
    for (int pass = 0; pass < 2; pass++) {
        float *dst = pass ? malloc(total * sizeof *dst) : NULL;
        for (int i = 0; i < sm_model_nparams(m); i++) {
            int64_t shape[4];
            int nd = sm_model_param_shape(m, i, shape);
            size_t k = 1;
            for (int d = 0; d < nd; d++) k *= (size_t)shape[d];
            if (dst) memcpy(dst + at, sm_model_param_data(m, i), k * sizeof *dst);
            at += k;
        }
        if (dst) {
            *n = total;
            return dst;
        }
        total = at;
        at = 0;
    }
    return NULL;
}

static void test_nan_skips(void)
{
    sm_config c = tu_tiny_config();
    sm_error err = {{0}};
    sm_model *m = sm_model_new(&c, 1, &err);
    sm_optimizer *o = sm_optimizer_new(m, &err);
    sm_run *r = sm_run_new(m, 2, 8, 1, 1, &err);
    int32_t ids[16], tg[16];
    size_t n;
    for (int i = 0; i < 16; i++) ids[i] = tg[i] = i;
    sm_model_init_random(m, 3, 0.02);
    sm_model_param_data(m, 0)[5] = NAN; /* an embedding row the batch reads */
    float *before = snapshot(m, &n);
    double loss, norm;
    int applied = 1;
    sm_run_submit(r, ids, tg, &err);
    sm_optimizer_submit(o, r, &hp, &err);
    sm_run_wait(r, &loss);
    sm_optimizer_result(o, &norm, &applied);
    float *after = snapshot(m, &n);
    tap_ok(!isfinite(loss) && !applied, "a NaN weight gives a non-finite loss and the step is "
           "skipped (loss %g, applied %d)", loss, applied);
    tap_ok(memcmp(before, after, n * sizeof *before) == 0, "a skipped step changes no weight");
    tap_ok(sm_optimizer_steps(o) == 0, "a skipped step does not count for AdamW");
    free(before);
    free(after);
    sm_run_free(r);
    sm_optimizer_free(o);
    sm_model_free(m);
}

int main(void)
{
    sm_engine_opts e = {.ncpus = 2};
    sm_error err = {{0}};
    double a[STEPS], b[STEPS];
    int applied_a = 0, applied_b = 0;
    if (!tap_ok(sm_engine_init(&e, &err) == 0, "engine starts %s", err.msg)) return tap_done();
    int rc = train(a, &applied_a) | train(b, &applied_b);
    tap_ok(rc == 0 && applied_a && applied_b, "%d training steps run and apply", STEPS);
    tap_ok(a[STEPS - 1] < 0.7 * a[0], "loss falls on a fixed batch (%.4f -> %.4f)", a[0],
           a[STEPS - 1]);
    tap_ok(memcmp(a, b, sizeof a) == 0, "same seed, bitwise the same losses (%.9g, %.9g)",
           a[STEPS - 1], b[STEPS - 1]);
    test_nan_skips();
    sm_engine_shutdown();
    return tap_done();
}
