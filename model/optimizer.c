/* The optimizer as tasks: AdamW moments for every trainable parameter, grouped into tasks of
 * about SM_GROUP_VALUES values, the global-norm clip decision (which also skips a
 * step whose loss or gradient is not finite), and the router bias update per MoE layer. */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <starpu_mpi.h>
#include "model/comm.h"
#include "tasks/optim.h"

struct sm_optimizer {
    sm_model *m;
    sm_optim_state_dtype state_dtype;
    int ngroups;
    sm_param_group *groups;      /* n = 0 for the groups of experts held by other ranks */
    int *first_of;               /* per group: its first parameter (checkpoint order) */
    int *layer_of;               /* per group: its decoder layer, -1 outside layers */
    sm_tensor **sumsq;           /* per group */
    sm_tensor *clip;
    sm_tensor **load;            /* per layer, NULL for dense layers */
    sm_tensor **states;          /* m, v interleaved per trainable parameter held */
    int *state_param;            /* per state: its parameter's index */
    int nstates;
    int64_t steps;
    sm_tensor_list owned;        /* every tensor the optimizer created */
};

/* Parameters per optimizer task: consecutive trainable parameters (checkpoint order) up to
 * this many values, so the tasks are even enough to keep every worker busy at the end of the
 * step, whatever the layer sizes. A fixed size: the grouping never depends on the machine. A
 * group never spans two layers (sm_param.layer) nor two routed experts, so that whatever the
 * layout over ranks (expert shards, pipeline stages), each group is held whole by one rank
 * and the sums of squares of the global norm associate as on one rank. */
#define SM_GROUP_VALUES (256 * 1024)

/* Whether parameter i is trained (its gradient may be another rank's: an absent one's). */
static int sm_trained(const sm_model *m, int i) { return m->all[i].trainable; }

/* group_of[i] for every parameter (-1 untrained), and for every group first_of[k] (its first
 * parameter) and layer_of[k] (the layer its tasks are traced under, -1 outside decoder
 * layers); returns the number of groups. */
static int sm_assign_groups(const sm_model *m, int *group_of, int *first_of, int *layer_of)
{
    int G = 0;
    size_t filled = 0;
    for (int i = 0; i < m->nall; i++) {
        group_of[i] = -1;
        if (!sm_trained(m, i)) continue;
        size_t n = m->all[i].w->numel;
        int e = m->all[i].expert, new_layer = i > 0 && m->all[i].layer != m->all[i - 1].layer;
        if (G == 0 || m->all[first_of[G - 1]].expert != e || new_layer ||
            (filled > 0 && filled + n > SM_GROUP_VALUES)) {
            int l = m->all[i].layer;   /* MTP depth k's (L + k): its block's, L + k - 1 */
            layer_of[G] = l >= 0 && l < m->dims.L     ? l
                          : sm_param_is_mtp(m, &m->all[i]) ? l - 1
                                                           : -1;
            first_of[G++] = i;
            filled = 0;
        }
        group_of[i] = G - 1;
        filled += n;
    }
    return G;
}

static int sm_group_alloc(sm_param_group *g, int n)
{
    n = n ? n : 1;               /* a group held by another rank stays empty */
    g->w = calloc(n, sizeof *g->w);
    g->g = calloc(n, sizeof *g->g);
    g->m = calloc(n, sizeof *g->m);
    g->v = calloc(n, sizeof *g->v);
    g->decay = calloc(n, sizeof *g->decay);
    return g->w && g->g && g->m && g->v && g->decay ? 0 : -1;
}

static sm_tensor *sm_state_new(sm_optimizer *o, const sm_param *p, const char *suffix,
                               sm_error *err)
{
    const sm_tensor *w = p->w;
    char name[300];
    snprintf(name, sizeof name, "%s.%s", w->name, suffix);
    sm_dtype dt = o->state_dtype == SM_OPTIM_STATE_BF16 ? SM_BF16 : SM_F32;
    sm_tensor *t = sm_tensor_new_in(o->m->g, &o->owned, name, dt, SM_OPT_STATE, w->ndim,
                                    w->shape, err);
    if (t) {
        o->state_param[o->nstates] = p->index;
        o->states[o->nstates++] = t;
    }
    return t;
}

