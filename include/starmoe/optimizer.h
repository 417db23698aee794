/* The optimizer: AdamW with global-norm clipping and the auxiliary-loss-free router bias
 * update, submitted as tasks into a run's step, and its state for checkpoints. */
#ifndef STARMOE_OPTIMIZER_H
#define STARMOE_OPTIMIZER_H

#include <stdint.h>
#include <starmoe/error.h>
#include <starmoe/export.h>
#include <starmoe/model.h>
#include <starmoe/run.h>

typedef struct sm_optimizer sm_optimizer;

typedef struct sm_optim_hp {
    double lr, beta1, beta2, eps, weight_decay;
    double grad_clip;            /* max global gradient norm, 0 = no clipping */
    double bias_update_speed;    /* gamma of the auxiliary-loss-free balancing */
} sm_optim_hp;

/* Moments for every trainable parameter (zero), grouped one task per layer. */
SM_API sm_optimizer *sm_optimizer_new(sm_model *m, sm_error *err);
SM_API void sm_optimizer_free(sm_optimizer *o);
/* Adds the optimizer tasks to the step r has submitted: gradient norm, clip factor and skip
 * decision (a non-finite loss or norm skips the step: nothing changes), AdamW, bias update
 * from the loads counted by the routers. */
SM_API int sm_optimizer_submit(sm_optimizer *o, sm_run *r, const sm_optim_hp *hp,
                               sm_error *err);
/* After sm_run_wait: the global gradient norm and whether the step was applied. */
SM_API void sm_optimizer_result(sm_optimizer *o, double *grad_norm, int *applied);
/* Tokens routed to each expert of MoE layer l in the last applied step ([E]), -1 when l is not
 * an MoE layer. */
SM_API int sm_optimizer_loads(sm_optimizer *o, int l, float *load);
/* Applied steps so far (AdamW's bias-correction count); settable when resuming. */
SM_API int64_t sm_optimizer_steps(const sm_optimizer *o);
SM_API void sm_optimizer_set_steps(sm_optimizer *o, int64_t steps);
/* Moment tensors for checkpoints: 2 per trainable parameter held (sm_model_param_held), named "<param>.exp_avg" and
 * "<param>.exp_avg_sq", shape of the parameter. */
SM_API int sm_optimizer_nstates(const sm_optimizer *o);
SM_API const char *sm_optimizer_state_name(const sm_optimizer *o, int i);
SM_API float *sm_optimizer_state_data(sm_optimizer *o, int i, int64_t *shape, int *ndim);
/* The parameter (its index among sm_model_param_name's) that state tensor i belongs to. */
SM_API int sm_optimizer_state_param(const sm_optimizer *o, int i);

#endif
