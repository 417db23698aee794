/* Codelets and insert helpers of the optimizer step. Group tasks take their tensors as
 * consecutive buffers: w[0..n), g[0..n), m[0..n), v[0..n) (sm_adamw_slot). */
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

/* g[i] is slot GRAD_SUMSQ_G + i */
enum { GRAD_SUMSQ_OUT, GRAD_SUMSQ_G };

static void sm_grad_sumsq_cpu(void *b[], void *arg)
{
    const sm_optim_args *a = arg;
    double s = 0;
    for (int i = 0; i < a->n; i++)
        s += sm_sumsq(SM_BUF(b, GRAD_SUMSQ_G + i, float), sm_buf_len(b[GRAD_SUMSQ_G + i]));
    SM_BUF(b, GRAD_SUMSQ_OUT, double)[0] = s;
}
SM_CODELET(grad_sumsq, sm_grad_sumsq_cpu);

int sm_insert_grad_sumsq(const sm_op_ctx *c, const sm_param_group *grp, sm_tensor *sumsq)
{
    sm_optim_args a = {.n = grp->n};
    sm_access acc[GRAD_SUMSQ_G + grp->n];
    double numel = 0;
    acc[GRAD_SUMSQ_OUT] = SM_W(sumsq);
    for (int i = 0; i < grp->n; i++) {
        acc[GRAD_SUMSQ_G + i] = SM_R(grp->g[i]);
        numel += grp->g[i]->numel;
    }
    return sm_op_insert(c, &sm_cl_grad_sumsq, "grad_sumsq", SM_OPTIMIZER, -1, acc,
                        GRAD_SUMSQ_G + grp->n, &a, sizeof a, 2 * numel);
}

/* sumsq[i] is slot CLIP_DECIDE_SUMSQ + i */
enum { CLIP_DECIDE_CLIP, CLIP_DECIDE_LOSS, CLIP_DECIDE_SUMSQ };

static void sm_clip_decide_cpu(void *b[], void *arg)
{
    const sm_optim_args *a = arg;
    double *s = sm_kcalloc(a->n, sizeof *s, "clip_decide: the groups' sums of squares");
    for (int i = 0; i < a->n; i++) s[i] = SM_BUF(b, CLIP_DECIDE_SUMSQ + i, double)[0];
    sm_clip_decide(SM_BUF(b, CLIP_DECIDE_CLIP, float), s, a->n, a->max_norm,
                   SM_BUF(b, CLIP_DECIDE_LOSS, float)[0]);
    free(s);
}
SM_CODELET(clip_decide, sm_clip_decide_cpu);

int sm_insert_clip_decide(const sm_op_ctx *c, sm_tensor *clip, sm_tensor **sumsq, int n,
                          sm_tensor *loss, float max_norm)
{
    sm_optim_args a = {.n = n, .max_norm = max_norm};
    sm_access acc[CLIP_DECIDE_SUMSQ + n];
    acc[CLIP_DECIDE_CLIP] = SM_W(clip);
    acc[CLIP_DECIDE_LOSS] = SM_R(loss);
    for (int i = 0; i < n; i++) acc[CLIP_DECIDE_SUMSQ + i] = SM_R(sumsq[i]);
    return sm_op_insert(c, &sm_cl_clip_decide, "clip_decide", SM_OPTIMIZER, -1, acc,
                        CLIP_DECIDE_SUMSQ + n, &a, sizeof a, n);
}

/* the group's tensors of one kind (ADAMW_W ... ADAMW_V) follow each other after the clip */
enum { ADAMW_CLIP, ADAMW_GROUP };
enum { ADAMW_W, ADAMW_G, ADAMW_M, ADAMW_V };

/* Slot of tensor i of `kind` in a group of n. */
static int sm_adamw_slot(int kind, int n, int i) { return ADAMW_GROUP + kind * n + i; }

/* The group's AdamW with float32 moments, or BF16 ones (sm_adamw_bf16). */
static void sm_adamw_group(void *b[], const sm_optim_args *a, int bf16_moments)
{
    const float *clip = SM_BUF(b, ADAMW_CLIP, float);
    int n = a->n;
    if (clip[SM_CLIP_APPLY] == 0.0f) return;
    for (int i = 0; i < n; i++) {
        sm_adamw_hp hp = a->hp;
        float *w = SM_BUF(b, sm_adamw_slot(ADAMW_W, n, i), float);
        const float *g = SM_BUF(b, sm_adamw_slot(ADAMW_G, n, i), float);
        int m = sm_adamw_slot(ADAMW_M, n, i), v = sm_adamw_slot(ADAMW_V, n, i);
        size_t len = sm_buf_len(b[sm_adamw_slot(ADAMW_W, n, i)]);
        hp.weight_decay *= a->decay[i];
        if (bf16_moments)
            sm_adamw_bf16(w, SM_BUF(b, m, uint16_t), SM_BUF(b, v, uint16_t), g, len,
                          clip[SM_CLIP_SCALE], &hp);
        else
            sm_adamw(w, SM_BUF(b, m, float), SM_BUF(b, v, float), g, len, clip[SM_CLIP_SCALE],
                     &hp);
    }
}

