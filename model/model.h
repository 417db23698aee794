/* Internal model structures: the DeepSeek-V3 parameters (with their gradients) as graph
 * tensors named by their Hugging Face names, the per-micro-batch activations of a run, and
 * the graph builders of each block, forward and backward side by side. */
#ifndef STARMOE_MODEL_INTERNAL_H
#define STARMOE_MODEL_INTERNAL_H

#include <starmoe/drivers.h>
#include <starmoe/engine.h>
#include <starmoe/model.h>
#include <starmoe/optimizer.h>
#include <starmoe/run.h>
#include "graph/graph.h"
#include "model/config.h"
#include "tasks/attention_kernels.h"
#include "tasks/codelet.h"
#include "tasks/dense.h"
#include "tasks/moe.h"

/* A parameter and its gradient (g is NULL for buffers without gradient, e.g. the router's
 * selection bias). */
typedef struct sm_param {
    sm_tensor *w, *g;
    int index;                   /* position in the model's checkpoint-order list */
    int expert;                  /* the routed expert it belongs to, -1 for none */
    int layer;                   /* its decoder layer; -1 for the embedding, num_hidden_layers
                                  * L for the final norm and the head (a pipeline stage holds
                                  * whole layers), L + k for MTP depth k's module */
    int trainable;               /* it has a gradient on the ranks holding it */
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

/* MTP depth k's own tensors (spec 7.1): the norms of the embedding of the token k ahead and
 * of the previous depth's hidden state, the projection eh_proj [d, 2d] over [enorm(emb) ;
 * hnorm(h)] and the norm before the head; its block is layers[L + k - 1]. The embedding and the
 * head are the main model's: a checkpoint's copies of them under the module's names
 * (embed_copy, head_copy) are checked on load and written on save, not held twice. */
typedef struct sm_mtp_params {
    sm_param enorm, hnorm, eh_proj, head_norm;
    char embed_copy[64], head_copy[64];      /* the copies' names */
} sm_mtp_params;

struct sm_model {
    sm_config cfg;
    sm_dims dims;                            /* shapes derived from cfg */
    sm_graph *g;
    sm_param embed, final_norm, head;
    sm_layer_params *layers;                 /* [L + D]: the layers, then the MTP blocks */
    sm_mtp_params *mtp;                      /* [D] */
    sm_param *all;                           /* every parameter, checkpoint order */
    int nall, capall;
    /* the routed experts held here: block shard_index of shard_ep (sm_model_new_shard); the
     * others' parameters are absent tensors without gradient. 1, 0: every expert. */
    int shard_ep, shard_index;
    /* with pipeline stages sharded (sm_model_new_stages): held_layers[l + 1] says whether this
     * model holds layer l's parameters ([0] the embedding, [L + 1] the final norm and head);
     * the others' are absent. NULL: every layer. */
    unsigned char *held_layers;
    int adding_layer;                        /* while the parameters are created */
    int mtp_fresh;                           /* the last load found no MTP tensors: the modules
                                              * were initialised afresh */
};

/* The block of routed expert e when E experts are split in `ep` contiguous blocks (a model's
 * expert shards, a run's expert-parallel ranks). */
static inline int sm_expert_block(int e, int E, int ep) { return e / (E / ep); }

/* Whether routed expert e's parameters are held by this model. */
static inline int sm_model_holds_expert(const sm_model *m, int e)
{
    return sm_expert_block(e, m->dims.E, m->shard_ep) == m->shard_index;
}

/* Activations of one layer for one micro-batch (T tokens). Forward tensors are saved for
 * backward; d-prefixed ones are backward temporaries. Routed experts' row buffers (resizable:
 * an expert's rows are its tokens) are indexed by (expert e, source p), sm_ex(r, e, p): the
 * rows of the tokens of expert-parallel rank p that chose e. A rank holds its own tokens' rows
 * of every expert (p = its own index: xe, ye, dye, dxe) and all sources' rows of its own
 * experts; the other entries are NULL. With one rank, p is 0. */
typedef struct sm_layer_acts {
    sm_tensor *xn, *rstd_in;                 /* attention input norm */
    sm_tensor *cq, *cqn, *rstd_q, *q;        /* query path */
    sm_tensor *kv, *kvn, *rstd_kv, *kvu;     /* kv path */
    sm_tensor *o;                            /* attention output */
    sm_tensor *x1;                           /* residual after attention */
    sm_tensor *xn2, *rstd_post;              /* FFN input norm */
    sm_tensor *h1, *h3;                      /* dense FFN (or shared expert) hidden */
    sm_tensor *plan, *w, *s, *bal_loss;      /* router */
    sm_tensor **xe, **ye, **eh1, **eh3;      /* routed experts [E * ep] */
    sm_tensor *ys;                           /* shared expert output */
    /* backward */
    sm_tensor *dxn, *dcqn, *dcq, *dq, *dkpe, *dkvu, *dkvn, *dkv, *dout;
    sm_tensor *dxn2, *dh1, *dh3;
    sm_tensor **dye, **dxe, **deh1, **deh3;  /* [E * ep] */
    sm_tensor **dge;                         /* [E]: mixing-weight gradients of own tokens */
    /* expert parallelism, per rank q of the group (NULL at this rank's own index): this rank's
     * tokens for q's experts, each once, and their index (sm_moe_pack_for_rank); q's tokens for
     * this rank's experts and their index; backward: the output gradients of those tokens and
     * the mixing weights of their rows, both ways */
    sm_tensor **tok_out, **idx_out, **tok_in, **idx_in;
    sm_tensor **grad_out, **wt_out, **grad_in, **wt_in;
} sm_layer_acts;

/* One micro-batch's MTP depth k (T' = Bm * (S - k) tokens: the positions with a token k
 * ahead). d-prefixed tensors are backward temporaries. */
typedef struct sm_mtp_acts {
    sm_tensor *ids, *targets;                /* [T']: the tokens k ahead, depth k's targets */
    sm_tensor *emb, *en, *rstd_e;            /* their embeddings, enorm */
    sm_tensor *h, *hn, *rstd_h;              /* the previous depth's hidden state at the first
                                              * S - k positions of each sequence, hnorm */
    sm_tensor *cat;                          /* [en | hn], eh_proj's input */
    sm_tensor *x[2];                         /* the block's input (eh_proj's output), output */
    sm_tensor *xf, *rstd_f, *logits, *loss_part;
    sm_tensor *dlogits, *dxf, *dx[3];        /* dx: as sm_block_dx */
    sm_tensor *dcat, *den, *dhn, *demb, *dh;
} sm_mtp_acts;

typedef struct sm_pipeline sm_pipeline;

typedef struct sm_micro_acts {
    sm_tensor *ids, *targets;                /* [T] */
    sm_tensor **x;                           /* residual stream: x[0] embeddings .. x[L] */
    sm_layer_acts *layers;                   /* [L] */
    sm_tensor *xf, *rstd_f, *logits, *dlogits, *loss_part;
    sm_tensor *dxf;                          /* head input gradient */
    /* residual-stream gradients [2L+1]: dx[2l] at block l's input x[l], dx[2l+1] at its x1,
     * dx[2L] at the final norm's input. One shared tensor updated in place, unless the run
     * defers weight gradients (a pipeline): then each boundary has its own, so a late W task
     * still reads the gradient it needs. */
    sm_tensor **dx;
    sm_mtp_acts *mtp;                        /* [the run's D] */
} sm_micro_acts;

/* The positions a block runs on: the layers' (every position of the micro-batch's sequences),
 * or MTP depth k's (the first S - k of each), with their attention, router and balance-loss
 * dimensions. */
typedef struct sm_block_shape {
    int S, T;                                /* positions per sequence, tokens */
    sm_mla_dims mla;
    sm_router_dims router;
    sm_balance bal;                          /* sequence-wise balance loss (coef 0 = off) */
} sm_block_shape;

struct sm_run {
    sm_model *m;
    int B, S, micro, Bm, T;                  /* T = Bm*S tokens per micro-batch */
    int backward;
    int split_dx;                            /* one residual gradient per block boundary */
    int share_bwd;                           /* layers share backward temporaries (no pipeline:
                                              * activations.c) */
    int grad_over_logits;                    /* dlogits is logits (sm_run_opts) */
    int D;                                   /* the MTP depths the run builds (0: none) */
    float mtp_lambda;                        /* their losses' weight lambda (spec 7.2) */
    sm_block_shape *shape;                   /* [1 + D]: the layers', then depth k's */
    sm_tensor *cos_t, *sin_t, *loss, *bal_total;
    sm_tensor *loss_main, **loss_mtp;        /* with MTP: the parts of loss, loss_mtp [D] */
    sm_micro_acts *mb;                       /* [micro] */
    sm_tensor_list owned;                    /* every tensor the run created */
    sm_pipeline *pl;                         /* pipeline cut and order; NULL: none */
    /* gradient copies: unit u = src * micro + mb (micro-batch mb of expert-parallel source
     * src; src is this rank's ep_index but for its routed experts) accumulates its weight
     * gradients into copy copy_of_unit[u] (gcopy[c][param index], which may be the parameter's
     * own g, or NULL for a copy the parameter never uses); the copies are summed into g in copy
     * order at the end of the step. NULL: into g directly. */
    int ncopies;
    int *copy_of_unit;
    sm_tensor ***gcopy;
    double submit_s;                         /* time the last step spent submitting tasks */
    int has_targets;                         /* the last step had targets (a loss) */
    int Bg;                                  /* sequences the loss averages over: B, or the
                                              * global batch under data parallelism */
    struct sm_dp *dp;                        /* the exchange between ranks; NULL: one rank */
    /* expert parallelism: the job's ranks in consecutive groups of ep; this rank is number
     * ep_index of its group (first rank ep_first) and holds experts [ep_index * E/ep, +E/ep).
     * ep 1: every expert here. */
    int ep, ep_index, ep_first;
    /* pipeline stages on MPI ranks: this rank is pipeline rank pp_index of pp_ranks (1: none),
     * and runs share `share` of the `shares` (the job's size / pp_ranks) of the global batch;
     * sm_rank_at gives the layout. Expert-parallel groups lie inside a pipeline rank's shares
     * (ep divides shares). */
    int pp_ranks, pp_index, share, shares;
    unsigned step_parity;                    /* 0/1 by step: message tags of steps in a row
                                              * differ */
    int planning;                            /* a slot's tasks are being collected, not
                                              * inserted (sm_order_plan): no messages either */
    struct sm_fp8_state *fp8;                /* FP8 training's tensors (model/linear.c); NULL:
                                              * float32 */
};

/* The blocks a run builds: the layers, then its MTP depths'. */
static inline int sm_run_blocks(const sm_run *r) { return r->m->dims.L + r->D; }
/* The positions block l runs on (model.h sm_block_shape). */
static inline const sm_block_shape *sm_shape_of(const sm_run *r, int l)
{
    int L = r->m->dims.L;
    return &r->shape[l < L ? 0 : l - L + 1];
}
/* Block l's input (i = 0) and output (1) in micro-batch mb: the residual stream x[l + i] of a
 * layer, an MTP block's own. */
static inline sm_tensor *sm_block_x(const sm_run *r, int mb, int l, int i)
{
    int L = r->m->dims.L;
    return l < L ? r->mb[mb].x[l + i] : r->mb[mb].mtp[l - L].x[i];
}
/* Block l's residual gradients in micro-batch mb: i = 0 at its input, 1 after its attention,
 * 2 at its output (a layer's dx[2l + i]). */
static inline sm_tensor *sm_block_dx(const sm_run *r, int mb, int l, int i)
{
    int L = r->m->dims.L;
    return l < L ? r->mb[mb].dx[2 * l + i] : r->mb[mb].mtp[l - L].dx[i];
}

/* Index of routed-expert row buffers (sm_layer_acts): expert e, source p. */
static inline int sm_ex(const sm_run *r, int e, int p) { return e * r->ep + p; }
/* The expert-parallel index holding expert e, and whether it is this rank. */
static inline int sm_expert_owner(const sm_run *r, int e)
{
    return sm_expert_block(e, r->m->dims.E, r->ep);
}
static inline int sm_expert_here(const sm_run *r, int e) { return sm_expert_owner(r, e) == r->ep_index; }
/* The MPI rank running share `share` of the global batch as pipeline rank `pp_index`: the
 * job's ranks are pp_ranks blocks of `shares` consecutive ranks. */
static inline int sm_rank_at(const sm_run *r, int pp_index, int share)
{
    return pp_index * r->shares + share;
}

/* data_parallel.c: a run's share of data parallelism over every rank of the job. In the step
 * graph, sm_dp_share (once the forward pass is submitted) gives every rank all ranks' loss
 * parts, and per MoE layer balance-loss parts and (with a backward pass) routing plans:
 * sm_dp_loss_parts, sm_dp_layer_bal, sm_dp_layer_plans list them, micro * ranks of them, rank
 * by rank, as one rank's run would order its micro-batches. Gradients are summed over the
 * ranks by a chain in rank order, in buckets (one message each way per bucket: the gradients
 * of one chain and one layer, in the order the backward finishes them, up to a fixed size;
 * the same grouping on every rank): sm_dp_receive_partials (before the step's gradient
 * reduction) receives on rank q > 0 the running sum of ranks 0..q-1 of every bucket and
 * unpacks it into its gradients' running sums (sm_dp_partial, by parameter index; the
 * reduction adds this rank's gradient to it); then sm_dp_sum_grads packs each bucket's sums,
 * passes them on as soon as its layer's backward is done, and brings the total back to every
 * rank. */
typedef struct sm_dp sm_dp;
sm_dp *sm_dp_new(sm_run *r, sm_error *err);
void sm_dp_free(sm_dp *d);
int sm_dp_share(sm_dp *d, sm_error *err);
int sm_dp_receive_partials(sm_dp *d, sm_error *err);
sm_tensor *sm_dp_partial(const sm_dp *d, int param);
int sm_dp_sum_grads(sm_dp *d, sm_error *err);
/* Every rank's loss parts of the main model (k = 0) or of MTP depth k; NULL on one rank. */
sm_tensor **sm_dp_loss_parts(sm_dp *d, int k);
sm_tensor **sm_dp_layer_plans(sm_dp *d, int l);
sm_tensor **sm_dp_layer_bal(sm_dp *d, int l);
/* step.c: makes r one rank's share of a data-parallel step over all the job's ranks (its B the
 * share, the loss averaged over the global batch); nothing on one rank. Before
 * sm_run_set_balance. */
int sm_run_set_data_parallel(sm_run *r, sm_error *err);
/* The ranks r's step runs over (1 without data parallelism). */
int sm_run_ranks(const sm_run *r);

/* Whether parameter p belongs to an MTP module (they come after the head: sm_param.layer). */
static inline int sm_param_is_mtp(const sm_model *m, const sm_param *p)
{
    return p->layer > m->dims.L;
}

/* Where a parameter's gradient goes for micro-batch mb of this rank: its copy, or its own g. */
sm_tensor *sm_grad(const sm_run *r, const sm_param *p, int mb);
/* Where a routed expert's gradient goes for micro-batch mb of expert-parallel source p. In
 * deterministic mode each (source, micro-batch) has its own copy, summed in that order: as one
 * rank would sum the ep ranks' micro-batches one after the other. */
sm_tensor *sm_expert_grad(const sm_run *r, const sm_param *p, int src, int mb);

/* expert_parallel.c: the messages of expert parallelism in the step graph, as StarPU-MPI
 * transfers of resizable row buffers, tagged by (what, layer, micro-batch, expert, source)
 * and the step's parity. `what` is one of SM_EP_*; a send to or a receive from source p of
 * this rank's group. Tokens and their output gradients go once per rank (SM_EP_TOKENS with
 * SM_EP_TOKEN_INDEX, SM_EP_GRAD_ROWS with SM_EP_GRAD_WEIGHTS; expert 0), outputs and input
 * gradients once per token and expert. */
enum {
    SM_EP_TOKENS, SM_EP_TOKEN_INDEX, SM_EP_OUTPUTS, SM_EP_GRAD_ROWS, SM_EP_GRAD_WEIGHTS,
    SM_EP_TOKEN_GRADS, SM_EP_KINDS
};
int sm_ep_send(const sm_run *r, sm_tensor *t, int what, int l, int mb, int e, int src,
               int to, sm_error *err);
int sm_ep_recv(const sm_run *r, sm_tensor *t, int what, int l, int mb, int e, int src,
               int from, sm_error *err);
/* What this rank's tokens of the last step sent over expert parallelism, summed over MoE layers
 * and micro-batches (read from the routing plans after the step): tokens, (token, expert)
 * pairs and (token, rank) pairs with the expert on another rank, and the expert-parallel ranks
 * a token's experts sit on, with the routing's group limit and without it (the same biased
 * scores, top-k over all experts). */
typedef struct sm_ep_route_count {
    double remote_pairs, remote_ranks, ranks;
    int ranks_max;
} sm_ep_route_count;
typedef struct sm_ep_traffic {
    double tokens;
    sm_ep_route_count routed, unlimited;
} sm_ep_traffic;
void sm_ep_traffic_of(sm_run *r, sm_ep_traffic *t);

/* Layers [first, end) of one pipeline stage, with the embedding on the first stage and the
 * final norm, head and loss on the last. */
typedef struct sm_stage_span {
    int first, end;
    int embed, head;
} sm_stage_span;

/* stage_cut.c: cuts the layers into the schedule's stages (span[p->nstages]) so that the
 * busiest pipeline rank, then the costliest stage, is as cheap as possible, by the forward
 * flops the insert helpers record for one sequence of S tokens (a build that only records). */
struct sm_schedule;
int sm_stage_cut(const struct sm_schedule *p, const sm_config *c, int S, sm_stage_span *span,
                 sm_error *err);

/* Parts of a backward pass: input gradients (B), weight gradients (W), or both. */
enum { SM_BWD_INPUT = 1, SM_BWD_WEIGHT = 2, SM_BWD_FULL = 3 };

/* step.c: one stage's forward, and its backward parts, for micro-batch mb. */
int sm_stage_fwd(sm_run *r, const sm_op_ctx *c, const sm_stage_span *sp, int mb);
int sm_stage_bwd(sm_run *r, const sm_op_ctx *c, const sm_stage_span *sp, int mb, int parts);

/* pipeline.c: cuts the run into the stages of a schedule, binds each rank to a lane of
 * workers and sets up gradient copies (DualPipe's two directions, or one per micro-batch in
 * deterministic mode); sm_pipeline_build submits a step's slots in a dependency-valid order
 * with each rank's tasks numbered in its program order. */
int sm_pipeline_setup(sm_run *r, const sm_run_opts *o, sm_error *err);
/* At the start of a step, before any of its tasks: the run's lanes, every sequence at 0. */
int sm_pipeline_begin(sm_run *r, sm_error *err);
int sm_pipeline_build(sm_run *r, sm_error *err);
/* With pipeline ranks on MPI ranks: the MPI ranks whose sums of parameter p's gradient add
 * share `share` of the batch, in direction order: those running p's stage (sm_param.layer),
 * two for DualPipe's stages, else one (one also for a routed expert whose units the first
 * direction's rank gathers, in deterministic mode); returns how many. */
int sm_pipeline_producers(const sm_run *r, const sm_param *p, int share, int *ranks);
/* The layers pipeline rank p holds under `policy` over pp ranks for sequences of S tokens
 * (the stage cut of sm_pipeline_setup) as held[0 .. L + 1] flags (sm_model.held_layers), for
 * building its model with sm_model_new_stages. */
int sm_pipeline_held_layers(const sm_config *cfg, const char *policy, int pp, int micro, int S,
                            int p, unsigned char *held, sm_error *err);
/* Whether MPI rank `rank` holds parameter p (its expert block, its pipeline rank's layers). */
int sm_pipeline_rank_holds(const sm_run *r, int rank, const sm_param *p);
/* The rank holding p nearest to `rank`: in its own pipeline rank when that one holds p's
 * layer (else in the first that does), in its own data-parallel group (the expert-parallel
 * index holding p's expert). */
int sm_pipeline_source(const sm_run *r, const sm_param *p, int rank);
/* The lowest pipeline rank holding parameters of layer `layer` (0 when every rank holds
 * every layer): the one whose ranks write them into checkpoints. */
int sm_pipeline_first_holder(const sm_run *r, int layer);
/* The run's schedule (NULL without a pipeline). */
const struct sm_schedule *sm_pipeline_schedule(const sm_run *r);
/* Sums each gradient's copies into it, after the running sum of the previous ranks under data
 * parallelism (sm_dp_partial): a no-op on one rank without copies. */
int sm_pipeline_reduce(sm_run *r, sm_error *err);
void sm_pipeline_free(sm_run *r);
/* Whether weight gradients may run late (per-boundary residual gradients needed). */
int sm_pipeline_defers_weights(const sm_run_opts *o);

/* step.c: what runs (and the decode path, model/decode.h) derive from the config: the RoPE
 * tables of positions [0, S) (YaRN when the config turns it on), MLA's softmax scale and the
 * router's dimensions over T tokens. */
int sm_model_rope_tables(const sm_model *m, int S, float *cos_t, float *sin_t, sm_error *err);
float sm_model_softmax_scale(const sm_model *m);
sm_router_dims sm_model_router_dims(const sm_model *m, int T);

/* params.c */
int sm_params_create(sm_model *m, sm_error *err);

/* mtp.c: the name of MTP depth k's `what` (loss_mtp, mtp_targets, mtp_logits, ...): `what`
 * for depth 1, `what.K` for depth K > 1; written to buf, returned. */
const char *sm_mtp_name(char *buf, size_t n, const char *what, int k);
/* MTP depth k's module for micro-batch mb, forward (after the head) and backward (parts
 * SM_BWD_*, before the final norm's backward: depth 1 adds into the head input's gradient). */
int sm_mtp_fwd(sm_run *r, const sm_op_ctx *c, int k, int mb);
int sm_mtp_bwd(sm_run *r, const sm_op_ctx *c, int k, int mb, int parts);
/* Depth k's share of the embedding's gradient, inserted right after the main model's (in the
 * embedding's stage, after every stage's B part of the micro-batch): the contributions add in
 * one order whatever the schedule. */
int sm_mtp_embedding_bwd(sm_run *r, const sm_op_ctx *c, int k, int mb);
/* Uploads micro-batch mb's tokens k ahead and depth k's targets from the step's [B, S] ids and
 * targets (NULL: none), or from `mtp_targets` [B, S] (-1: none) when given; checks the ids. */
int sm_mtp_upload(sm_run *r, int k, int mb, const int32_t *ids, const int32_t *targets,
                  const int32_t *mtp_targets, sm_error *err);

/* activations.c */
int sm_run_alloc(sm_run *r, sm_error *err);
/* What makes a tensor of activations: "<what>" of dtype dt, [n0, n1] (n1 0: [n0]), named and
 * owned by the maker's ctx (a run's micro-batch and layer, a decode context). */
typedef sm_tensor *(*sm_act_maker)(void *ctx, const char *what, sm_dtype dt, int64_t n0,
                                   int64_t n1);
/* The forward tensors of block l over T tokens that training runs and the decode path share:
 * the attention's (kvu, the expanded form's keys and values, only with `expanded`), the FFN
 * input norm's, the dense FFN's or shared experts' hidden, the router's (MoE blocks). */
void sm_layer_fwd_alloc(sm_layer_acts *x, const sm_dims *dm, int l, int T, int expanded,
                        sm_act_maker make, void *ctx);
/* An MTP depth's forward tensors over T tokens (ids to logits, model.h sm_mtp_acts). */
void sm_mtp_fwd_alloc(sm_mtp_acts *x, const sm_dims *dm, int T, sm_act_maker make, void *ctx);

/* attention_block.c: x1 = x + MLA(norm(x)); backward (parts: SM_BWD_*) turns dx[2l+1] into
 * dx[2l]. */
int sm_attention_block_fwd(sm_run *r, const sm_op_ctx *c, int l, int mb);
int sm_attention_block_bwd(sm_run *r, const sm_op_ctx *c, int l, int mb, int parts);

/* ffn_block.c: x2 = x1 + FFN(norm(x1)) (dense or MoE); backward turns dx[2l+2] into
 * dx[2l+1]. */
int sm_ffn_block_fwd(sm_run *r, const sm_op_ctx *c, int l, int mb);
int sm_ffn_block_bwd(sm_run *r, const sm_op_ctx *c, int l, int mb, int parts);

/* linear.c: the FP8 recipe's linear layers, float32 or (r->fp8) FP8 (docs/fp8.md). `what`
 * names a linear's input within its block ("xn", ...): under FP8 its quantised copy, made by
 * sm_proj_quant_input once for the linears that share it, is what the forward multiplies and
 * what the weight gradient reads (x is then unused). */
int sm_fp8_state_new(sm_run *r, sm_error *err);
void sm_fp8_state_free(sm_run *r);
void sm_fp8_step_begin(sm_run *r);
int sm_proj_quant_input(sm_run *r, const sm_op_ctx *c, const char *what, sm_tensor *x, int T,
                        int K);
int sm_proj_fwd(sm_run *r, const sm_op_ctx *c, sm_tensor *y, sm_tensor *x, const char *what,
                const sm_param *p, sm_tensor *res, int T, int in, int out);
int sm_proj_bwd_input(sm_run *r, const sm_op_ctx *c, sm_tensor *dx, sm_tensor *dy,
                      const char *what, const sm_param *p, int T, int in, int out,
                      int accumulate);
int sm_proj_bwd_weight(sm_run *r, const sm_op_ctx *c, sm_tensor *dW, sm_tensor *dy,
                       sm_tensor *x, const char *what, int T, int in, int out);
/* A SwiGLU of shape s (the dense FFN, a shared expert over every token; a routed expert over
 * its rows: s->expert >= 0) under FP8 training, its cached tensors named after `tag`:
 * y = (act = silu(x W1^T) * (x W3^T)) W2^T (+ res), h1 and h3 saved; backward parts as
 * sm_ffn_block_bwd's, into g. */
int sm_swiglu_fp8_fwd(sm_run *r, const sm_op_ctx *c, const char *tag, const sm_ffn_shape *s,
                      const sm_ffn_params *f, sm_tensor *y, sm_tensor *h1, sm_tensor *h3,
                      sm_tensor *x, sm_tensor *res);
int sm_swiglu_fp8_bwd(sm_run *r, const sm_op_ctx *c, const char *tag, const sm_ffn_shape *s,
                      const sm_ffn_params *f, const sm_ffn_grads *g, sm_tensor *dy,
                      sm_tensor *h1, sm_tensor *h3, int parts);

/* The residual gradient leaving a block backward: `out` starts as a copy of `in` when they
 * are distinct tensors (then the block's norm backward adds into it). */
int sm_residual_grad_pass(const sm_op_ctx *c, sm_tensor *out, sm_tensor *in);

#endif