static int sm_optimizer_groups(sm_optimizer *o, sm_error *err)
{
    sm_model *m = o->m;
    int *group_of = calloc(m->nall ? m->nall : 1, sizeof *group_of);
    o->first_of = calloc(m->nall ? m->nall : 1, sizeof *o->first_of);
    o->layer_of = calloc(m->nall ? m->nall : 1, sizeof *o->layer_of);
    int G = group_of && o->first_of && o->layer_of
                ? sm_assign_groups(m, group_of, o->first_of, o->layer_of)
                : 0;
    int *count = calloc(G ? G : 1, sizeof *count);
    o->ngroups = G;
    o->groups = calloc(G ? G : 1, sizeof *o->groups);
    o->states = calloc(2 * (size_t)m->nall + 1, sizeof *o->states);
    o->state_param = calloc(2 * (size_t)m->nall + 1, sizeof *o->state_param);
    if (!group_of || !o->first_of || !o->layer_of || !count || !o->groups || !o->states ||
        !o->state_param) {
        free(count);
        free(group_of);
        return sm_fail(err, "out of memory for the optimizer");
    }
    for (int i = 0; i < m->nall; i++)
        if (group_of[i] >= 0 && m->all[i].g) count[group_of[i]]++;
    for (int k = 0; k < G; k++)
        if (sm_group_alloc(&o->groups[k], count[k])) {
            free(count);
            free(group_of);
            return sm_fail(err, "out of memory for the optimizer");
        }
    free(count);
    for (int i = 0; i < m->nall; i++) {
        if (!m->all[i].g) continue;
        sm_param_group *g = &o->groups[group_of[i]];
        sm_tensor *w = m->all[i].w;
        g->w[g->n] = w;
        g->g[g->n] = m->all[i].g;
        g->decay[g->n] = w->ndim == 2 ? 1.0f : 0.0f;
        if (!(g->m[g->n] = sm_state_new(o, &m->all[i], "exp_avg", err)) ||
            !(g->v[g->n] = sm_state_new(o, &m->all[i], "exp_avg_sq", err))) {
            free(group_of);
            return -1;
        }
        g->n++;
    }
    free(group_of);
    return 0;
}

static int sm_optimizer_scalars(sm_optimizer *o, sm_error *err)
{
    sm_model *m = o->m;
    int L = m->dims.blocks;
    char name[64];
    o->sumsq = calloc(o->ngroups, sizeof *o->sumsq);
    o->load = calloc(L, sizeof *o->load);
    if (!o->sumsq || !o->load) return sm_fail(err, "out of memory for the optimizer");
    for (int k = 0; k < o->ngroups; k++) {
        snprintf(name, sizeof name, "optim.sumsq.%d", k);
        if (!(o->sumsq[k] = sm_tensor_new_in(m->g, &o->owned, name, SM_F64, SM_OPT_STATE, 1,
                                             (int64_t[]){1}, err)))
            return -1;
    }
    for (int l = 0; l < L; l++) {
        if (!m->layers[l].moe) continue;
        snprintf(name, sizeof name, "optim.load.%d", l);
        int64_t E = m->cfg.n_routed_experts;
        if (!(o->load[l] = sm_tensor_new_in(m->g, &o->owned, name, SM_F32, SM_OPT_STATE, 1, &E,
                                            err)))
            return -1;
    }
    o->clip = sm_tensor_new_in(m->g, &o->owned, "optim.clip", SM_F32, SM_OPT_STATE, 1,
                               (int64_t[]){SM_CLIP_LEN}, err);
    return o->clip ? 0 : -1;
}

sm_optimizer *sm_optimizer_new(sm_model *m, sm_error *err)
{
    return sm_optimizer_new_with(m, NULL, err);
}

