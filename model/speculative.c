/* Speculative decoding with MTP drafts (speculative.h; docs/model.md §7). Once the main model
 * has run position q and the token after it, t[q+1], is drawn, depth k drafts t[q+k+1] from
 * its block over positions up to q (the token k ahead: drawn, or the drafts of the depths
 * before it; the previous depth's hidden states), then one main-model step over t[q+1] and
 * the G drafts gives the target distributions of t[q+2] .. t[q+G+2]: each draft is kept by
 * speculative sampling's rule until one is not (that position gets the rule's correction), or
 * all are and the last row gives one more token. Rejected positions are rewound from the
 * caches; a depth's cache keeps only positions whose token k ahead is drawn, its later rows
 * being written again at the next round. Hidden states are kept per position on the host. */
#include "model/speculative.h"

#include <stdlib.h>
#include <string.h>
#include "base/clock.h"
#include "model/decode.h"
#include "model/sample.h"

typedef struct sm_spec {
    const sm_sample_opts *so;
    sm_decode *d;
    int V, dm, D, max_len, max_step, P;
    int32_t *seq;                            /* the tokens drawn so far, n of them */
    int n;
    float *logits;                           /* [max_step, V] */
    float **hid;                             /* [D + 1][max_len * dm]: h_0 (the main model's
                                              * final-norm outputs), h_k by position */
    double **q, *p, *scratch;                /* [D][V]: the drafts' distributions; [V] */
    int32_t *draft, *ids;                    /* [D]: this round's drafts; [max_step] */
    uint64_t rng;
} sm_spec;

/* The distribution the token at position `pos` is drawn from, given its logits row. */
static void sm_spec_dist(const sm_spec *s, const float *row, int pos, double *p)
{
    sm_sample_dist(row, s->V, s->so->temperature, s->so->top_p,
                   sm_sample_banned(s->so, pos - s->P), p);
}

/* The main model over ids[0..n) at its next positions; their hidden states kept. */
static int sm_spec_main(sm_spec *s, const int32_t *ids, int n, sm_error *err)
{
    int pos = sm_decode_len(s->d, 0);
    return sm_decode_step(s->d, ids, n, s->logits, s->hid[0] + (size_t)pos * s->dm, err);
}

/* Depth k's block over its positions up to q (in steps of max_step), then its draft of
 * t[q + k + 1] drawn from its distribution s->q[k - 1]; its cache keeps the positions whose
 * token k ahead is drawn. */
static int sm_spec_draft(sm_spec *s, int k, int q, sm_error *err)
{
    int at = sm_decode_len(s->d, k), n = 0;
    while (at <= q) {
        n = q - at + 1 < s->max_step ? q - at + 1 : s->max_step;
        for (int i = 0; i < n; i++) {
            int t = at + i + k;       /* the token k ahead: drawn, or a draft of this round */
            s->ids[i] = t < s->n ? s->seq[t] : s->draft[t - s->n];
        }
        size_t row = (size_t)at * s->dm;
        if (sm_decode_mtp_step(s->d, k, s->ids, s->hid[k - 1] + row, n, s->logits,
                               s->hid[k] + row, err))
            return -1;
        at += n;
    }
    sm_spec_dist(s, s->logits + (size_t)(n - 1) * s->V, q + k + 1, s->q[k - 1]);
    s->draft[k - 1] = sm_sample_from(s->q[k - 1], s->V, &s->rng);
    sm_decode_rewind(s->d, k, s->n - k);
    return 0;
}

/* Appends a drawn token; returns whether generation goes on. */
static int sm_spec_push(sm_spec *s, int32_t t, int max_new)
{
    s->seq[s->n++] = t;
    return t != s->so->stop_token && s->n - s->P < max_new;
}

/* One round after position q (t[q + 1] drawn): G drafts, one verifying step, the kept drafts
 * and one more token; returns the new q, or -1 on error (err), or -2 when generation ended. */
