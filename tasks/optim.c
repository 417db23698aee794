/* Codelets and insert helpers of the optimizer step. Group tasks take their tensors as
 * consecutive buffers: w[0..n), g[0..n), m[0..n), v[0..n). */
#include "tasks/optim.h"

#include <stdlib.h>
#include "tasks/kernel_util.h"
#include "tasks/moe_kernels.h"


typedef struct {
    int n;
    float max_norm;
    sm_adamw_hp hp;
    int T, K, E;
    float gamma;
    float decay[];               /* per tensor, adamw only */
} sm_optim_args;

static size_t sm_buf_len(void *b) { return STARPU_VECTOR_GET_NX(b); }

/* buffers: sumsq, g[0..n) */
static void sm_grad_sumsq_cpu(void *b[], void *arg)
{
    const sm_optim_args *a = arg;
    double s = 0;
    for (int i = 0; i < a->n; i++) s += sm_sumsq(SM_BUF(b, 1 + i, float), sm_buf_len(b[1 + i]));
    SM_BUF(b, 0, double)[0] = s;
}
SM_CODELET(grad_sumsq, sm_grad_sumsq_cpu);

int sm_insert_grad_sumsq(const sm_op_ctx *c, const sm_param_group *grp, sm_tensor *sumsq)
{
    sm_optim_args a = {.n = grp->n};
    sm_access acc[1 + grp->n];
    double numel = 0;
    acc[0] = SM_W(sumsq);
    for (int i = 0; i < grp->n; i++) {
        acc[1 + i] = SM_R(grp->g[i]);
        numel += grp->g[i]->numel;
    }
    return sm_op_insert(c, &sm_cl_grad_sumsq, "grad_sumsq", SM_OPTIMIZER, -1, acc, 1 + grp->n, &a,
                        sizeof a, 2 * numel);
}

/* buffers: clip, loss, sumsq[0..n) */
static void sm_clip_decide_cpu(void *b[], void *arg)
{
    const sm_optim_args *a = arg;
    double *s = sm_kcalloc(a->n, sizeof *s, "clip_decide: the groups' sums of squares");
    for (int i = 0; i < a->n; i++) s[i] = SM_BUF(b, 2 + i, double)[0];
    sm_clip_decide(SM_BUF(b, 0, float), s, a->n, a->max_norm, SM_BUF(b, 1, float)[0]);
    free(s);
}
SM_CODELET(clip_decide, sm_clip_decide_cpu);

int sm_insert_clip_decide(const sm_op_ctx *c, sm_tensor *clip, sm_tensor **sumsq, int n,
                          sm_tensor *loss, float max_norm)
{
    sm_optim_args a = {.n = n, .max_norm = max_norm};
    sm_access acc[2 + n];
    acc[0] = SM_W(clip);
    acc[1] = SM_R(loss);
    for (int i = 0; i < n; i++) acc[2 + i] = SM_R(sumsq[i]);
    return sm_op_insert(c, &sm_cl_clip_decide, "clip_decide", SM_OPTIMIZER, -1, acc, 2 + n, &a,
                        sizeof a, n);
}

/* buffers: clip, w[0..n), g[0..n), m[0..n), v[0..n) */
static void sm_adamw_cpu(void *b[], void *arg)
{
    const sm_optim_args *a = arg;
    const float *clip = SM_BUF(b, 0, float);
    if (clip[SM_CLIP_APPLY] == 0.0f) return;
    for (int i = 0; i < a->n; i++) {
        sm_adamw_hp hp = a->hp;
        hp.weight_decay *= a->decay[i];
        sm_adamw(SM_BUF(b, 1 + i, float), SM_BUF(b, 1 + 2 * a->n + i, float),
                 SM_BUF(b, 1 + 3 * a->n + i, float), SM_BUF(b, 1 + a->n + i, float),
                 sm_buf_len(b[1 + i]), clip[SM_CLIP_SCALE], &hp);
    }
}
SM_CODELET(adamw, sm_adamw_cpu);

int sm_insert_adamw(const sm_op_ctx *c, const sm_param_group *grp, sm_tensor *clip,
                    const sm_adamw_hp *hp)
{
    int n = grp->n;
    size_t size = sizeof(sm_optim_args) + n * sizeof(float);
    sm_optim_args *a = calloc(1, size);
    sm_access acc[1 + 4 * n];
    double numel = 0;
    if (!a) return -1;
    a->n = n;
    a->hp = *hp;
    acc[0] = SM_R(clip);
    for (int i = 0; i < n; i++) {
        a->decay[i] = grp->decay[i];
        acc[1 + i] = SM_RW(grp->w[i]);
        acc[1 + n + i] = SM_R(grp->g[i]);
        acc[1 + 2 * n + i] = SM_RW(grp->m[i]);
        acc[1 + 3 * n + i] = SM_RW(grp->v[i]);
        numel += grp->w[i]->numel;
    }
    int rc = sm_op_insert(c, &sm_cl_adamw, "adamw", SM_OPTIMIZER, -1, acc, 1 + 4 * n, a, size,
                          12 * numel);
    free(a);
    return rc;
}

/* buffers: bias, load, clip, plans[0..n) */
static void sm_bias_update_cpu(void *b[], void *arg)
{
    const sm_optim_args *a = arg;
    if (SM_BUF(b, 2, float)[SM_CLIP_APPLY] == 0.0f) return;
    const int32_t **counts = sm_kcalloc(a->n, sizeof *counts, "bias_update: the plans' counts");
    for (int i = 0; i < a->n; i++)
        counts[i] = sm_plan_count(SM_BUF(b, 3 + i, int32_t), a->T, a->K, a->E);
    sm_bias_update(SM_BUF(b, 0, float), SM_BUF(b, 1, float), counts, a->n, a->E, a->gamma);
    free(counts);
}
SM_CODELET(bias_update, sm_bias_update_cpu);

int sm_insert_bias_update(const sm_op_ctx *c, sm_tensor *bias, sm_tensor *load, sm_tensor **plans,
                          int n, int T, int K, int E, float gamma, sm_tensor *clip)
{
    sm_optim_args a = {.n = n, .T = T, .K = K, .E = E, .gamma = gamma};
    sm_access acc[3 + n];
    acc[0] = SM_RW(bias);
    acc[1] = SM_W(load);
    acc[2] = SM_R(clip);
    for (int i = 0; i < n; i++) acc[3 + i] = SM_R(plans[i]);
    return sm_op_insert(c, &sm_cl_bias_update, "bias_update", SM_OPTIMIZER, -1, acc, 3 + n, &a,
                        sizeof a, (double)n * E);
}
