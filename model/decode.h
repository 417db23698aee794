/* Inference with MLA's compressed latent cache: a decode context holds, per layer, the cache of
 * the positions run so far (kv_a_layernorm's latent and the rotated rope key, docs/model.md
 * §3.2) and the activations of one step; each step is a task graph over its new positions
 * only, attending to the cache in the absorbed form. The first step over the prompt is the
 * prefill, each later one a decode of the sampled token (or of several drafts at once).
 * With the model's Multi-Token Prediction modules, each depth k has its own cache (of its
 * block) and length: a depth-k step at positions i takes the token k ahead t[i + k] and the
 * previous depth's hidden state at i (depth 1: the main model's final-norm output) and gives
 * the logits of t[i + k + 1] and its own block's output (speculative decoding's drafts). */
#ifndef STARMOE_DECODE_H
#define STARMOE_DECODE_H

#include <stddef.h>
#include <stdint.h>
#include "model/model.h"

typedef struct sm_decode sm_decode;

/* Positions a prefill step takes at most (a longer prompt goes in several steps). */
enum { SM_DECODE_PREFILL = 128 };

/* A context for sequences of up to max_len positions (at most max_position_embeddings), run
 * max_step new positions at most per step, on a model holding every layer and expert; with
 * mtp, also for the model's MTP modules (it must have some). */
sm_decode *sm_decode_new(sm_model *m, int max_len, int max_step, int mtp, sm_error *err);
void sm_decode_free(sm_decode *d);

/* Runs positions len .. len+n-1 (token ids[0..n), 1 <= n <= max_step, len + n <= max_len):
 * appends them to every layer's cache and writes their logits [n, V] to `logits` and, when
 * `hidden` is not NULL, their final-norm outputs [n, hidden_size] (what depth 1 reads). */
int sm_decode_step(sm_decode *d, const int32_t *ids, int n, float *logits, float *hidden,
                   sm_error *err);
/* MTP depth k's step at its positions len_k .. len_k+n-1: tokens ids (t[i + k]) and the
 * previous depth's hidden states h_in [n, hidden_size]; writes the logits [n, V] (of
 * t[i + k + 1]) and, when h_out is not NULL, the depth's block outputs [n, hidden_size]. */
int sm_decode_mtp_step(sm_decode *d, int k, const int32_t *ids, const float *h_in, int n,
                       float *logits, float *h_out, sm_error *err);
/* Positions cached so far by the main model (k = 0) or MTP depth k; a rewind to a shorter
 * length forgets the positions after it (their cache rows are written again by the next
 * step), e.g. the rejected drafts of speculative decoding. */
int sm_decode_len(const sm_decode *d, int k);
void sm_decode_rewind(sm_decode *d, int k, int len);

/* Floats one position takes in one layer's cache (dc + dr), and what plain multi-head K/V
 * caching would take (H * (dqk + dv)). */
int sm_decode_cache_floats(const sm_config *c);
int sm_decode_full_kv_floats(const sm_config *c);

#endif
