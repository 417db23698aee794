/* The model's parameters: one tensor (and one gradient tensor) per Hugging Face weight,
 * shapes from the config, created in checkpoint order; loading from a Hugging Face folder and
 * seeded random initialisation. */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "io/hf_model.h"

/* Adds parameter `name` of the given shape; with_grad = 0 for non-trainable buffers, -1 for a
 * parameter another rank holds (absent here, without gradient), as is every parameter of a
 * layer the model does not hold. */
static int sm_param_add(sm_model *m, sm_param *p, const char *name, int ndim, int64_t d0,
                        int64_t d1, int with_grad, sm_error *err)
{
    int64_t shape[2] = {d0, d1};
    char gname[272];
    p->trainable = with_grad != 0;
    if (m->held_layers && !m->held_layers[m->adding_layer + 1]) with_grad = -1;
    p->w = with_grad < 0 ? sm_tensor_absent(m->g, name, SM_F32, SM_PARAM, ndim, shape, err)
                         : sm_tensor_new(m->g, name, SM_F32, SM_PARAM, ndim, shape, err);
    if (!p->w) return -1;
    p->g = NULL;
    p->index = m->nall;
    p->expert = -1;
    p->layer = m->adding_layer;
    if (with_grad > 0) {
        snprintf(gname, sizeof gname, "grad.%s", name);
        if (!(p->g = sm_tensor_new(m->g, gname, SM_F32, SM_GRAD, ndim, shape, err))) return -1;
    }
    if (m->nall == m->capall) {
        m->capall = m->capall ? 2 * m->capall : 64;
        sm_param *all = realloc(m->all, m->capall * sizeof *all);
        if (!all) return sm_fail(err, "out of memory for the parameter list");
        m->all = all;
    }
    m->all[m->nall++] = *p;
    return 0;
}

#define SM_NAME(buf, ...) (snprintf(buf, sizeof buf, __VA_ARGS__), buf)

/* A SwiGLU's three weights; expert: the routed expert they belong to, -1 for none. */
static int sm_ffn_add(sm_model *m, sm_ffn_params *f, const char *prefix, int I, int expert,
                      sm_error *err)
{
    char n[256];
    int d = m->dims.d, here = expert < 0 || sm_model_holds_expert(m, expert) ? 1 : -1;
    f->I = I;
    if (sm_param_add(m, &f->down, SM_NAME(n, "%s.down_proj.weight", prefix), 2, d, I, here,
                     err) ||
        sm_param_add(m, &f->gate, SM_NAME(n, "%s.gate_proj.weight", prefix), 2, I, d, here,
                     err) ||
        sm_param_add(m, &f->up, SM_NAME(n, "%s.up_proj.weight", prefix), 2, I, d, here, err))
        return -1;
    sm_param *ps[] = {&f->down, &f->gate, &f->up};
    for (int i = 0; i < 3; i++) ps[i]->expert = m->all[ps[i]->index].expert = expert;
    return 0;
}

static int sm_attn_add(sm_model *m, sm_layer_params *p, int l, sm_error *err)
{
    const sm_dims *x = &m->dims;
    char n[256];
#define ATT(field, suffix, ndim, d0, d1) \
    sm_param_add(m, &p->field, SM_NAME(n, "model.layers.%d.self_attn.%s", l, suffix), ndim, d0, d1, 1, err)
    if (ATT(kv_a_norm, "kv_a_layernorm.weight", 1, x->dc, 0) ||
        ATT(kv_a, "kv_a_proj_with_mqa.weight", 2, x->kv_a_w, x->d) ||
        ATT(kv_b, "kv_b_proj.weight", 2, x->kv_b_w, x->dc) ||
        ATT(o, "o_proj.weight", 2, x->d, x->o_w))
        return -1;
    if (x->dq > 0)
        return ATT(q_a_norm, "q_a_layernorm.weight", 1, x->dq, 0) ||
               ATT(q_a, "q_a_proj.weight", 2, x->dq, x->d) ||
               ATT(q_b, "q_b_proj.weight", 2, x->q_w, x->dq) ? -1 : 0;
    return ATT(q, "q_proj.weight", 2, x->q_w, x->d);
#undef ATT
}

