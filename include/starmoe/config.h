/* The model configuration: the Hugging Face DeepSeek-V3 config.json fields, parsed and
 * validated by io/config_json.c, plus the sizes derived from them (model/config.c). */
#ifndef STARMOE_CONFIG_H
#define STARMOE_CONFIG_H

#include <starmoe/error.h>

typedef struct sm_rope_scaling {
    int present;                 /* rope_scaling given with type "yarn" */
    double factor;               /* rope_scaling.factor (s) */
    int original_max_position_embeddings;
    double beta_fast, beta_slow;
    double mscale, mscale_all_dim;
} sm_rope_scaling;

typedef struct sm_config {
    int vocab_size;
    int hidden_size;             /* d */
    int intermediate_size;       /* dense FFN width */
    int moe_intermediate_size;   /* one routed expert's width */
    int num_hidden_layers;       /* L */
    int first_k_dense_replace;   /* layers < this are dense */
    int moe_layer_freq;          /* MoE every k-th layer after the dense ones */
    int num_attention_heads;     /* H */
    int q_lora_rank;             /* dq; 0 = plain q_proj */
    int kv_lora_rank;            /* dc */
    int qk_nope_head_dim;        /* dn */
    int qk_rope_head_dim;        /* dr */
    int v_head_dim;              /* dv */
    int n_routed_experts;        /* E */
    int n_shared_experts;        /* Ns */
    int num_experts_per_tok;     /* K */
    int n_group;                 /* G */
    int topk_group;              /* Gk */
    double routed_scaling_factor;
    int norm_topk_prob;
    char scoring_func[16];       /* "sigmoid" */
    char topk_method[16];        /* "noaux_tc" */
    double rms_norm_eps;
    double rope_theta;
    int max_position_embeddings;
    sm_rope_scaling rope_scaling;
    int num_nextn_predict_layers; /* MTP depth D */
    int tie_word_embeddings;
    double initializer_range;
    int bos_token_id, eos_token_id;
    int fp8;                     /* quantization_config present with quant_method "fp8" */
    int fp8_block[2];            /* weight_block_size */
} sm_config;

/* Fills c with the HF defaults for optional fields (no required field is set). */
SM_API void sm_config_defaults(sm_config *c);

/* Reads and validates a Hugging Face DeepSeek-V3 config.json. Unknown fields, missing required
 * fields, wrong types and inconsistent values are errors naming the file and the field. */
SM_API int sm_config_load_json(sm_config *c, const char *path, sm_error *err);

/* Checks the structural constraints (E % G == 0, E/G >= 2, K <= Gk*E/G, dr even, sizes > 0 and
 * not absurd, ...). `where` names the source (a file) in the messages. */
SM_API int sm_config_validate(const sm_config *c, const char *where, sm_error *err);

/* Writes c as a Hugging Face config.json (atomically). */
SM_API int sm_config_save_json(const sm_config *c, const char *path, sm_error *err);

/* Layer kind: 1 when layer `l` (0-based main layer) is an MoE layer. */
SM_API int sm_config_layer_is_moe(const sm_config *c, int l);

/* YaRN is applied (frequency correction and softmax mscale) exactly when the official code
 * applies it: rope_scaling present, factor > 1 and max_position_embeddings above
 * original_max_position_embeddings. */
SM_API int sm_config_yarn_active(const sm_config *c);

#endif