static int sm_spec_round(sm_spec *s, int q, int max_new, sm_generate_stats *st, sm_error *err)
{
    int G = s->D, left = max_new - (s->n - s->P) - 1, room = s->max_len - q - 2;
    if (G > left) G = left;
    if (G > room) G = room;
    for (int k = 1; k <= G; k++)
        if (sm_spec_draft(s, k, q, err)) return -1;
    s->ids[0] = s->seq[s->n - 1];
    memcpy(s->ids + 1, s->draft, G * sizeof *s->ids);
    if (sm_spec_main(s, s->ids, G + 1, err)) return -1;
    st->verify_steps++;
    int kept = 0, more = 1;
    for (int j = 0; more && j <= G; j++) {
        const float *row = s->logits + (size_t)j * s->V;
        sm_spec_dist(s, row, q + 2 + j, s->p);
        if (j == G) {                /* every draft kept: the last row gives one more */
            more = sm_spec_push(s, sm_sample_from(s->p, s->V, &s->rng), max_new);
            break;
        }
        int ok, t = sm_spec_accept(s->p, s->q[j], s->draft[j], s->V, &s->rng, s->scratch, &ok);
        if (j < SM_SPEC_DEPTHS) {
            st->drafts_checked[j]++;
            st->drafts_kept[j] += ok;
        }
        kept += ok;
        more = sm_spec_push(s, t, max_new) && ok;
        if (!ok) break;
    }
    /* the main model's cache keeps t[q + 1] and the kept drafts */
    sm_decode_rewind(s->d, 0, q + 2 + kept);
    return s->seq[s->n - 1] == s->so->stop_token || s->n - s->P >= max_new ? -2 : q + 1 + kept;
}

static void sm_spec_free(sm_spec *s)
{
    sm_decode_free(s->d);
    for (int k = 0; s->hid && k <= s->D; k++) free(s->hid[k]);
    for (int k = 0; s->q && k < s->D; k++) free(s->q[k]);
    free(s->hid);
    free(s->q);
    free(s->p);
    free(s->scratch);
    free(s->logits);
    free(s->draft);
    free(s->ids);
}

static int sm_spec_alloc(sm_spec *s, sm_model *m, sm_error *err)
{
    int ok = (s->hid = calloc(s->D + 1, sizeof *s->hid)) && (s->q = calloc(s->D, sizeof *s->q)) &&
             (s->p = malloc(s->V * sizeof *s->p)) &&
             (s->scratch = malloc(s->V * sizeof *s->scratch)) &&
             (s->logits = malloc((size_t)s->max_step * s->V * sizeof *s->logits)) &&
             (s->draft = malloc(s->D * sizeof *s->draft)) &&
             (s->ids = malloc(s->max_step * sizeof *s->ids));
    for (int k = 0; ok && k <= s->D; k++)
        ok = (s->hid[k] = malloc((size_t)s->max_len * s->dm * sizeof **s->hid)) &&
             (k == s->D || (s->q[k] = malloc(s->V * sizeof **s->q)));
    if (!ok) return sm_fail(err, "generate --speculative: out of memory");
    return (s->d = sm_decode_new(m, s->max_len, s->max_step, 1, err)) ? 0 : -1;
}

int sm_generate_speculative(sm_model *m, int32_t *seq, int *n, int max_new,
                            const sm_sample_opts *so, sm_generate_stats *st, sm_error *err)
{
    int P = *n, max_pos = m->cfg.max_position_embeddings, D = m->dims.D;
    if (D == 0)
        return sm_fail(err, "generate --speculative: the model has no Multi-Token Prediction "
                            "module (num_nextn_predict_layers 0) to draft with");
    if (P + max_new > max_pos)
        return sm_fail(err, "generate: the prompt's %d tokens and %d new ones make %d positions, "
                            "past max_position_embeddings %d: ask for fewer tokens", P, max_new,
                       P + max_new, max_pos);
    int chunk = P < SM_DECODE_PREFILL ? P : SM_DECODE_PREFILL;
    sm_spec s = {.so = so, .V = m->dims.V, .dm = m->dims.d, .D = D, .P = P, .seq = seq, .n = P,
                 .max_len = P + max_new + D < max_pos ? P + max_new + D : max_pos,
                 .max_step = chunk > D + 1 ? chunk : D + 1, .rng = so->seed};
    int rc = sm_spec_alloc(&s, m, err), k = 0, q;
    double t0 = sm_now();
    for (int at = 0; rc == 0 && at < P; at += k) {
        k = P - at < chunk ? P - at : chunk;
        rc = sm_spec_main(&s, seq + at, k, err);
    }
    if (rc == 0) {
        st->prefill_s = sm_now() - t0;
        t0 = sm_now();
        sm_spec_dist(&s, s.logits + (size_t)(k - 1) * s.V, P, s.p);
        q = sm_spec_push(&s, sm_sample_from(s.p, s.V, &s.rng), max_new) ? P - 1 : -2;
        while (q >= 0) q = sm_spec_round(&s, q, max_new, st, err);
        rc = q == -1 ? -1 : 0;
        st->decode_s = sm_now() - t0;
    }
    st->depths = D;
    st->decode_steps = s.n - P - 1;
    *n = s.n;
    sm_spec_free(&s);
    return rc;
}
