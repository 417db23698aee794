/* Inference over MLA's latent cache (tasks/mla_cache_kernels.c, model/decode.c, generation):
 * the absorbed attention against the expanded kernel sm_mla_attn_fwd on random data (a
 * prefill, a decode of one position and of three at an offset); on the fixture models and on
 * a randomly initialised MoE model with YaRN, the logits of every prefill and decode step
 * against those of the full-sequence forward run, greedy generation with and without the
 * cache giving the same ids, and clear errors past the context. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <starmoe/starmoe.h>
#include "model/decode.h"
#include "tasks/kernel_util.h"
#include "tasks/mla_cache_kernels.h"
#include "tests/tap.h"
#include "tests/testutil.h"

/* ---- the absorbed kernel against the expanded one ---- */

enum { S = 11, H = 3, DN = 5, DR = 4, DV = 6, DC = 7 };

typedef struct attn_case {
    float q[S * H * (DN + DR)], kv[S * (DC + DR)], kvn[S * DC], wkvb[H * (DN + DV) * DC];
    float kvu[S * H * (DN + DV)], cos_t[S * DR / 2], sin_t[S * DR / 2], want[S * H * DV];
    float scale;
} attn_case;

/* Random q, latents, rope keys and kv_b_proj, with YaRN on; want = the expanded attention of
 * kvu = kvn kv_b_proj^T. */
static void attn_case_make(attn_case *a, tu_rng *rng)
{
    sm_yarn y = {.factor = 4, .original_max_position_embeddings = 4, .beta_fast = 32,
                 .beta_slow = 1, .mscale_all_dim = 1};
    double theta[DR / 2];
    tu_fill(rng, a->q, sizeof a->q / sizeof *a->q, 1.0f);
    tu_fill(rng, a->kv, sizeof a->kv / sizeof *a->kv, 1.0f);
    tu_fill(rng, a->kvn, sizeof a->kvn / sizeof *a->kvn, 1.0f);
    tu_fill(rng, a->wkvb, sizeof a->wkvb / sizeof *a->wkvb, 0.5f);
    sm_gemm(0, 1, S, H * (DN + DV), DC, 1.0f, a->kvn, DC, a->wkvb, DC, 0.0f, a->kvu,
            H * (DN + DV));
    sm_rope_freqs(theta, DR, 10000.0, &y);
    sm_rope_table(a->cos_t, a->sin_t, theta, S, DR);
    a->scale = (float)sm_mla_softmax_scale(DN + DR, &y);
    sm_mla_dims m = {.B = 1, .S = S, .H = H, .dn = DN, .dr = DR, .dv = DV, .dc = DC,
                     .scale = a->scale};
    sm_mla_attn_fwd(a->want, a->q, a->kv, a->kvu, a->cos_t, a->sin_t, &m);
}

/* Appends positions pos .. pos+n-1 of the case to the cache and runs their absorbed attention
 * into o (their rows). */
static void absorbed_step(const attn_case *a, float *cache, float *o, int pos, int n)
{
    sm_mla_cache_dims m = {.H = H, .dn = DN, .dr = DR, .dv = DV, .dc = DC, .scale = a->scale,
                           .pos = pos, .n = n};
    sm_mla_cache_append(cache, a->kvn + pos * DC, a->kv + pos * (DC + DR), a->cos_t, a->sin_t,
                        &m);
    sm_mla_absorbed_attn(o + pos * H * DV, a->q + pos * H * (DN + DR), cache, a->wkvb, a->cos_t,
                         a->sin_t, &m);
}

/* Positions in steps of sizes steps[0..nsteps) (summing to S): every row against the
 * expanded attention. */
static void test_absorbed(const attn_case *a, const int *steps, int nsteps, const char *what)
{
    float cache[S * (DC + DR)], o[S * H * DV];
    int pos = 0;
    for (int i = 0; i < nsteps; i++) {
        absorbed_step(a, cache, o, pos, steps[i]);
        pos += steps[i];
    }
    double e = tu_max_abs_diff(o, a->want, S * H * DV);
    tap_ok(pos == S && e <= 1e-5, "absorbed attention, %s: max abs diff %.3g <= 1e-5 (|o| %.3g)",
           what, e, tu_max_abs(a->want, S * H * DV));
}

static void test_kernels(void)
{
    tu_rng rng;
    tu_seed(&rng, 7);
    attn_case *a = malloc(sizeof *a);
    attn_case_make(a, &rng);
    test_absorbed(a, (int[]){S}, 1, "prefill of every position");
    test_absorbed(a, (int[]){S - 1, 1}, 2, "decode of 1 position after a prefill of 10");
    test_absorbed(a, (int[]){S - 3, 3}, 2, "decode of 3 positions after a prefill of 8");
    test_absorbed(a, (int[]){4, 1, 1, 3, 1, 1}, 6, "prefill of 4, then steps of 1 and 3");
    free(a);
}

/* ---- models: decode steps against the full forward, generation with and without ---- */

enum { SEQ = 26, PROMPT = 5, NEW = 21 };

/* Logits rows [from, from + n) of the full run against a step's. */
static double rows_diff(const float *full, const float *step, int from, int n, int V)
{
    return tu_max_abs_diff(full + (size_t)from * V, step, (size_t)n * V);
}

/* The full-sequence forward run's logits [SEQ, V] of ids. */
static float *full_logits(sm_model *m, const int32_t *ids)
{
    sm_error err = {{0}};
    int V = sm_model_config(m)->vocab_size;
    float *full = malloc((size_t)SEQ * V * sizeof *full);
    sm_run *r = sm_run_new(m, 1, SEQ, 1, 0, &err);
    int ok = r && sm_run_step(r, ids, NULL, NULL, &err) == 0;
    if (ok) sm_run_logits(r, full);
    tap_ok(ok, "full forward run of %d positions %s", SEQ, err.msg);
    sm_run_free(r);
    return full;
}

