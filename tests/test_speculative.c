/* Speculative decoding with MTP drafts (model/sample.c, model/decode.c's MTP steps,
 * model/speculative.c): the sampling distribution (nucleus, temperature 0, banned token);
 * speculative sampling's rule keeps the target distribution (Monte Carlo over 400000 drafts
 * from several draft distributions, each frequency within 5 standard deviations), and at
 * temperature 0 keeps a draft exactly when it is the target's choice; the MTP decode steps
 * over the module's own cache (in uneven steps, and again after a rewind) give the training
 * graph's mtp_logits of the fixture mtp-d1; greedy speculative generation gives plain
 * decoding's tokens on the fixture and on a random model with two MTP depths. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <starmoe/starmoe.h>
#include "model/decode.h"
#include "model/sample.h"
#include "tests/tap.h"
#include "tests/testutil.h"

enum { VS = 6, DRAWS = 400000 };

static void test_dist(void)
{
    const float logits[VS] = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f, 3.0f};
    double p[VS], sum = 0;
    sm_sample_dist(logits, VS, 1.0, 1.0, -1, p);
    for (int v = 0; v < VS; v++) sum += p[v];
    tap_ok(fabs(sum - 1) < 1e-12 && p[5] > p[0] && p[0] > p[1] && p[4] > 0,
           "the distribution is the softmax (sums to %.15g)", sum);
    sm_sample_dist(logits, VS, 1.0, 0.7, -1, p);
    tap_ok(p[5] > 0 && p[0] > 0 && p[1] == 0 && p[4] == 0 && fabs(p[5] + p[0] - 1) < 1e-12,
           "top-p 0.7 keeps the two most likely tokens, renormalised");
    sm_sample_dist(logits, VS, 0.0, 1.0, 5, p);
    tap_ok(p[0] == 1 && p[5] == 0, "temperature 0 with the best token banned: all on the next");
    uint64_t rng = 3;
    tap_ok(sm_sample_token(logits, VS, 0.0, 1.0, -1, &rng) == 5 &&
               sm_sample_token(logits, VS, 0.0, 1.0, 5, &rng) == 0,
           "greedy sampling picks the distribution's token");
}

/* Frequencies of speculative sampling's output over DRAWS drafts x ~ q against p. */
static double rule_error(const double *p, const double *q, uint64_t seed)
{
    double scratch[VS], count[VS] = {0}, worst = 0;
    uint64_t rng = seed;
    for (int i = 0; i < DRAWS; i++) {
        int ok, x = sm_sample_from(q, VS, &rng);
        count[sm_spec_accept(p, q, x, VS, &rng, scratch, &ok)]++;
    }
    for (int v = 0; v < VS; v++) {
        double sd = sqrt(p[v] * (1 - p[v]) / DRAWS) + 1e-12;
        worst = fmax(worst, fabs(count[v] / DRAWS - p[v]) / sd);
    }
    return worst;
}

static void test_rule(void)
{
    const double p[VS] = {0.35, 0.25, 0.2, 0.1, 0.1, 0.0};
    const double qs[][VS] = {{1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6},
                             {0.05, 0.05, 0.1, 0.4, 0.2, 0.2},
                             {0.0, 0.0, 0.0, 0.0, 1.0, 0.0},
                             {0.35, 0.25, 0.2, 0.1, 0.1, 0.0}};
    for (size_t i = 0; i < sizeof qs / sizeof *qs; i++) {
        double e = rule_error(p, qs[i], 17 + i);
        tap_ok(e < 5, "speculative sampling from draft distribution %zu: every frequency within "
                      "%.2f standard deviations of the target's (< 5)", i, e);
    }
    const double a[VS] = {0, 0, 1, 0, 0, 0}, b[VS] = {0, 0, 0, 1, 0, 0};
    double scratch[VS];
    uint64_t rng = 5;
    int ok_same, ok_other;
    int same = sm_spec_accept(a, a, 2, VS, &rng, scratch, &ok_same);
    int other = sm_spec_accept(a, b, 3, VS, &rng, scratch, &ok_other);
    tap_ok(same == 2 && ok_same && other == 2 && !ok_other,
           "temperature 0: a draft is kept when it is the target's token, else corrected to it");
}

/* The fixture's sequence 0 through the training graph (forward): mtp_logits [S - 1, V]. */
static float *run_mtp_logits(sm_model *m, const int32_t *ids, int S)
{
    sm_error err = {{0}};
    int V = sm_model_config(m)->vocab_size;
    float *want = malloc((size_t)(S - 1) * V * sizeof *want);
    sm_run *r = sm_run_new(m, 1, S, 1, 0, &err);
    int ok = r && sm_run_step(r, ids, NULL, NULL, &err) == 0 && sm_run_mtp_logits(r, 1, want) == 0;
    tap_ok(ok, "the training graph's forward with the MTP module runs %s", err.msg);
    sm_run_free(r);
    return want;
}

/* The main model's steps (storing hidden states), then depth 1's steps of sizes `sizes` over
 * positions 0 .. S-2; the worst difference from want. */
static double mtp_steps(sm_model *m, sm_decode *d, const int32_t *ids, const float *hid,
                        const float *want, int from, const int *sizes, int nsizes, sm_error *err)
{
    int V = sm_model_config(m)->vocab_size, dm = sm_model_config(m)->hidden_size;
    float *logits = malloc((size_t)8 * V * sizeof *logits);
    double worst = 0;
    int pos = from;
    for (int i = 0; i < nsizes && worst < INFINITY; i++, pos += sizes[i - 1]) {
        if (sm_decode_mtp_step(d, 1, ids + pos + 1, hid + (size_t)pos * dm, sizes[i], logits, NULL,
                               err))
            worst = INFINITY;
        else
            worst = fmax(worst, tu_max_abs_diff(logits, want + (size_t)pos * V,
                                                (size_t)sizes[i] * V));
    }
    free(logits);
    return worst;
}

