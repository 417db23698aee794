/* Inference with MLA's compressed latent cache: a decode context holds, per layer, the cache of
 * the positions run so far (kv_a_layernorm's latent and the rotated rope key, docs/model.md
 * §3.2) and the activations of one step; each step is a task graph over its new positions
 * only, attending to the cache in the absorbed form. The first step over the prompt is the
 * prefill, each later one a decode of the sampled token (or of several drafts at once). */
#ifndef STARMOE_DECODE_H
#define STARMOE_DECODE_H

#include <stddef.h>
#include <stdint.h>
#include "model/model.h"

typedef struct sm_decode sm_decode;

/* A context for sequences of up to max_len positions (at most max_position_embeddings), run
 * max_step new positions at most per step, on a model holding every layer and expert. */
sm_decode *sm_decode_new(sm_model *m, int max_len, int max_step, sm_error *err);
void sm_decode_free(sm_decode *d);

/* Runs positions len .. len+n-1 (token ids[0..n), 1 <= n <= max_step, len + n <= max_len):
 * appends them to every layer's cache and writes their logits [n, V] to `logits`. */
int sm_decode_step(sm_decode *d, const int32_t *ids, int n, float *logits, sm_error *err);
/* Positions cached so far. */
int sm_decode_len(const sm_decode *d);

/* Floats one position takes in one layer's cache (dc + dr), and what plain multi-head K/V
 * caching would take (H * (dqk + dv)). */
int sm_decode_cache_floats(const sm_config *c);
int sm_decode_full_kv_floats(const sm_config *c);

#endif
