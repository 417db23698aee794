/* Insert helpers of MLA inference over the latent cache (kernels in mla_cache_kernels.c):
 * appending a step's latents and rotated rope keys to a layer's cache, and the absorbed
 * attention of the step's new positions over the cache. */
#ifndef STARMOE_MLA_CACHE_H
#define STARMOE_MLA_CACHE_H

#include "tasks/codelet.h"
#include "tasks/mla_cache_kernels.h"

/* cache rows pos .. pos+n-1 = [kvn | RoPE(kv's rope key)]; the cache's other rows are kept. */
int sm_insert_mla_cache_append(const sm_op_ctx *c, const sm_mla_cache_dims *m, sm_tensor *cache,
                               sm_tensor *kvn, sm_tensor *kv, sm_tensor *cos_t,
                               sm_tensor *sin_t);
/* o [n, H*dv] of the new positions from q, the cache and kv_b_proj's weight wkvb. */
int sm_insert_mla_absorbed_attn(const sm_op_ctx *c, const sm_mla_cache_dims *m, sm_tensor *o,
                                sm_tensor *q, sm_tensor *cache, sm_tensor *wkvb,
                                sm_tensor *cos_t, sm_tensor *sin_t);

#endif
