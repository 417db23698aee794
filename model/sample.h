/* Sampling a token from logits: the distribution temperature and top-p (nucleus) sampling
 * draw from, a seeded draw from it, and the acceptance rule of speculative sampling, which
 * keeps the target distribution whatever the drafts' distribution. */
#ifndef STARMOE_SAMPLE_H
#define STARMOE_SAMPLE_H

#include <stdint.h>
#include <starmoe/drivers.h>

/* The token never drawn as new token number i (0 for the first): the stop token before
 * so->min_new new tokens, else none (-1). */
static inline int sm_sample_banned(const sm_sample_opts *so, int i)
{
    return i < so->min_new ? so->stop_token : -1;
}

/* A uniform double in [0, 1) from the splitmix64 state *s. */
double sm_sample_uniform(uint64_t *s);

/* p[0..V) = the distribution of sm_sample_token: softmax(logits / temperature) restricted to
 * the smallest set of most likely tokens whose mass reaches top_p, renormalised; `banned` (or
 * -1) has 0. Temperature 0: all the mass on the most likely token (the lowest id of equals). */
void sm_sample_dist(const float *logits, int V, double temperature, double top_p, int banned,
                    double *p);
/* One draw from p: a uniform u, then the tokens by decreasing probability (equal ones by
 * increasing id) until their mass passes u. */
int sm_sample_from(const double *p, int V, uint64_t *rng);

/* Speculative sampling's rule for a draft x drawn from q against the target p: kept with
 * probability min(1, p[x] / q[x]) (then returns x and sets *accepted), else a token drawn from
 * max(0, p - q) renormalised. Over x ~ q the result is distributed as p. scratch: V doubles. */
int sm_spec_accept(const double *p, const double *q, int x, int V, uint64_t *rng,
                   double *scratch, int *accepted);

#endif