static void test_mtp_decode(sm_model *m, const int32_t *ids, int S)
{
    sm_error err = {{0}};
    int V = sm_model_config(m)->vocab_size, dm = sm_model_config(m)->hidden_size;
    float *want = run_mtp_logits(m, ids, S), *logits = malloc((size_t)8 * V * sizeof *logits);
    float *hid = malloc((size_t)S * dm * sizeof *hid);
    sm_decode *d = sm_decode_new(m, S, 8, 1, &err);
    int ok = d != NULL;
    for (int pos = 0, n; ok && pos < S; pos += n) {
        n = pos == 0 ? 5 : pos < 10 ? 1 : S - pos < 4 ? S - pos : 4;
        ok = sm_decode_step(d, ids + pos, n, logits, hid + (size_t)pos * dm, &err) == 0;
    }
    tap_ok(ok, "main model steps with their hidden states %s", err.msg);
    static const int sizes[] = {4, 1, 3, 1, 1, 5}, again[] = {2, 3, 1};
    double e = ok ? mtp_steps(m, d, ids, hid, want, 0, sizes, 6, &err) : INFINITY;
    tap_ok(e <= 1e-5 && sm_decode_len(d, 1) == S - 1,
           "MTP depth 1 over its cache in steps of 4, 1, 3, 1, 1, 5: the training graph's "
           "mtp_logits (max abs diff %.3g <= 1e-5) %s", e, err.msg);
    sm_decode_rewind(d, 1, 9);
    e = ok ? mtp_steps(m, d, ids, hid, want, 9, again, 3, &err) : INFINITY;
    tap_ok(e <= 1e-5, "after a rewind to 9 positions, the same again (%.3g) %s", e, err.msg);
    tap_ok(sm_decode_mtp_step(d, 2, ids, hid, 1, logits, NULL, &err) == -1 &&
               strstr(err.msg, "depth 2"),
           "a depth the model lacks is refused: %s", err.msg);
    sm_decode_free(d);
    free(want);
    free(logits);
    free(hid);
}

/* `new` greedy tokens after the prompt, speculatively or not (NULL on failure). */
static int32_t *greedy(sm_model *m, const int32_t *prompt, int P, int new, int speculative,
                       sm_generate_stats *st, int *nout, sm_error *err)
{
    sm_sample_opts so = {.temperature = 0, .top_p = 1, .stop_token = -1,
                         .speculative = speculative};
    int32_t *out = NULL;
    return sm_generate_ids(m, prompt, P, new, P + new, &so, &out, nout, st, err) ? NULL : out;
}

/* Greedy generation of `new` tokens speculatively and plainly: the same ids. */
static void test_greedy(sm_model *m, const int32_t *prompt, int P, int new, const char *tag)
{
    sm_error err = {{0}};
    sm_generate_stats st[2];
    int nout[2] = {0, 0};
    int32_t *out[2] = {greedy(m, prompt, P, new, 0, &st[0], &nout[0], &err),
                       greedy(m, prompt, P, new, 1, &st[1], &nout[1], &err)};
    int checked = 0, kept = 0;
    for (int k = 0; k < st[1].depths; k++) {
        checked += st[1].drafts_checked[k];
        kept += st[1].drafts_kept[k];
    }
    tap_ok(out[0] && out[1] && nout[0] == P + new && nout[1] == nout[0] &&
               !memcmp(out[0], out[1], nout[0] * sizeof *out[0]),
           "%s greedy: %d tokens speculatively (%d main steps, %d of %d drafts kept) are plain "
           "decoding's %s", tag, new, st[1].verify_steps, kept, checked, err.msg);
    tap_ok(st[1].depths == sm_model_config(m)->num_nextn_predict_layers &&
               st[1].decode_steps == new - 1 && st[1].verify_steps >= (new - 1) / (st[1].depths + 1),
           "%s stats: %d depths, %d tokens after the first in %d main steps", tag, st[1].depths,
           st[1].decode_steps, st[1].verify_steps);
    free(out[0]);
    free(out[1]);
}

int main(void)
{
    sm_error err = {{0}};
    sm_engine_opts e = {.ncpus = 2};
    char dir[1100], path[1200];
    alarm(600); /* a hang fails the test */
    test_dist();
    test_rule();
    if (!tap_ok(sm_engine_init(&e, &err) == 0, "engine starts %s", err.msg)) return tap_done();
    snprintf(dir, sizeof dir, "%s/tests/fixtures/mtp-d1", tu_srcdir());
    snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
    sm_model *m = sm_model_open_hf(dir, &err);
    int32_t ids[32];
    tu_rng rng;
    tu_seed(&rng, 3);
    for (int i = 0; i < 32; i++) ids[i] = (int32_t)(tu_uniform(&rng) * 256);
    if (tap_ok(m != NULL, "fixture mtp-d1 opens %s", err.msg)) {
        test_mtp_decode(m, ids, 16);
        test_greedy(m, ids, 5, 24, "mtp-d1");
    }
    sm_model_free(m);
    /* two depths, random weights large enough for sharp distributions */
    sm_config c;
    snprintf(path, sizeof path, "%s/config.json", dir);
    m = sm_config_load_json(&c, path, &err) == 0
            ? (c.num_nextn_predict_layers = 2, sm_model_new(&c, 1, &err))
            : NULL;
    if (tap_ok(m != NULL, "random model with 2 MTP depths %s", err.msg)) {
        sm_model_init_random(m, 9, 0.2);
        test_greedy(m, ids, 3, 30, "random D=2");
    }
    sm_model_free(m);
    sm_engine_shutdown();
    return tap_done();
}
