/* Pure kernels of the optimizer step (no StarPU): gradient sum of squares, the global-norm
 * clip decision, AdamW, and DeepSeek-V3's auxiliary-loss-free bias update. Fixed loop orders:
 * results never depend on scheduling. */
#ifndef STARMOE_OPTIM_KERNELS_H
#define STARMOE_OPTIM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* sum of x[i]^2 in double */
double sm_sumsq(const float *x, size_t n);

/* The step's decision, stored as 4 floats: [0] global gradient norm, [1] the factor gradients
 * are multiplied by (min(1, max_norm / norm), 1 when max_norm <= 0), [2] 1 when the step is
 * applied, 0 when it is skipped (non-finite loss or norm), [3] the loss it judged. */
enum { SM_CLIP_NORM, SM_CLIP_SCALE, SM_CLIP_APPLY, SM_CLIP_LOSS, SM_CLIP_LEN };
void sm_clip_decide(float *clip, const double *sumsq, int n, float max_norm, float loss);

typedef struct sm_adamw_hp {
    float lr, beta1, beta2, eps, weight_decay;
    int64_t step;                /* 1-based count of applied steps, for bias correction */
} sm_adamw_hp;

/* Decoupled AdamW on n values with gradient g * gscale:
 * m = b1 m + (1-b1) g', v = b2 v + (1-b2) g'^2, w -= lr (m_hat / (sqrt(v_hat) + eps) + wd w). */
void sm_adamw(float *w, float *m, float *v, const float *g, size_t n, float gscale,
              const sm_adamw_hp *hp);
/* The same with BF16 moments (m, v): each value's moments are read as float32, updated exactly
 * as sm_adamw does (the weight from the float32 moments) and stored rounded to nearest even. */
void sm_adamw_bf16(float *w, uint16_t *m, uint16_t *v, const float *g, size_t n, float gscale,
                   const sm_adamw_hp *hp);

/* Auxiliary-loss-free balancing (docs/model.md §6.1): with c_i the tokens routed to expert i
 * summed over the micro-batches' plans (count arrays of E entries) and c_mean = sum c / E,
 * bias[i] += gamma * sign(c_mean - c_i). load[i] receives c_i. */
void sm_bias_update(float *bias, float *load, const int32_t *const *counts, int n, int E,
                    float gamma);

#endif
