/* Sampling (sample.h): nucleus distributions, seeded draws and speculative acceptance. */
#include "model/sample.h"

#include <math.h>
#include <stdlib.h>
#include <starmoe/drivers.h>

double sm_sample_uniform(uint64_t *s)
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

/* The candidates (tokens with p > 0) by decreasing p, equal ones by increasing id; NULL when
 * out of memory. */
static sm_cand *sm_ranked(const double *p, int V, int *n)
{
    sm_cand *c = malloc((V > 0 ? V : 1) * sizeof *c);
    *n = 0;
    for (int v = 0; c && v < V; v++)
        if (p[v] > 0) c[(*n)++] = (sm_cand){p[v], v};
    if (c) qsort(c, *n, sizeof *c, sm_cand_cmp);
    return c;
}

void sm_sample_dist(const float *logits, int V, double temperature, double top_p, int banned,
                    double *p)
{
    int best = banned == 0 ? 1 : 0, n = 0;
    for (int v = 0; v < V; v++) {
        p[v] = 0;
        if (v != banned && logits[v] > logits[best]) best = v;
    }
    p[best] = 1;
    if (temperature <= 0) return;
    for (int v = 0; v < V; v++)
        p[v] = v == banned ? 0 : exp((logits[v] - logits[best]) / temperature);
    double sum = 0, mass = 0;
    for (int v = 0; v < V; v++) sum += p[v];
    sm_cand *c = sm_ranked(p, V, &n);
    if (!c) return;              /* out of memory: no nucleus, the whole softmax */
    int keep = 0;
    while (keep < n && (keep == 0 || mass < top_p * sum)) mass += c[keep++].p;
    for (int v = 0; v < V; v++) p[v] = 0;
    for (int i = 0; i < keep; i++) p[c[i].id] = c[i].p / mass;
    free(c);
}

int sm_sample_from(const double *p, int V, uint64_t *rng)
{
    int n = 0;
    double u = sm_sample_uniform(rng);
    sm_cand *c = sm_ranked(p, V, &n);
    int pick = c && n ? c[n - 1].id : 0;
    for (int i = 0; c && i < n; i++) {
        if (u < c[i].p) {
            pick = c[i].id;
            break;
        }
        u -= c[i].p;
    }
    free(c);
    return pick;
}

int sm_sample_token(const float *logits, int V, double temperature, double top_p, int banned,
                    uint64_t *rng)
{
    double *p = malloc((V > 0 ? V : 1) * sizeof *p);
    if (!p) return 0;
    sm_sample_dist(logits, V, temperature, top_p, banned, p);
    int t = temperature <= 0 ? -1 : sm_sample_from(p, V, rng);
    for (int v = 0; t < 0 && v < V; v++)
        if (p[v] == 1) t = v;
    free(p);
    return t;
}

int sm_spec_accept(const double *p, const double *q, int x, int V, uint64_t *rng,
                   double *scratch, int *accepted)
{
    double u = sm_sample_uniform(rng), rest = 0;
    *accepted = q[x] > 0 && u * q[x] < p[x];
    if (*accepted) return x;
    for (int v = 0; v < V; v++) rest += scratch[v] = p[v] > q[v] ? p[v] - q[v] : 0;
    if (!(rest > 0)) return *accepted = 1, x;   /* p == q up to rounding: nothing to correct */
    for (int v = 0; v < V; v++) scratch[v] /= rest;
    return sm_sample_from(scratch, V, rng);
}
