/* Insert helpers of the MoE family: router scoring and selection, dispatch (gather each
 * expert's tokens), combine (weighted scatter-add, plus the shared expert and the residual),
 * and their backward passes. Kernels in moe_kernels.c; the experts' FFNs use dense.h.
 * Per-expert tensors (xe, ye, dye, dge, dxe) are resizable row buffers (graph.h) holding
 * expert e's count[e] rows of the plan, in its order (moe_kernels.h): T*K rows in all. */
#ifndef STARMOE_MOE_H
#define STARMOE_MOE_H

#include "tasks/codelet.h"
#include "tasks/moe_kernels.h"

/* The sequence-wise balance loss of a router: coef = alpha / sequences in the whole batch
 * (0 = off), over sequences of S tokens. */
typedef struct sm_balance {
    int S;
    float coef;
} sm_balance;

/* Routing plan, mixing weights w, sigmoid scores s, and bal_loss[0] = the balance loss. */
int sm_insert_router_fwd(const sm_op_ctx *c, const sm_router_dims *r, const sm_balance *bal,
                         sm_tensor *plan, sm_tensor *w, sm_tensor *s, sm_tensor *bal_loss,
                         sm_tensor *u, sm_tensor *Wg, sm_tensor *bias);
/* du (=|+=) and dWg += from the per-expert mixing-weight gradients dge[0..E-1] and the
 * balance loss. */
int sm_insert_router_bwd(const sm_op_ctx *c, const sm_router_dims *r, const sm_balance *bal,
                         sm_tensor *du, sm_tensor *dWg, sm_tensor **dge, sm_tensor *s,
                         sm_tensor *plan, sm_tensor *u, sm_tensor *Wg, int accumulate);
int sm_insert_moe_dispatch(const sm_op_ctx *c, const sm_router_dims *r, int e, sm_tensor *xe,
                           sm_tensor *u, sm_tensor *plan);
/* Dispatch to the rank holding experts [e0, e1): xs the rows of the tokens choosing any of them
 * (each once, in token order), xi their index (sm_moe_pack_for_rank); both resizable. */
int sm_insert_moe_dispatch_rank(const sm_op_ctx *c, const sm_router_dims *r, int e0, int e1,
                                sm_tensor *xs, sm_tensor *xi, sm_tensor *u, sm_tensor *plan);
/* Backward, to the same rank: gs dy's rows of those tokens (each once, as xs), ws the mixing
 * weights of the experts' rows (sm_moe_pair_weights); both resizable. */
int sm_insert_moe_grads_for_rank(const sm_op_ctx *c, const sm_router_dims *r, int e0, int e1,
                                 sm_tensor *gs, sm_tensor *ws, sm_tensor *dy, sm_tensor *w,
                                 sm_tensor *plan);
/* There: expert e's rows xe (resizable), expert number j of the nexperts of xi, from xs, each
 * times its weight in ws when ws is not NULL (the experts' output gradients). */
int sm_insert_moe_take_rows(const sm_op_ctx *c, const sm_router_dims *r, int e, int j,
                            int nexperts, sm_tensor *xe, sm_tensor *xs, sm_tensor *xi,
                            sm_tensor *ws);
int sm_insert_moe_dispatch_bwd(const sm_op_ctx *c, const sm_router_dims *r, sm_tensor *du,
                               sm_tensor **dxe, sm_tensor *plan, int accumulate);
/* y = res + shared + sum_k w * ye (res and shared may be NULL). */
int sm_insert_moe_combine(const sm_op_ctx *c, const sm_router_dims *r, sm_tensor *y,
                          sm_tensor **ye, sm_tensor *shared, sm_tensor *w, sm_tensor *plan,
                          sm_tensor *res);
/* dye NULL: the expert is on another rank, which computes its output gradient (dge only). */
int sm_insert_moe_combine_bwd(const sm_op_ctx *c, const sm_router_dims *r, int e, sm_tensor *dye,
                              sm_tensor *dge, sm_tensor *dy, sm_tensor *ye, sm_tensor *w,
                              sm_tensor *plan);

#endif
