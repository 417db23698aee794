/* The model's shapes, derived once from its config: the MLA projection widths, the FFN and
 * expert widths and the layer kinds (dense or MoE). Parameters, activations, block builders
 * and runs read them here; nothing else works them out from the config's fields. */
#ifndef STARMOE_MODEL_CONFIG_H
#define STARMOE_MODEL_CONFIG_H

#include <starmoe/config.h>

typedef struct sm_dims {
    int d, V, L;                 /* hidden size, vocabulary, layers */
    int D;                       /* Multi-Token Prediction depth: MTP modules after the head */
    int blocks;                  /* decoder blocks L + D: the layers, then the MTP modules'
                                  * (depth k's is block L + k - 1, its Hugging Face index) */
    int H, dn, dr, dv;           /* heads; per head: nope, rope and value widths */
    int dqk;                     /* per head query/key width dn + dr */
    int dq;                      /* q_lora_rank: query latent width (0: a plain q_proj) */
    int dc;                      /* kv_lora_rank: key/value latent width */
    int q_w;                     /* query projection output H * dqk */
    int kv_a_w;                  /* kv_a_proj_with_mqa output dc + dr (latent, then k_rope) */
    int kv_b_w;                  /* kv_b_proj output H * (dn + dv) */
    int o_w;                     /* attention output (o_proj input) H * dv */
    int E, K;                    /* routed experts, experts per token */
    int dense_I;                 /* the dense FFN's width */
    int expert_I;                /* one routed expert's width */
    int shared_I;                /* the shared experts' width n_shared * expert_I (0: none) */
    int first_moe, moe_every;    /* MoE layers: first_moe, then every moe_every-th layer */
} sm_dims;

sm_dims sm_dims_of(const sm_config *c);

/* 1 when layer l is an MoE layer, 0 when it is dense. */
int sm_dims_layer_is_moe(const sm_dims *x, int l);

/* The width of layer l's full-token SwiGLU: the dense FFN, or the shared experts of an MoE
 * layer (0: none). */
int sm_dims_ffn_width(const sm_dims *x, int l);

#endif