sm_optimizer *sm_optimizer_new_with(sm_model *m, const sm_optimizer_opts *opts, sm_error *err)
{
    sm_optimizer_opts defaults = {0};
    if (!opts) opts = &defaults;
    if (opts->state_dtype != SM_OPTIM_STATE_F32 && opts->state_dtype != SM_OPTIM_STATE_BF16) {
        sm_fail(err, "optimizer: state_dtype %d: expected SM_OPTIM_STATE_F32 or "
                     "SM_OPTIM_STATE_BF16", (int)opts->state_dtype);
        return NULL;
    }
    sm_optimizer *o = calloc(1, sizeof *o);
    if (!o) {
        sm_fail(err, "out of memory for the optimizer");
        return NULL;
    }
    o->m = m;
    o->state_dtype = opts->state_dtype;
    if (sm_optimizer_groups(o, err) || sm_optimizer_scalars(o, err)) {
        sm_optimizer_free(o);
        return NULL;
    }
    return o;
}

void sm_optimizer_free(sm_optimizer *o)
{
    if (!o) return;
    sm_graph_step_begin(o->m->g);
    sm_tensor_list_drop(o->m->g, &o->owned);
    for (int k = 0; o->groups && k < o->ngroups; k++) {
        sm_param_group *g = &o->groups[k];
        free(g->w);
        free(g->g);
        free(g->m);
        free(g->v);
        free(g->decay);
    }
    free(o->groups);
    free(o->first_of);
    free(o->layer_of);
    free(o->sumsq);
    free(o->load);
    free(o->states);
    free(o->state_param);
    free(o);
}

/* Message tags of the groups' sums of squares (one per group) and of the expert loads (one
 * per layer). */
enum { SM_SUMSQ_TAG = 0x53510000, SM_LOAD_TAG = 0x4c4f0000 };

/* Tensor t, computed by the ranks holding parameter p, to the ranks that do not hold it (each
 * from the nearest holder, sm_pipeline_source). */
static int sm_share_from_holders(const sm_model *m, const sm_run *r, const sm_param *p,
                                 sm_tensor *t, starpu_mpi_tag_t tag, sm_error *err)
{
    int me = sm_engine_rank(), size = sm_engine_size();
    if (!sm_model_param_held(m, p->index))
        return sm_comm_recv(t->handle, sm_pipeline_source(r, p, me), tag, t->name, err);
    for (int q = 0; q < size; q++)
        if (!sm_pipeline_rank_holds(r, q, p) && sm_pipeline_source(r, p, q) == me &&
            sm_comm_send(t->handle, q, tag, t->name, err))
            return -1;
    return 0;
}

/* The groups a rank does not hold (another rank's routed experts, another pipeline rank's
 * layers) come as sums of squares from a rank holding them, so that every rank's clip
 * decision reads every group's, in group order. */
static int sm_share_sumsq(sm_optimizer *o, const sm_run *r, sm_error *err)
{
    for (int k = 0; sm_engine_size() > 1 && k < o->ngroups; k++)
        if (sm_share_from_holders(o->m, r, &o->m->all[o->first_of[k]], o->sumsq[k],
                                  SM_SUMSQ_TAG + k, err))
            return -1;
    return 0;
}

/* Layer l's router bias update from the step's routing plans (every rank's: the global
 * loads), which also counts the loads. */
static int sm_layer_bias_update(sm_optimizer *o, sm_run *r, const sm_op_ctx *c, int l,
                                const sm_optim_hp *hp)
{
    sm_tensor *own[r->micro], **plans = own;
    const sm_router_dims *rd = &sm_shape_of(r, l)->router;
    int n = r->micro * sm_run_ranks(r);
    for (int mb = 0; mb < r->micro; mb++) own[mb] = r->mb[mb].layers[l].plan;
    if (r->dp && sm_dp_loss_parts(r->dp, 0)) plans = sm_dp_layer_plans(r->dp, l); /* global */
    return sm_insert_bias_update(c, o->m->layers[l].bias.w, o->load[l], plans, n, rd->T, rd->K,
                                 rd->E, (float)hp->bias_update_speed, o->clip);
}

