/* Pure kernels of the optimizer step: sum of squares, clip decision, AdamW (float32 or BF16
 * moments), bias update. */
#include "tasks/optim_kernels.h"
#include "tasks/kernel_util.h"

#include <math.h>
#include "base/dtype.h"

SM_SIMD_KERNEL
double sm_sumsq(const float *x, size_t n) { return sm_dotd(x, x, NULL, n); }

void sm_clip_decide(float *clip, const double *sumsq, int n, float max_norm, float loss)
{
    double total = 0;
    for (int i = 0; i < n; i++) total += sumsq[i];
    double norm = sqrt(total);
    int apply = isfinite(norm) && isfinite(loss);
    clip[SM_CLIP_NORM] = (float)norm;
    clip[SM_CLIP_SCALE] = apply && max_norm > 0 && norm > max_norm ? (float)(max_norm / norm) : 1.0f;
    clip[SM_CLIP_APPLY] = (float)apply;
    clip[SM_CLIP_LOSS] = loss;
}

/* One step's constants: the bias corrections and the decoupled decay factor. */
typedef struct sm_adamw_consts {
    float b1, b2, c1, c2, decay;
} sm_adamw_consts;

static sm_adamw_consts sm_adamw_consts_of(const sm_adamw_hp *hp)
{
    return (sm_adamw_consts){.b1 = hp->beta1, .b2 = hp->beta2,
                             .c1 = 1.0f / (1.0f - powf(hp->beta1, (float)hp->step)),
                             .c2 = 1.0f / (1.0f - powf(hp->beta2, (float)hp->step)),
                             .decay = hp->lr * hp->weight_decay};
}

/* One value's update in float32: its moments *m, *v and weight *w from gradient gi. */
static inline void sm_adamw_one(const sm_adamw_consts *k, const sm_adamw_hp *hp, float *w,
                                float *m, float *v, float gi)
{
    *m = k->b1 * *m + (1.0f - k->b1) * gi;
    *v = k->b2 * *v + (1.0f - k->b2) * gi * gi;
    *w -= hp->lr * (*m * k->c1) / (sqrtf(*v * k->c2) + hp->eps) + k->decay * *w;
}

SM_SIMD_KERNEL
void sm_adamw(float *w, float *m, float *v, const float *g, size_t n, float gscale,
              const sm_adamw_hp *hp)
{
    sm_adamw_consts k = sm_adamw_consts_of(hp);
    for (size_t i = 0; i < n; i++) sm_adamw_one(&k, hp, &w[i], &m[i], &v[i], g[i] * gscale);
}

SM_SIMD_KERNEL
void sm_adamw_bf16(float *w, uint16_t *m, uint16_t *v, const float *g, size_t n, float gscale,
                   const sm_adamw_hp *hp)
{
    sm_adamw_consts k = sm_adamw_consts_of(hp);
    for (size_t i = 0; i < n; i++) {
        float mi = sm_bf16_to_f32(m[i]), vi = sm_bf16_to_f32(v[i]);
        sm_adamw_one(&k, hp, &w[i], &mi, &vi, g[i] * gscale);
        m[i] = sm_f32_to_bf16(mi);
        v[i] = sm_f32_to_bf16(vi);
    }
}

void sm_bias_update(float *bias, float *load, const int32_t *const *counts, int n, int E,
                    float gamma)
{
    double total = 0;
    for (int e = 0; e < E; e++) {
        long c = 0;
        for (int i = 0; i < n; i++) c += counts[i][e];
        load[e] = (float)c;
        total += c;
    }
    double mean = total / E;
    for (int e = 0; e < E; e++)
        bias[e] += gamma * (float)((load[e] < mean) - (load[e] > mean));
}
