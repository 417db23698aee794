/* Model lifetime and parameter accessors of the public API. */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>
#include "base/aprintf.h"
#include "io/hf_model.h"

sm_model *sm_model_new(const sm_config *cfg, int execute, sm_error *err)
{
    return sm_model_new_shard(cfg, execute, 1, 0, err);
}

sm_model *sm_model_new_shard(const sm_config *cfg, int execute, int ep, int index, sm_error *err)
{
    return sm_model_new_stages(cfg, execute, ep, index, NULL, err);
}

sm_model *sm_model_new_stages(const sm_config *cfg, int execute, int ep, int index,
                              const unsigned char *layers, sm_error *err)
{
    if (sm_config_validate(cfg, "model config", err)) return NULL;
    if (ep < 1 || index < 0 || index >= ep || cfg->n_routed_experts % ep) {
        sm_fail(err, "expert shard %d of %d: expected 0 <= shard < ep, and ep dividing the "
                     "model's n_routed_experts %d", index, ep, cfg->n_routed_experts);
        return NULL;
    }
    sm_model *m = calloc(1, sizeof *m);
    if (!m) {
        sm_fail(err, "out of memory");
        return NULL;
    }
    m->cfg = *cfg;
    m->dims = sm_dims_of(cfg);
    m->shard_ep = ep;
    m->shard_index = index;
    size_t nheld = (size_t)cfg->num_hidden_layers + 2;
    if (layers && cfg->num_nextn_predict_layers > 0) {
        sm_fail(err, "a model of pipeline stages with Multi-Token Prediction "
                     "(num_nextn_predict_layers %d) is not built: train with parallel.pp 1, or "
                     "drop the modules with --set model.num_nextn_predict_layers=0",
                cfg->num_nextn_predict_layers);
        return NULL;
    }
    if (layers && (m->held_layers = malloc(nheld))) memcpy(m->held_layers, layers, nheld);
    if (layers && !m->held_layers) sm_fail(err, "out of memory");
    else if (!(m->g = sm_graph_new(execute))) sm_fail(err, "out of memory for the task graph");
    if (!m->g || sm_params_create(m, err)) {
        sm_model_free(m);
        return NULL;
    }
    return m;
}

sm_model *sm_model_open_hf(const char *dir, sm_error *err)
{
    return sm_model_open_hf_shard(dir, 1, 0, err);
}

sm_model *sm_model_open_hf_shard(const char *dir, int ep, int index, sm_error *err)
{
    char *path = sm_aprintf("%s/config.json", dir);
    sm_config cfg;
    int rc = path ? sm_config_load_json(&cfg, path, err) : sm_fail(err, "%s: out of memory", dir);
    free(path);
    if (rc) return NULL;
    sm_model *m = sm_model_new_shard(&cfg, 1, ep, index, err);
    if (m && sm_model_load_hf(m, dir, err)) {
        sm_model_free(m);
        return NULL;
    }
    return m;
}

void sm_model_free(sm_model *m)
{
    if (!m) return;
    sm_graph_free(m->g);
    if (m->layers)
        for (int l = 0; l < m->dims.blocks; l++) free(m->layers[l].experts);
    free(m->layers);
    free(m->mtp);
    free(m->all);
    free(m->held_layers);
    free(m);
}

const sm_config *sm_model_config(const sm_model *m) { return &m->cfg; }
int sm_model_nparams(const sm_model *m) { return m->nall; }
const char *sm_model_param_name(const sm_model *m, int i) { return m->all[i].w->name; }

int sm_model_param_shape(const sm_model *m, int i, int64_t *shape)
{
    const sm_tensor *t = m->all[i].w;
    memcpy(shape, t->shape, t->ndim * sizeof *shape);
    return t->ndim;
}

float *sm_model_param_data(sm_model *m, int i) { return m->all[i].w->data; }
int sm_model_param_held(const sm_model *m, int i) { return !m->all[i].w->absent; }

const float *sm_model_param_grad(sm_model *m, int i)
{
    sm_tensor *g = m->all[i].g;
    if (!g) return NULL;
    const float *p = sm_tensor_acquire(g, STARPU_R);
    sm_tensor_release(g);
    return p;
}

size_t sm_model_numel(const sm_model *m)
{
    size_t n = 0;
    for (int i = 0; i < m->nall; i++) n += m->all[i].w->numel;
    return n;
}
