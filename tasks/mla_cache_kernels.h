/* Pure float32 kernels of MLA inference over a cache of compressed latents (no StarPU): the
 * absorbed form of MLA (docs/model.md §3.2; DeepSeek-V3's `absorb` mode), where a layer caches
 * per position only the KV latent after kv_a_layernorm and the rotated shared rope key, and
 * kv_b_proj is folded into the query (W_UK) and applied after the attention (W_UV).
 *
 * Layouts, row-major; a step brings n new positions pos .. pos+n-1:
 *   cache [max_len, dc+dr]  row t: [c_kv(t) after kv_a_layernorm (dc) | RoPE(k_rope(t), t) (dr)]
 *   kvn   [n, dc]           the new positions' normalised latents
 *   kv    [n, dc+dr]        kv_a_proj_with_mqa's output: [latent | k_rope not rotated]
 *   q     [n, H*(dn+dr)]    per head [q_nope | q_rope not rotated]
 *   wkvb  [H*(dn+dv), dc]   kv_b_proj's weight: per head W_UK [dn, dc] then W_UV [dv, dc]
 *   o     [n, H*dv]         heads concatenated, head-major (as sm_mla_attn_fwd's o)
 *   cos/sin tables [max_len, dr/2] (sm_rope_table): row t is position t.
 * Position pos+i attends to cached positions 0 .. pos+i (causal inside the new ones): one
 * kernel serves a prefill of n positions, a decode of one, or several drafts at once. */
#ifndef STARMOE_MLA_CACHE_KERNELS_H
#define STARMOE_MLA_CACHE_KERNELS_H

typedef struct sm_mla_cache_dims {
    int H, dn, dr, dv, dc;       /* heads; nope, rope, value, latent widths */
    float scale;                 /* softmax scale (sm_mla_softmax_scale) */
    int pos;                     /* positions already cached */
    int n;                       /* new positions, n >= 1 */
} sm_mla_cache_dims;

/* Rows pos .. pos+n-1 of cache = [kvn row | kv's rope key rotated to its position]; the other
 * rows are kept. */
void sm_mla_cache_append(float *cache, const float *kvn, const float *kv, const float *cos_t,
                         const float *sin_t, const sm_mla_cache_dims *m);

/* o of the n new positions from their q and cache rows 0 .. pos+n-1 (the new ones appended):
 * per head, q~ = q_nope W_UK, scores = scale (q~ . c_kv(t) + RoPE(q_rope) . k_rope(t)), causal
 * softmax, o_h = (sum_t P c_kv(t)) W_UV^T. */
void sm_mla_absorbed_attn(float *o, const float *q, const float *cache, const float *wkvb,
                          const float *cos_t, const float *sin_t, const sm_mla_cache_dims *m);

/* The flops of sm_mla_absorbed_attn (scores and sums over all pos+n keys, absorptions). */
double sm_mla_absorbed_flops(const sm_mla_cache_dims *m);

#endif
