/* Text generation. By default a prefill step runs the prompt into MLA's latent cache and one
 * decode step per new token runs that token alone over the cache (model/decode.c; with
 * speculative, MTP drafts verified several at a step: model/speculative.c); with
 * no_cache the prompt and the tokens sampled so far sit at the start of a fixed [1, S] forward
 * run, re-run for every token (padding after them cannot change earlier logits: attention is
 * causal), the window sliding once the sequence is longer. Either way the next token is drawn
 * from the logits at the last position with temperature and top-p (nucleus) sampling from a
 * seeded generator. */
#include "model/decode.h"
#include "model/sample.h"
#include "model/speculative.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/clock.h"

/* Token i of the sample from the logits of the last position (the stop token is banned
 * before min_new tokens). */
static int sm_next_token(const float *logits, int V, const sm_sample_opts *so, int i,
                         uint64_t *rng)
{
    return sm_sample_token(logits, V, so->temperature, so->top_p, sm_sample_banned(so, i), rng);
}

/* The cached path: seq[0 .. *n) is the prompt; the sample is appended to it. */
static int sm_generate_cached(sm_model *m, int32_t *seq, int *n, int max_new,
                              const sm_sample_opts *so, sm_generate_stats *st, sm_error *err)
{
    int V = m->cfg.vocab_size, P = *n, max_pos = m->cfg.max_position_embeddings;
    if (P + max_new > max_pos)
        return sm_fail(err, "generate: the prompt's %d tokens and %d new ones make %d positions, "
                            "past max_position_embeddings %d: ask for fewer tokens, or use "
                            "no_cache (--no-cache: a sliding window)", P, max_new, P + max_new,
                       max_pos);
    int chunk = P < SM_DECODE_PREFILL ? P : SM_DECODE_PREFILL, k = 0, rc = -1;
    float *logits = malloc((size_t)chunk * V * sizeof *logits);
    sm_decode *d = logits ? sm_decode_new(m, P + max_new - 1, chunk, 0, err) : NULL;
    uint64_t rng = so->seed;
    double t0 = sm_now();
    if (!logits) sm_fail(err, "generate: out of memory");
    if (!d) goto out;
    for (int at = 0; at < P; at += k) {
        k = P - at < chunk ? P - at : chunk;
        if (sm_decode_step(d, seq + at, k, logits, NULL, err)) goto out;
    }
    st->prefill_s = sm_now() - t0;
    t0 = sm_now();
    const float *last = logits + (size_t)(k - 1) * V;
    for (int i = 0; i < max_new; i++) {
        int32_t next = sm_next_token(last, V, so, i, &rng);
        seq[(*n)++] = next;
        if (next == so->stop_token || i + 1 == max_new) break;
        if (sm_decode_step(d, &next, 1, logits, NULL, err)) goto out;
        last = logits;
        st->decode_steps++;
    }
    st->decode_s = sm_now() - t0;
    rc = 0;
out:
    sm_decode_free(d);
    free(logits);
    return rc;
}

/* The no-cache path: a [1, context] forward run per new token over the newest positions. */
static int sm_generate_window(sm_model *m, int32_t *seq, int *n, int max_new, int context,
                              const sm_sample_opts *so, sm_generate_stats *st, sm_error *err)
{
    int V = m->cfg.vocab_size, S = context, rc = -1;
    if (S < 2 || S > m->cfg.max_position_embeddings)
        return sm_fail(err, "generate: context %d outside [2, %d]", S,
                       m->cfg.max_position_embeddings);
    int32_t *win = calloc(S, sizeof *win);
    float *logits = malloc((size_t)S * V * sizeof *logits);
    sm_run_opts main_only = {.no_mtp = 1};
    sm_run *r = win && logits ? sm_run_new_with(m, 1, S, 1, 0, &main_only, err) : NULL;
    uint64_t rng = so->seed;
    double t0 = sm_now();
    if (!win || !logits) sm_fail(err, "generate: out of memory");
    if (!r) goto out;
    for (int i = 0; i < max_new; i++) {
        int first = *n > S ? *n - S : 0, len = *n - first;
        memset(win, 0, S * sizeof *win);
        memcpy(win, seq + first, len * sizeof *win);
        if (sm_run_step(r, win, NULL, NULL, err)) goto out;
        sm_run_logits(r, logits);
        if (i == 0) st->prefill_s = sm_now() - t0;
        else st->decode_steps++;
        int32_t next = sm_next_token(logits + (size_t)(len - 1) * V, V, so, i, &rng);
        seq[(*n)++] = next;
        if (next == so->stop_token) break;
    }
    st->decode_s = sm_now() - t0 - st->prefill_s;
    rc = 0;
out:
    sm_run_free(r);
    free(win);
    free(logits);
    return rc;
}

int sm_generate_ids(sm_model *m, const int32_t *prompt, int nprompt, int max_new, int context,
                    const sm_sample_opts *so, int32_t **out, int *nout, sm_generate_stats *stats,
                    sm_error *err)
{
    const sm_config *c = &m->cfg;
    int L = c->num_hidden_layers;
    sm_generate_stats st = {
        .cached = !so->no_cache, .cache_floats = sm_decode_cache_floats(c),
        .full_kv_floats = sm_decode_full_kv_floats(c), .layers = L,
        .cache_bytes_per_token = (size_t)sm_decode_cache_floats(c) * L * sizeof(float),
        .full_kv_bytes_per_token = (size_t)sm_decode_full_kv_floats(c) * L * sizeof(float)};
    if (max_new < 1) return sm_fail(err, "generate: %d new tokens: need at least 1", max_new);
    int32_t *seq = malloc((size_t)(nprompt + max_new + 1) * sizeof *seq);
    int n = nprompt;
    if (!seq) return sm_fail(err, "generate: out of memory");
    if (nprompt > 0) memcpy(seq, prompt, nprompt * sizeof *seq);
    else seq[n++] = so->start_token;
    st.prompt_tokens = n;
    if (so->speculative && so->no_cache) {
        free(seq);
        return sm_fail(err, "generate: speculative decoding runs over the latent cache: it "
                            "cannot go with no_cache (--no-cache)");
    }
    if (so->speculative ? sm_generate_speculative(m, seq, &n, max_new, so, &st, err)
        : so->no_cache  ? sm_generate_window(m, seq, &n, max_new, context, so, &st, err)
                        : sm_generate_cached(m, seq, &n, max_new, so, &st, err)) {
        free(seq);
        return -1;
    }
    st.new_tokens = n - st.prompt_tokens;
    if (stats) *stats = st;
    *out = seq;
    *nout = n;
    return 0;
}
