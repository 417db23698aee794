/* Text generation: the prompt and the tokens sampled so far sit at the start of a fixed
 * [1, S] forward run (padding after them cannot change earlier logits: attention is causal);
 * the next token is drawn from the logits at the last real position with temperature and
 * top-p (nucleus) sampling from a seeded generator. */
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double sm_gen_uniform(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (double)((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0);
}

typedef struct sm_cand {
    double p;
    int id;
} sm_cand;

static int sm_cand_cmp(const void *a, const void *b)
{
    const sm_cand *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id - y->id;
}

/* Draws from softmax(logits / temperature) restricted to the smallest set of most likely
 * tokens whose mass reaches top_p; temperature 0 is greedy. `banned` (or -1) is never drawn. */
int sm_sample_token(const float *logits, int V, double temperature, double top_p, int banned,
                    uint64_t *rng)
{
    int best = banned == 0 ? 1 : 0;
    for (int v = 0; v < V; v++)
        if (v != banned && logits[v] > logits[best]) best = v;
    if (temperature <= 0) return best;
    sm_cand *c = malloc(V * sizeof *c);
    if (!c) return best;
    double sum = 0, mass = 0, u;
    int n = 0;
    for (int v = 0; v < V; v++) {
        if (v == banned) continue;
        c[n].p = exp((logits[v] - logits[best]) / temperature);
        c[n++].id = v;
        sum += c[n - 1].p;
    }
    qsort(c, n, sizeof *c, sm_cand_cmp);
    int keep = 0;
    while (keep < n && (keep == 0 || mass < top_p * sum)) mass += c[keep++].p;
    u = sm_gen_uniform(rng) * mass;
    int pick = c[keep - 1].id;
    for (int i = 0; i < keep; i++) {
        if (u < c[i].p) {
            pick = c[i].id;
            break;
        }
        u -= c[i].p;
    }
    free(c);
    return pick;
}

int sm_generate_ids(sm_model *m, const int32_t *prompt, int nprompt, int max_new, int context,
                    const sm_sample_opts *so, int32_t **out, int *nout, sm_error *err)
{
    const sm_config *c = &m->cfg;
    int V = c->vocab_size, S = context;
    if (S < 2 || S > c->max_position_embeddings)
        return sm_fail(err, "generate: context %d outside [2, %d]", S, c->max_position_embeddings);
    int32_t *seq = malloc((size_t)(nprompt + max_new + 1) * sizeof *seq);
    int32_t *win = calloc(S, sizeof *win);
    float *logits = malloc((size_t)S * V * sizeof *logits);
    sm_run *r = seq && win && logits ? sm_run_new(m, 1, S, 1, 0, err) : NULL;
    uint64_t rng = so->seed;
    int n = nprompt, rc = -1;
    if (!r) goto out;
    if (nprompt > 0) memcpy(seq, prompt, nprompt * sizeof *seq);
    else seq[n++] = so->start_token;
    for (int i = 0; i < max_new; i++) {
        int first = n > S ? n - S : 0, len = n - first;
        memset(win, 0, S * sizeof *win);
        memcpy(win, seq + first, len * sizeof *win);
        if (sm_run_step(r, win, NULL, NULL, err)) goto out;
        sm_run_logits(r, logits);
        int next = sm_sample_token(logits + (size_t)(len - 1) * V, V, so->temperature, so->top_p,
                                   i < so->min_new ? so->stop_token : -1, &rng);
        seq[n++] = next;
        if (next == so->stop_token) break;
    }
    *out = seq;
    *nout = n;
    seq = NULL;
    rc = 0;
out:
    sm_run_free(r);
    free(seq);
    free(win);
    free(logits);
    return rc;
}
