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

/* How the AdamW moments (exp_avg, exp_avg_sq) are stored. With BF16 moments each update reads
 * them as float32, computes exactly as with float32 moments (the weight from the float32
 * values) and stores them rounded to nearest even: half the memory of the optimizer's state
 * (DeepSeek-V3's FP8 training keeps them so). Weights and gradients stay float32 either way. */
typedef enum sm_optim_state_dtype {
    SM_OPTIM_STATE_F32 = 0,
    SM_OPTIM_STATE_BF16
} sm_optim_state_dtype;

typedef struct sm_optimizer_opts {
    sm_optim_state_dtype state_dtype;   /* SM_OPTIM_STATE_F32 (the zero default) or BF16 */
} sm_optimizer_opts;

/* Moments for every trainable parameter (zero), grouped one task per layer: float32 moments
 * (sm_optimizer_new_with with the default options). */
SM_API sm_optimizer *sm_optimizer_new(sm_model *m, sm_error *err);
/* The same with options (NULL: the defaults). */
SM_API sm_optimizer *sm_optimizer_new_with(sm_model *m, const sm_optimizer_opts *opts,
                                           sm_error *err);
SM_API sm_optim_state_dtype sm_optimizer_state_dtype(const sm_optimizer *o);
/* "f32" or "bf16". */
SM_API const char *sm_optim_state_dtype_name(sm_optim_state_dtype d);
/* The dtype a choice names: "f32", "bf16", or "auto" = BF16 under FP8 training (fp8 != 0, as
 * DeepSeek-V3 trains) and F32 otherwise. -1 for any other text (the caller's message names its
 * option and these three values). */
SM_API int sm_optim_state_dtype_parse(const char *choice, int fp8, sm_optim_state_dtype *d);
/* Bytes of the moments this process holds (2 values per trainable parameter value held). */
SM_API int64_t sm_optimizer_state_bytes(const sm_optimizer *o);
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
/* Moment tensors for checkpoints: 2 per trainable parameter held (sm_model_param_held), named
 * "<param>.exp_avg" and "<param>.exp_avg_sq", shape of the parameter; their data are float32
 * values or BF16 ones (uint16_t bits) as sm_optimizer_state_dtype says. */
SM_API int sm_optimizer_nstates(const sm_optimizer *o);
SM_API const char *sm_optimizer_state_name(const sm_optimizer *o, int i);
SM_API void *sm_optimizer_state_data(sm_optimizer *o, int i, int64_t *shape, int *ndim);
/* The parameter (its index among sm_model_param_name's) that state tensor i belongs to. */
SM_API int sm_optimizer_state_param(const sm_optimizer *o, int i);

#endif
