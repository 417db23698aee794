/* What the model derives from its config: the shapes (sm_dims), which layers are MoE and
 * whether YaRN applies. io/config_json.c only parses and validates the fields. */
#include "model/config.h"

sm_dims sm_dims_of(const sm_config *c)
{
    int H = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    int dv = c->v_head_dim, dc = c->kv_lora_rank;
    return (sm_dims){.d = c->hidden_size, .V = c->vocab_size, .L = c->num_hidden_layers,
                     .D = c->num_nextn_predict_layers,
                     .blocks = c->num_hidden_layers + c->num_nextn_predict_layers,
                     .H = H, .dn = dn, .dr = dr, .dv = dv, .dqk = dn + dr,
                     .dq = c->q_lora_rank, .dc = dc, .q_w = H * (dn + dr), .kv_a_w = dc + dr,
                     .kv_b_w = H * (dn + dv), .o_w = H * dv, .E = c->n_routed_experts,
                     .K = c->num_experts_per_tok, .dense_I = c->intermediate_size,
                     .expert_I = c->moe_intermediate_size,
                     .shared_I = c->n_shared_experts * c->moe_intermediate_size,
                     .first_moe = c->first_k_dense_replace,
                     .moe_every = c->moe_layer_freq > 0 ? c->moe_layer_freq : 1};
}

int sm_dims_layer_is_moe(const sm_dims *x, int l)
{
    return l >= x->first_moe && (l - x->first_moe) % x->moe_every == 0;
}

int sm_dims_ffn_width(const sm_dims *x, int l)
{
    return sm_dims_layer_is_moe(x, l) ? x->shared_I : x->dense_I;
}

int sm_config_layer_is_moe(const sm_config *c, int l)
{
    sm_dims x = sm_dims_of(c);
    return sm_dims_layer_is_moe(&x, l);
}

int sm_config_yarn_active(const sm_config *c)
{
    const sm_rope_scaling *r = &c->rope_scaling;
    return r->present && r->factor > 1 &&
           c->max_position_embeddings > r->original_max_position_embeddings;
}
