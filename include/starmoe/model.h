/* A DeepSeek-V3 model: built from a config (zero or seeded random weights) or opened from a
 * Hugging Face folder, and its parameters and gradients by Hugging Face name. */
#ifndef STARMOE_MODEL_H
#define STARMOE_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <starmoe/config.h>
#include <starmoe/error.h>
#include <starmoe/export.h>

typedef struct sm_model sm_model;

/* A model with zero weights; execute = 0 builds graphs without running them (DAG export). */
SM_API sm_model *sm_model_new(const sm_config *cfg, int execute, sm_error *err);
/* The part of a model one rank of expert parallelism holds: routed experts
 * [index * E/ep, (index + 1) * E/ep) of every MoE layer, and every parameter that is not a
 * routed expert's. The other experts' parameters are listed (name, shape) but absent:
 * sm_model_param_held says 0, and their data and gradient are NULL. ep must divide the
 * config's n_routed_experts. sm_model_new is shard 0 of 1. */
SM_API sm_model *sm_model_new_shard(const sm_config *cfg, int execute, int ep, int index,
                                    sm_error *err);
/* sm_model_new_shard of one pipeline rank too: with layers (num_hidden_layers + 2 flags:
 * layers[0] the embedding, layers[l + 1] decoder layer l, layers[L + 1] the final norm and the
 * head) the parameters of the layers flagged 0 are absent as well. NULL: every layer. */
SM_API sm_model *sm_model_new_stages(const sm_config *cfg, int execute, int ep, int index,
                                     const unsigned char *layers, sm_error *err);
/* Loads every parameter held from a Hugging Face folder (config already given to
 * sm_model_new). With Multi-Token Prediction modules (num_nextn_predict_layers > 0), the
 * folder's copies of the embedding and the head under a module's names (embed_tokens,
 * shared_head.head) must repeat the main tensors bit for bit; a folder without any MTP tensor
 * loads the rest and initialises the modules afresh (seed 0, std initializer_range):
 * sm_model_mtp_fresh() then says so, for a warning. */
SM_API int sm_model_load_hf(sm_model *m, const char *dir, sm_error *err);
SM_API int sm_model_mtp_fresh(const sm_model *m);
/* Opens a Hugging Face folder: reads its config, builds the model and loads the weights. */
SM_API sm_model *sm_model_open_hf(const char *dir, sm_error *err);
/* sm_model_open_hf of one expert shard (sm_model_new_shard). */
SM_API sm_model *sm_model_open_hf_shard(const char *dir, int ep, int index, sm_error *err);
/* Seeded normal(0, std) matrices, unit norms, zero router bias: in every shard, the values the
 * whole model gets. */
SM_API void sm_model_init_random(sm_model *m, uint64_t seed, double std);
SM_API void sm_model_free(sm_model *m);
SM_API const sm_config *sm_model_config(const sm_model *m);

/* Parameters in checkpoint order, by Hugging Face name. */
SM_API int sm_model_nparams(const sm_model *m);
SM_API const char *sm_model_param_name(const sm_model *m, int i);
SM_API int sm_model_param_shape(const sm_model *m, int i, int64_t *shape); /* returns ndim */
SM_API float *sm_model_param_data(sm_model *m, int i);   /* NULL when not held */
SM_API int sm_model_param_held(const sm_model *m, int i);
/* Gradient of parameter i after a backward step, NULL when it has none (or is not held). */
SM_API const float *sm_model_param_grad(sm_model *m, int i);
SM_API size_t sm_model_numel(const sm_model *m);

#endif