/* A prefill of PROMPT positions, decodes of one, a step of three drafts, then one by one: each
 * step's logits against the full run's rows; then a step past the context is refused. */
static void test_steps(sm_model *m, const int32_t *ids, const float *full, const char *tag)
{
    sm_error err = {{0}};
    int V = sm_model_config(m)->vocab_size, steps = 0;
    float *logits = malloc((size_t)PROMPT * V * sizeof *logits);
    sm_decode *d = sm_decode_new(m, SEQ, PROMPT, 0, &err);
    double worst = 0;
    int ok = d != NULL;
    for (int pos = 0, n = PROMPT; ok && pos < SEQ; pos += n, steps++) {
        n = pos == 0 ? PROMPT : pos == PROMPT + 4 ? 3 : 1;
        ok = sm_decode_step(d, ids + pos, n, logits, NULL, &err) == 0;
        if (ok) worst = fmax(worst, rows_diff(full, logits, pos, n, V));
    }
    tap_ok(ok && sm_decode_len(d, 0) == SEQ && worst <= 1e-5,
           "%s %d steps (prefill %d, decodes of 1 and 3): logits max abs diff %.3g <= 1e-5 "
           "(|logits| %.3g) %s", tag, steps, PROMPT, worst, tu_max_abs(full, (size_t)SEQ * V),
           err.msg);
    ok = d && sm_decode_step(d, ids, 1, logits, NULL, &err) == -1 && strstr(err.msg, "at most");
    tap_ok(ok, "%s a step past the context's %d positions is refused: %s", tag, SEQ, err.msg);
    sm_decode_free(d);
    free(logits);
}

/* Greedy generation of NEW tokens with the cache and without (a window holding them all): the
 * same ids; asking past max_position_embeddings fails with a message. */
static void test_generate(sm_model *m, const int32_t *ids, const char *tag)
{
    sm_error err = {{0}};
    sm_sample_opts so = {.temperature = 0, .top_p = 1, .stop_token = -1};
    sm_generate_stats st[2];
    int32_t *out[2] = {NULL, NULL};
    int nout[2] = {0, 0}, rc[2];
    for (int k = 0; k < 2; k++) {
        so.no_cache = k;
        rc[k] = sm_generate_ids(m, ids, PROMPT, NEW, PROMPT + NEW, &so, &out[k], &nout[k], &st[k],
                                &err);
    }
    tap_ok(rc[0] == 0 && rc[1] == 0 && nout[0] == PROMPT + NEW && nout[1] == nout[0] &&
               memcmp(out[0], out[1], nout[0] * sizeof *out[0]) == 0,
           "%s greedy: %d new tokens with the cache are those without %s", tag, NEW, err.msg);
    const sm_config *c = sm_model_config(m);
    int floats = c->kv_lora_rank + c->qk_rope_head_dim;
    tap_ok(st[0].cached && !st[1].cached && st[0].cache_floats == floats &&
               st[0].cache_bytes_per_token == (size_t)floats * c->num_hidden_layers * 4 &&
               st[0].new_tokens == NEW && st[0].decode_steps == NEW - 1,
           "%s stats: %zu B/token cached vs %zu for full K/V, %d decode steps", tag,
           st[0].cache_bytes_per_token, st[0].full_kv_bytes_per_token, st[0].decode_steps);
    int32_t *past = NULL;
    int npast = 0;
    so.no_cache = 0;
    int bad = sm_generate_ids(m, ids, PROMPT, c->max_position_embeddings, 8, &so, &past, &npast,
                              NULL, &err);
    tap_ok(bad == -1 && !past && strstr(err.msg, "max_position_embeddings"),
           "%s past max_position_embeddings: %s", tag, err.msg);
    free(out[0]);
    free(out[1]);
}

static void test_model(sm_model *m, const char *tag)
{
    tu_rng rng;
    int32_t ids[SEQ];
    tu_seed(&rng, 11);
    for (int i = 0; i < SEQ; i++)
        ids[i] = (int32_t)(tu_uniform(&rng) * sm_model_config(m)->vocab_size);
    float *full = full_logits(m, ids);
    test_steps(m, ids, full, tag);
    test_generate(m, ids, tag);
    free(full);
}

int main(void)
{
    static const char *fixtures[] = {"dsv3-tiny-a", "yarn-g4", "noq-lora"};
    sm_error err = {{0}};
    sm_engine_opts e = {.ncpus = 2};
    alarm(600); /* a hang fails the test */
    test_kernels();
    if (!tap_ok(sm_engine_init(&e, &err) == 0, "engine starts %s", err.msg)) return tap_done();
    for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) {
        char dir[1100];
        snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", tu_srcdir(), fixtures[i]);
        sm_model *m = sm_model_open_hf(dir, &err);
        if (tap_ok(m != NULL, "fixture %s opens %s", fixtures[i], err.msg))
            test_model(m, fixtures[i]);
        sm_model_free(m);
    }
    /* random weights, larger than training's initialisation so attention is far from uniform */
    sm_config c;
    char path[1100];
    snprintf(path, sizeof path, "%s/tests/fixtures/yarn-g4/config.json", tu_srcdir());
    sm_model *m = sm_config_load_json(&c, path, &err) == 0 ? sm_model_new(&c, 1, &err) : NULL;
    if (tap_ok(m != NULL, "random MoE model with YaRN %s", err.msg)) {
        sm_model_init_random(m, 5, 0.2);
        test_model(m, "random");
    }
    sm_model_free(m);
    sm_engine_shutdown();
    return tap_done();
}