int sm_optimizer_submit(sm_optimizer *o, sm_run *r, const sm_optim_hp *hp, sm_error *err)
{
    sm_model *m = o->m;
    sm_op_ctx c = {.g = m->g, .layer = -1, .micro = -1, .err = err};
    sm_adamw_hp ahp = {.lr = (float)hp->lr, .beta1 = (float)hp->beta1, .beta2 = (float)hp->beta2,
                       .eps = (float)hp->eps, .weight_decay = (float)hp->weight_decay,
                       .step = o->steps + 1};
    if (!r->backward) return sm_fail(err, "the optimizer needs a run with a backward pass");
    for (int k = 0; k < o->ngroups; k++) {
        c.layer = o->layer_of[k];
        if (o->groups[k].n && sm_insert_grad_sumsq(&c, &o->groups[k], o->sumsq[k])) return -1;
    }
    if (sm_share_sumsq(o, r, err)) return -1;
    c.layer = -1;
    if (sm_insert_clip_decide(&c, o->clip, o->sumsq, o->ngroups, r->loss, (float)hp->grad_clip))
        return -1;
    for (int k = 0; k < o->ngroups; k++) {
        c.layer = o->layer_of[k];
        if (o->groups[k].n && sm_insert_adamw(&c, &o->groups[k], o->clip, &ahp)) return -1;
    }
    for (int l = 0; l < sm_run_blocks(r); l++) {
        if (!o->load[l]) continue;
        c.layer = l;
        /* the ranks holding the layer update its bias; the others (another pipeline rank's
         * layer) get its expert loads, for the step's report */
        if ((!m->layers[l].bias.w->absent && sm_layer_bias_update(o, r, &c, l, hp)) ||
            sm_share_from_holders(m, r, &m->layers[l].bias, o->load[l], SM_LOAD_TAG + l, err))
            return -1;
    }
    return 0;
}

void sm_optimizer_result(sm_optimizer *o, double *grad_norm, int *applied)
{
    const float *clip = sm_tensor_acquire(o->clip, STARPU_R);
    int ok = clip[SM_CLIP_APPLY] != 0.0f;
    if (grad_norm) *grad_norm = clip[SM_CLIP_NORM];
    sm_tensor_release(o->clip);
    if (applied) *applied = ok;
    if (ok) o->steps++;
}

int sm_optimizer_loads(sm_optimizer *o, int l, float *load)
{
    if (l < 0 || l >= o->m->dims.blocks || !o->load[l]) return -1;
    const float *p = sm_tensor_acquire(o->load[l], STARPU_R);
    memcpy(load, p, o->load[l]->numel * sizeof *load);
    sm_tensor_release(o->load[l]);
    return 0;
}

int64_t sm_optimizer_steps(const sm_optimizer *o) { return o->steps; }
void sm_optimizer_set_steps(sm_optimizer *o, int64_t steps) { o->steps = steps; }
int sm_optimizer_nstates(const sm_optimizer *o) { return o->nstates; }
sm_optim_state_dtype sm_optimizer_state_dtype(const sm_optimizer *o) { return o->state_dtype; }

const char *sm_optim_state_dtype_name(sm_optim_state_dtype d)
{
    return d == SM_OPTIM_STATE_BF16 ? "bf16" : "f32";
}

int sm_optim_state_dtype_parse(const char *choice, int fp8, sm_optim_state_dtype *d)
{
    if (strcmp(choice, "auto") == 0) *d = fp8 ? SM_OPTIM_STATE_BF16 : SM_OPTIM_STATE_F32;
    else if (strcmp(choice, "f32") == 0) *d = SM_OPTIM_STATE_F32;
    else if (strcmp(choice, "bf16") == 0) *d = SM_OPTIM_STATE_BF16;
    else return -1;
    return 0;
}

int64_t sm_optimizer_state_bytes(const sm_optimizer *o)
{
    int64_t bytes = 0;
    for (int i = 0; i < o->nstates; i++)
        bytes += (int64_t)(o->states[i]->numel * sm_dtype_size(o->states[i]->dtype));
    return bytes;
}
const char *sm_optimizer_state_name(const sm_optimizer *o, int i) { return o->states[i]->name; }
int sm_optimizer_state_param(const sm_optimizer *o, int i) { return o->state_param[i]; }

void *sm_optimizer_state_data(sm_optimizer *o, int i, int64_t *shape, int *ndim)
{
    sm_tensor *t = o->states[i];
    memcpy(shape, t->shape, t->ndim * sizeof *shape);
    *ndim = t->ndim;
    return t->data;
}
