/* Internal model structures: the DeepSeek-V3 parameters (with their gradients) as graph
 * tensors named by their Hugging Face names, the per-micro-batch activations of a run, and
 * the graph builders of each block, forward and backward side by side. */
#ifndef STARMOE_MODEL_INTERNAL_H
#define STARMOE_MODEL_INTERNAL_H

#include <starmoe/model.h>
#include "graph/graph.h"
#include "tasks/attention_kernels.h"
#include "tasks/codelet.h"
#include "tasks/moe.h"

/* A parameter and its gradient (g is NULL for buffers without gradient, e.g. the router's
 * selection bias). */
typedef struct sm_param {
    sm_tensor *w, *g;
} sm_param;

typedef struct sm_ffn_params {
    sm_param gate, up, down;     /* W1 [I,d], W3 [I,d], W2 [d,I] */
    int I;
} sm_ffn_params;

typedef struct sm_layer_params {
    sm_param in_norm, post_norm;
    sm_param q_a, q_a_norm, q_b, q;          /* q_a/q_a_norm/q_b when q_lora_rank > 0, else q */
    sm_param kv_a, kv_a_norm, kv_b, o;
    int moe;
    sm_ffn_params dense;                     /* dense layers */
    sm_param router;                         /* MoE layers */
    sm_param bias;                           /* e_score_correction_bias (no gradient) */
    sm_ffn_params *experts;                  /* [E] */
    sm_ffn_params shared;                    /* I = 0 when n_shared_experts == 0 */
} sm_layer_params;

struct sm_model {
    sm_config cfg;
    sm_graph *g;
    sm_param embed, final_norm, head;
    sm_layer_params *layers;
    sm_param *all;                           /* every parameter, checkpoint order */
    int nall, capall;
};

/* Activations of one layer for one micro-batch (T tokens). Forward tensors are saved for
 * backward; d-prefixed ones are backward temporaries. */
typedef struct sm_layer_acts {
    sm_tensor *xn, *rstd_in;                 /* attention input norm */
    sm_tensor *cq, *cqn, *rstd_q, *q;        /* query path */
    sm_tensor *kv, *kvn, *rstd_kv, *kvu;     /* kv path */
    sm_tensor *o, *P;                        /* attention output, probabilities */
    sm_tensor *x1;                           /* residual after attention */
    sm_tensor *xn2, *rstd_post;              /* FFN input norm */
    sm_tensor *h1, *h3;                      /* dense FFN (or shared expert) hidden */
    sm_tensor *plan, *w, *s, *bal_loss;      /* router */
    sm_tensor **xe, **ye, **eh1, **eh3;      /* routed experts [E] */
    sm_tensor *ys;                           /* shared expert output */
    /* backward */
    sm_tensor *dxn, *dcqn, *dcq, *dq, *dkpe, *dkvu, *dkvn, *dkv, *dout;
    sm_tensor *dxn2, *dh1, *dh3;
    sm_tensor **dye, **dge, **dxe, **deh1, **deh3;
} sm_layer_acts;

typedef struct sm_micro_acts {
    sm_tensor *ids, *targets;                /* [T] */
    sm_tensor **x;                           /* residual stream: x[0] embeddings .. x[L] */
    sm_layer_acts *layers;                   /* [L] */
    sm_tensor *xf, *rstd_f, *logits, *dlogits, *loss_part;
    sm_tensor *dres, *dxf;                   /* residual-stream gradient, head input grad */
} sm_micro_acts;

struct sm_run {
    sm_model *m;
    int B, S, micro, Bm, T;                  /* T = Bm*S tokens per micro-batch */
    int backward;
    sm_mla_dims mla;
    sm_router_dims router;
    sm_balance bal;                          /* sequence-wise balance loss (coef 0 = off) */
    sm_tensor *cos_t, *sin_t, *loss, *bal_total;
    sm_micro_acts *mb;                       /* [micro] */
    double submit_s;                         /* time the last step spent submitting tasks */
    int has_targets;                         /* the last step had targets (a loss) */
};

/* Monotonic seconds. */
double sm_now(void);

/* params.c */
int sm_params_create(sm_model *m, sm_error *err);

/* activations.c */
int sm_run_alloc(sm_run *r, sm_error *err);

/* attention_block.c: x1 = x + MLA(norm(x)); backward adds into r->mb[mb].dres. */
int sm_attention_block_fwd(sm_run *r, const sm_op_ctx *c, int l, int mb);
int sm_attention_block_bwd(sm_run *r, const sm_op_ctx *c, int l, int mb);

/* ffn_block.c: x2 = x1 + FFN(norm(x1)) (dense or MoE); backward adds into dres. */
int sm_ffn_block_fwd(sm_run *r, const sm_op_ctx *c, int l, int mb);
int sm_ffn_block_bwd(sm_run *r, const sm_op_ctx *c, int l, int mb);

#endif