static int sm_moe_add(sm_model *m, sm_layer_params *p, int l, sm_error *err)
{
    const sm_dims *x = &m->dims;
    char n[256];
    int E = x->E;
    p->experts = calloc(E, sizeof *p->experts);
    if (!p->experts) return sm_fail(err, "out of memory for %d experts", E);
    for (int e = 0; e < E; e++)
        if (sm_ffn_add(m, &p->experts[e], SM_NAME(n, "model.layers.%d.mlp.experts.%d", l, e),
                       x->expert_I, e, err))
            return -1;
    if (sm_param_add(m, &p->bias, SM_NAME(n, "model.layers.%d.mlp.gate.e_score_correction_bias", l),
                     1, E, 0, 0, err) ||
        sm_param_add(m, &p->router, SM_NAME(n, "model.layers.%d.mlp.gate.weight", l), 2, E,
                     x->d, 1, err))
        return -1;
    if (x->shared_I > 0)
        return sm_ffn_add(m, &p->shared, SM_NAME(n, "model.layers.%d.mlp.shared_experts", l),
                          x->shared_I, -1, err);
    return 0;
}

static int sm_layer_add(sm_model *m, int l, sm_error *err)
{
    sm_layer_params *p = &m->layers[l];
    char n[256];
    int d = m->dims.d;
    p->moe = sm_dims_layer_is_moe(&m->dims, l);
    if (sm_param_add(m, &p->in_norm, SM_NAME(n, "model.layers.%d.input_layernorm.weight", l), 1,
                     d, 0, 1, err))
        return -1;
    if (p->moe ? sm_moe_add(m, p, l, err)
               : sm_ffn_add(m, &p->dense, SM_NAME(n, "model.layers.%d.mlp", l),
                            sm_dims_ffn_width(&m->dims, l), -1, err))
        return -1;
    if (sm_param_add(m, &p->post_norm,
                     SM_NAME(n, "model.layers.%d.post_attention_layernorm.weight", l), 1, d, 0, 1,
                     err))
        return -1;
    return sm_attn_add(m, p, l, err);
}

/* MTP depth k's module, Hugging Face layer L + k - 1: its own tensors and its block. */
static int sm_mtp_add(sm_model *m, int k, sm_error *err)
{
    const sm_dims *x = &m->dims;
    sm_mtp_params *p = &m->mtp[k - 1];
    int l = x->L + k - 1, d = x->d;
    char n[256];
    m->adding_layer = x->L + k;
    snprintf(p->embed_copy, sizeof p->embed_copy, "model.layers.%d.embed_tokens.weight", l);
    snprintf(p->head_copy, sizeof p->head_copy, "model.layers.%d.shared_head.head.weight", l);
#define MTP(field, suffix, ndim, d0, d1) \
    sm_param_add(m, &p->field, SM_NAME(n, "model.layers.%d.%s", l, suffix), ndim, d0, d1, 1, err)
    if (MTP(enorm, "enorm.weight", 1, d, 0) || MTP(hnorm, "hnorm.weight", 1, d, 0) ||
        MTP(eh_proj, "eh_proj.weight", 2, d, 2 * d) ||
        MTP(head_norm, "shared_head.norm.weight", 1, d, 0))
        return -1;
#undef MTP
    return sm_layer_add(m, l, err);
}

int sm_params_create(sm_model *m, sm_error *err)
{
    const sm_dims *x = &m->dims;
    if (!(m->layers = calloc(x->blocks, sizeof *m->layers)) ||
        (x->D && !(m->mtp = calloc(x->D, sizeof *m->mtp))))
        return sm_fail(err, "out of memory");
    m->adding_layer = -1;
    if (sm_param_add(m, &m->embed, "model.embed_tokens.weight", 2, x->V, x->d, 1, err))
        return -1;
    for (int l = 0; l < x->L; l++)
        if ((m->adding_layer = l, sm_layer_add(m, l, err))) return -1;
    m->adding_layer = x->L;
    if (sm_param_add(m, &m->final_norm, "model.norm.weight", 1, x->d, 0, 1, err) ||
        sm_param_add(m, &m->head, "lm_head.weight", 2, x->V, x->d, 1, err))
        return -1;
    for (int k = 1; k <= x->D; k++)
        if (sm_mtp_add(m, k, err)) return -1;
    return 0;
}