static void sm_adamw_cpu(void *b[], void *arg) { sm_adamw_group(b, arg, 0); }
SM_CODELET(adamw, sm_adamw_cpu);
static void sm_adamw_bf16_cpu(void *b[], void *arg) { sm_adamw_group(b, arg, 1); }
SM_CODELET(adamw_bf16, sm_adamw_bf16_cpu);

int sm_insert_adamw(const sm_op_ctx *c, const sm_param_group *grp, sm_tensor *clip,
                    const sm_adamw_hp *hp)
{
    int n = grp->n;
    size_t size = sizeof(sm_optim_args) + n * sizeof(float);
    sm_optim_args *a = calloc(1, size);
    sm_access acc[ADAMW_GROUP + 4 * n];
    double numel = 0;
    if (!a) return sm_fail(c->err, "adamw: out of memory for the arguments of %d parameters", n);
    a->n = n;
    a->hp = *hp;
    acc[ADAMW_CLIP] = SM_R(clip);
    for (int i = 0; i < n; i++) {
        a->decay[i] = grp->decay[i];
        acc[sm_adamw_slot(ADAMW_W, n, i)] = SM_RW(grp->w[i]);
        acc[sm_adamw_slot(ADAMW_G, n, i)] = SM_R(grp->g[i]);
        acc[sm_adamw_slot(ADAMW_M, n, i)] = SM_RW(grp->m[i]);
        acc[sm_adamw_slot(ADAMW_V, n, i)] = SM_RW(grp->v[i]);
        numel += grp->w[i]->numel;
    }
    int bf16 = n > 0 && grp->m[0]->dtype == SM_BF16;
    int rc = sm_op_insert(c, bf16 ? &sm_cl_adamw_bf16 : &sm_cl_adamw, bf16 ? "adamw_bf16" : "adamw",
                          SM_OPTIMIZER, -1, acc, ADAMW_GROUP + 4 * n, a, size, 12 * numel);
    free(a);
    return rc;
}

/* plans[i] is slot BIAS_UPDATE_PLANS + i */
enum { BIAS_UPDATE_BIAS, BIAS_UPDATE_LOAD, BIAS_UPDATE_CLIP, BIAS_UPDATE_PLANS };

static void sm_bias_update_cpu(void *b[], void *arg)
{
    const sm_optim_args *a = arg;
    if (SM_BUF(b, BIAS_UPDATE_CLIP, float)[SM_CLIP_APPLY] == 0.0f) return;
    const int32_t **counts = sm_kcalloc(a->n, sizeof *counts, "bias_update: the plans' counts");
    for (int i = 0; i < a->n; i++)
        counts[i] = sm_plan_count(SM_BUF(b, BIAS_UPDATE_PLANS + i, int32_t), a->T, a->K, a->E);
    sm_bias_update(SM_BUF(b, BIAS_UPDATE_BIAS, float), SM_BUF(b, BIAS_UPDATE_LOAD, float), counts,
                   a->n, a->E, a->gamma);
    free(counts);
}
SM_CODELET(bias_update, sm_bias_update_cpu);

int sm_insert_bias_update(const sm_op_ctx *c, sm_tensor *bias, sm_tensor *load, sm_tensor **plans,
                          int n, int T, int K, int E, float gamma, sm_tensor *clip)
{
    sm_optim_args a = {.n = n, .T = T, .K = K, .E = E, .gamma = gamma};
    sm_access acc[BIAS_UPDATE_PLANS + n];
    acc[BIAS_UPDATE_BIAS] = SM_RW(bias);
    acc[BIAS_UPDATE_LOAD] = SM_RW(load);       /* kept as it is when the step is skipped */
    acc[BIAS_UPDATE_CLIP] = SM_R(clip);
    for (int i = 0; i < n; i++) acc[BIAS_UPDATE_PLANS + i] = SM_R(plans[i]);
    return sm_op_insert(c, &sm_cl_bias_update, "bias_update", SM_OPTIMIZER, -1, acc,
                        BIAS_UPDATE_PLANS + n, &a, sizeof a, (double)n * E);
}
