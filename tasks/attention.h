/* Insert helpers of the MLA attention family: causal attention over the MLA layout with
 * interleaved RoPE (kernels in attention_kernels.c) and the KV-latent norm backward that also
 * places the shared rotary key's gradient next to the latent's. */
#ifndef STARMOE_ATTENTION_H
#define STARMOE_ATTENTION_H

#include "tasks/attention_kernels.h"
#include "tasks/codelet.h"

int sm_insert_mla_attn_fwd(const sm_op_ctx *c, const sm_mla_dims *m, sm_tensor *o, sm_tensor *q,
                           sm_tensor *kv, sm_tensor *kvu, sm_tensor *cos_t, sm_tensor *sin_t);
int sm_insert_mla_attn_bwd(const sm_op_ctx *c, const sm_mla_dims *m, sm_tensor *dq,
                           sm_tensor *dkpe, sm_tensor *dkvu, sm_tensor *dout, sm_tensor *q,
                           sm_tensor *kv, sm_tensor *kvu, sm_tensor *cos_t, sm_tensor *sin_t);
/* dkv [T, dc+dr] = [rmsnorm backward of the latent | dkpe]; dg += the latent norm's gain grad. */
int sm_insert_kv_norm_bwd(const sm_op_ctx *c, sm_tensor *dkv, sm_tensor *dg, sm_tensor *dkvn,
                          sm_tensor *kv, sm_tensor *g, sm_tensor *rstd, sm_tensor *dkpe, int T,
                          int dc, int dr);

#endif