/* Whether the folder holds any of the model's MTP tensors (their parameters come after the
 * head's). */
static int sm_hf_has_mtp(const sm_model *m, const sm_hf_model *hf)
{
    for (int i = m->head.index + 1; i < m->nall; i++)
        if (sm_hf_has(hf, m->all[i].w->name)) return 1;
    return 0;
}

/* Checks that the folder's copy of `main` under an MTP module's name `name` (when it has one)
 * repeats it bit for bit. */
static int sm_check_copy(const sm_hf_model *hf, const char *dir, const char *name,
                         const sm_param *main, sm_error *err)
{
    const sm_tensor *t = main->w;
    if (t->absent || !sm_hf_has(hf, name)) return 0;
    float *copy = malloc(t->numel * sizeof *copy);
    if (!copy) return sm_fail(err, "%s: out of memory for %s", dir, name);
    int rc = sm_hf_load_f32(hf, name, t->ndim, t->shape, copy, err);
    const float *w = t->data;
    for (size_t k = 0; rc == 0 && k < t->numel; k++)
        if (memcmp(&copy[k], &w[k], sizeof *w))
            rc = sm_fail(err, "%s: %s differs from %s at element %zu (%.9g vs %.9g): an MTP "
                              "module's copy must repeat the main model's tensor bit for bit",
                         dir, name, t->name, k, copy[k], w[k]);
    free(copy);
    return rc;
}

static void sm_init_params(sm_model *m, int from, uint64_t seed, double std);

int sm_model_load_hf(sm_model *m, const char *dir, sm_error *err)
{
    sm_hf_model hf;
    if (sm_hf_open(&hf, dir, err)) return -1;
    int rc = 0, mtp = m->dims.D > 0 && sm_hf_has_mtp(m, &hf);
    int end = m->dims.D > 0 && !mtp ? m->head.index + 1 : m->nall;
    for (int i = 0; i < end && rc == 0; i++) {
        sm_tensor *t = m->all[i].w;
        if (t->absent) continue;
        rc = sm_hf_load_f32(&hf, t->name, t->ndim, t->shape, t->data, err);
    }
    for (int k = 0; mtp && k < m->dims.D && rc == 0; k++)
        rc = sm_check_copy(&hf, dir, m->mtp[k].embed_copy, &m->embed, err) ||
                     sm_check_copy(&hf, dir, m->mtp[k].head_copy, &m->head, err)
                 ? -1
                 : 0;
    sm_hf_close(&hf);
    m->mtp_fresh = rc == 0 && end < m->nall;
    if (m->mtp_fresh) sm_init_params(m, end, 0, m->cfg.initializer_range);
    return rc;
}

int sm_model_mtp_fresh(const sm_model *m) { return m->mtp_fresh; }

/* splitmix64 + Box-Muller: the same weights for the same seed on every machine. Each value
 * takes two steps of the generator, whose state only ever grows by SM_SPLITMIX_STEP: a tensor
 * another rank holds is skipped by advancing it, so every rank draws the values one rank
 * would. */
#define SM_SPLITMIX_STEP 0x9E3779B97F4A7C15ull

static double sm_init_normal(uint64_t *s)
{
    double u[2];
    for (int i = 0; i < 2; i++) {
        uint64_t z = (*s += SM_SPLITMIX_STEP);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        u[i] = ((double)((z ^ (z >> 31)) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    }
    return sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

/* The draws of parameters [from, nall). */
static void sm_init_params(sm_model *m, int from, uint64_t seed, double std)
{
    uint64_t s = seed;
    for (int i = from; i < m->nall; i++) {
        sm_tensor *t = m->all[i].w;
        float *w = t->data;
        if (t->absent) {             /* another rank's: its draws skipped (matrices only) */
            if (t->ndim != 1) s += 2 * (uint64_t)t->numel * SM_SPLITMIX_STEP;
            continue;
        }
        int is_bias = m->all[i].g == NULL;
        for (size_t k = 0; k < t->numel; k++)
            w[k] = is_bias ? 0.0f : t->ndim == 1 ? 1.0f : (float)(std * sm_init_normal(&s));
    }
}

void sm_model_init_random(sm_model *m, uint64_t seed, double std)
{
    sm_init_params(m, 0, seed, std);
}
