/* Insert helpers of the optimizer step: per parameter group a gradient sum-of-squares task, one
 * task deciding the clip factor (and whether the step is applied), per group an AdamW task,
 * and per MoE layer the bias update. Kernels in optim_kernels.c. */
#ifndef STARMOE_OPTIM_H
#define STARMOE_OPTIM_H

#include "tasks/codelet.h"
#include "tasks/optim_kernels.h"

/* A group of parameters updated by one task (e.g. one layer's). */
typedef struct sm_param_group {
    int n;
    sm_tensor **w, **g, **m, **v;  /* m, v: F32 or BF16, the same for the whole group */
    float *decay;                /* weight decay factor per tensor (0 for norms) */
} sm_param_group;

/* sumsq[0] (an F64 scalar) = sum of squares of the group's gradients. */
int sm_insert_grad_sumsq(const sm_op_ctx *c, const sm_param_group *grp, sm_tensor *sumsq);
/* clip[SM_CLIP_LEN] from every group's sum of squares and the step's loss. */
int sm_insert_clip_decide(const sm_op_ctx *c, sm_tensor *clip, sm_tensor **sumsq, int n,
                          sm_tensor *loss, float max_norm);
/* AdamW over the group with hp (weight_decay multiplied per tensor by grp->decay), skipped
 * when clip says so. The moments are all F32 (task "adamw") or all BF16 (task "adamw_bf16",
 * sm_adamw_bf16); weights and gradients are F32. */
int sm_insert_adamw(const sm_op_ctx *c, const sm_param_group *grp, sm_tensor *clip,
                    const sm_adamw_hp *hp);
/* bias and load [E] from the plans' counts (plan geometry T, K, E), skipped with the step. */
int sm_insert_bias_update(const sm_op_ctx *c, sm_tensor *bias, sm_tensor *load, sm_tensor **plans,
                          int n, int T, int K, int E, float gamma, sm_tensor *clip);

#endif
