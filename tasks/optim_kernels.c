/* Pure kernels of the optimizer step: sum of squares, clip decision, AdamW, bias update. */
#include "tasks/optim_kernels.h"
#include "tasks/kernel_util.h"

#include <math.h>

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

SM_SIMD_KERNEL
void sm_adamw(float *w, float *m, float *v, const float *g, size_t n, float gscale,
              const sm_adamw_hp *hp)
{
    float b1 = hp->beta1, b2 = hp->beta2;
    float c1 = 1.0f / (1.0f - powf(b1, (float)hp->step));
    float c2 = 1.0f / (1.0f - powf(b2, (float)hp->step));
    float decay = hp->lr * hp->weight_decay;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * gscale;
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        w[i] -= hp->lr * (m[i] * c1) / (sqrtf(v[i] * c2) + hp->eps) + decay * w[i];
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
