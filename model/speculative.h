/* Speculative decoding with the model's Multi-Token Prediction modules as drafters
 * (speculative.c). */
#ifndef STARMOE_SPECULATIVE_H
#define STARMOE_SPECULATIVE_H

#include <starmoe/drivers.h>
#include "model/model.h"

/* seq[0 .. *n) is the prompt; appends up to max_new sampled tokens (ending after the stop
 * token) and fills the speculative fields of *st, its timings and decode_steps (the tokens
 * after the first, which the prefill's logits give). The sequence must fit in
 * max_position_embeddings. */
int sm_generate_speculative(sm_model *m, int32_t *seq, int *n, int max_new,
                            const sm_sample_opts *so, sm_generate_stats *st, sm_error *err);

#endif
