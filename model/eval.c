/* `starmoe eval`: one forward (and backward) step of a Hugging Face model on given tokens,
 * dumped with the names and shapes of the reference fixtures, and traced when asked. Without
 * targets (forward only) there is no loss: it is reported as NaN and not dumped. Under mpirun
 * every rank runs its share of the sequences (with expert parallelism when asked) and rank 0
 * gathers the per-token results and writes the dump. */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "io/safetensors.h"
#include "model/comm.h"
#include "model/parallel.h"
#include "model/rank_trace.h"

typedef struct sm_tokens {
    int B, S;
    int32_t *ids, *targets;
    int32_t **mtp;               /* [D]: each MTP depth's targets; NULL: the targets shifted */
    int D;
} sm_tokens;

/* The inputs' mtp_targets[.K] of each of D depths: all or none. */
static int sm_mtp_targets_load(sm_tokens *tk, sm_st_file *f, const char *path, int D,
                               sm_error *err)
{
    char name[32];
    int64_t shape[2] = {tk->B, tk->S};
    if (!D || !sm_st_find(f, sm_mtp_name(name, sizeof name, "mtp_targets", 1))) return 0;
    if (!(tk->mtp = calloc(D, sizeof *tk->mtp))) return sm_fail(err, "%s: out of memory", path);
    tk->D = D;
    for (int k = 1; k <= D; k++) {
        sm_mtp_name(name, sizeof name, "mtp_targets", k);
        if (!sm_st_find(f, name))
            return sm_fail(err, "%s: has mtp_targets but no '%s' I32 [%d, %d] for MTP depth %d "
                                "(give every depth's, or none)", path, name, tk->B, tk->S, k);
        if (!(tk->mtp[k - 1] = malloc((size_t)tk->B * tk->S * sizeof **tk->mtp)))
            return sm_fail(err, "%s: out of memory", path);
        if (sm_st_read_i32(f, name, 2, shape, tk->mtp[k - 1], err)) return -1;
    }
    return 0;
}

static void sm_tokens_free(sm_tokens *tk)
{
    for (int k = 0; k < tk->D; k++) free(tk->mtp[k]);
    free(tk->mtp);
    free(tk->ids);
    free(tk->targets);
}

static int sm_tokens_load(sm_tokens *tk, const char *path, int need_targets, int D,
                          sm_error *err)
{
    sm_st_file f;
    if (sm_st_open(&f, path, err)) return -1;
    const sm_st_tensor *t = sm_st_find(&f, "input_ids");
    int rc = -1;
    if (!t || t->ndim != 2 || t->shape[0] < 1 || t->shape[1] < 1) {
        sm_fail(err, "%s: needs a tensor 'input_ids' of shape [B, S]", path);
        goto out;
    }
    tk->B = (int)t->shape[0];
    tk->S = (int)t->shape[1];
    tk->ids = malloc((size_t)tk->B * tk->S * sizeof *tk->ids);
    tk->targets = malloc((size_t)tk->B * tk->S * sizeof *tk->targets);
    if (!tk->ids || !tk->targets) {
        sm_fail(err, "%s: out of memory", path);
        goto out;
    }
    if (sm_st_read_i32(&f, "input_ids", 2, t->shape, tk->ids, err)) goto out;
    if (sm_st_find(&f, "targets")) {
        if (sm_st_read_i32(&f, "targets", 2, t->shape, tk->targets, err)) goto out;
    } else if (need_targets) {
        sm_fail(err, "%s: needs a tensor 'targets' [%d, %d] for the loss and the backward", path,
                tk->B, tk->S);
        goto out;
    } else {
        free(tk->targets);
        tk->targets = NULL;
    }
    rc = sm_mtp_targets_load(tk, &f, path, D, err);
out:
    sm_st_close(&f);
    return rc;
}

static int sm_dump_f32(sm_st_writer *w, const char *name, int ndim, const int64_t *shape,
                       const float *data, sm_error *err)
{
    return sm_st_writer_add(w, name, SM_F32, ndim, shape, data, err);
}

/* Per-token results are gathered rank by rank (the order of the inputs' sequences) into the
 * buffers' first part on rank 0, after this rank's own in their last part. */
static int sm_dump_routing(sm_st_writer *w, sm_run *r, int l, int ranks, sm_error *err)
{
    const sm_config *c = sm_model_config(r->m);
    int64_t shape[2] = {(int64_t)r->B * sm_shape_of(r, l)->S * ranks, c->num_experts_per_tok};
    size_t all = (size_t)shape[0] * shape[1], mine = all / ranks;
    int32_t *idx = malloc((all + mine) * sizeof *idx);
    float *wt = malloc((all + mine) * sizeof *wt);
    char name[96];
    int rc = -1;
    if (idx && wt && sm_run_routing(r, l, idx + all, wt + all) == 0) {
        sm_parallel_gather(idx + all, mine * sizeof *idx, idx);
        sm_parallel_gather(wt + all, mine * sizeof *wt, wt);
        snprintf(name, sizeof name, "routing.layers.%d.indices", l);
        rc = sm_st_writer_add(w, name, SM_I32, 2, shape, idx, err);
        snprintf(name, sizeof name, "routing.layers.%d.weights", l);
        rc = rc ? rc : sm_dump_f32(w, name, 2, shape, wt, err);
    } else {
        sm_fail(err, "out of memory for the routing dump");
    }
    free(idx);
    free(wt);
    return rc;
}

/* grad.<copy>: an MTP module's copy of `main`, whose gradient it holds. */
static int sm_dump_copy_grad(sm_st_writer *w, sm_model *m, const char *copy,
                             const sm_param *main, sm_error *err)
{
    char name[128];
    snprintf(name, sizeof name, "grad.%s", copy);
    const float *g = sm_model_param_grad(m, main->index);
    return g ? sm_dump_f32(w, name, main->w->ndim, main->w->shape, g, err) : 0;
}

/* The dump, written by rank 0 (every rank takes part in the gathers). */
static int sm_dump(const sm_eval_opts *o, sm_run *r, double loss, sm_error *err)
{
    const sm_config *c = sm_model_config(r->m);
    int ranks = sm_run_ranks(r), B = r->B * ranks;
    int64_t lshape[3] = {B, r->S, c->vocab_size}, hshape[3] = {B, r->S, c->hidden_size};
    size_t widest = (size_t)(c->vocab_size > c->hidden_size ? c->vocab_size : c->hidden_size);
    size_t tokens = (size_t)r->B * r->S;
    sm_st_writer *w = sm_st_writer_new();
    float *buf = malloc(tokens * widest * (ranks + 1) * sizeof *buf), *mine = buf;
    float lossf = (float)loss;
    char name[320];
    int rc = (!w || !buf) ? sm_fail(err, "out of memory for the dump") : 0;
    if (!rc) {
        buf = mine + tokens * widest;
        sm_run_logits(r, mine);
        sm_parallel_gather(mine, tokens * c->vocab_size * sizeof *mine, buf);
        rc = sm_dump_f32(w, "logits", 3, lshape, buf, err);
    }
    if (!rc && r->has_targets) rc = sm_dump_f32(w, "loss", 1, (int64_t[]){1}, &lossf, err);
    for (int k = 0; !rc && r->has_targets && k <= r->D && r->D; k++) {
        float part = (float)sm_run_loss_part(r, k);
        rc = sm_dump_f32(w, k ? sm_mtp_name(name, sizeof name, "loss_mtp", k) : "loss_main", 1,
                         (int64_t[]){1}, &part, err);
    }
    for (int k = 1; !rc && k <= r->D; k++) {
        int64_t kshape[3] = {B, r->S - k, c->vocab_size};
        sm_run_mtp_logits(r, k, mine);
        sm_parallel_gather(mine, (size_t)r->B * (r->S - k) * c->vocab_size * sizeof *mine, buf);
        rc = sm_dump_f32(w, sm_mtp_name(name, sizeof name, "mtp_logits", k), 3, kshape, buf,
                         err);
    }
    for (int l = 0; !rc && l < sm_run_blocks(r); l++) {
        if (l < c->num_hidden_layers) {
            sm_run_hidden(r, l, mine);
            sm_parallel_gather(mine, tokens * c->hidden_size * sizeof *mine, buf);
            snprintf(name, sizeof name, "hidden.layers.%d.output", l);
            rc = sm_dump_f32(w, name, 3, hshape, buf, err);
        }
        if (!rc && r->m->layers[l].moe) rc = sm_dump_routing(w, r, l, ranks, err);
    }
    for (int i = 0; !rc && !o->forward_only && i < sm_model_nparams(r->m); i++) {
        const float *g = sm_model_param_grad(r->m, i);
        int64_t shape[4];
        int ndim = sm_model_param_shape(r->m, i, shape);
        if (!g) continue;
        snprintf(name, sizeof name, "grad.%s", sm_model_param_name(r->m, i));
        rc = sm_dump_f32(w, name, ndim, shape, g, err);
    }
    for (int k = 1; !rc && !o->forward_only && k <= r->D; k++) /* the copies share gradients */
        rc = sm_dump_copy_grad(w, r->m, r->m->mtp[k - 1].embed_copy, &r->m->embed, err) ||
                     sm_dump_copy_grad(w, r->m, r->m->mtp[k - 1].head_copy, &r->m->head, err)
                 ? -1
                 : 0;
    if (!rc && sm_engine_rank() == 0) rc = sm_st_writer_write(w, o->dump, err);
    sm_st_writer_free(w);
    free(mine);
    return rc;
}

/* The step, traced when asked. */
static int sm_eval_step(const sm_eval_opts *o, sm_run *r, const sm_tokens *tk, double *loss,
                        sm_error *err)
{
    sm_tracer *tr = NULL;
    char *cfg = o->trace.path ? sm_tracer_config_text(sm_model_config(r->m)) : NULL;
    if (o->trace.path && !cfg) return sm_fail(err, "%s: out of memory", o->trace.path);
    sm_trace_meta meta[] = {{"command", "eval"}, {"model", o->model_dir},
                            {"inputs", o->inputs}, {"config", cfg}};
    int rc = sm_rank_tracer_open(&tr, &o->trace, meta, 4, err);
    free(cfg);
    if (rc) return -1;
    sm_tracer_begin(tr);
    rc = sm_run_submit_mtp(r, tk->ids, tk->targets, (const int32_t *const *)tk->mtp, err) ||
         sm_comm_wait(sm_launch_timeout(&o->launch), "eval step", err);
    if (rc == 0) sm_run_wait(r, loss);
    if (rc == 0)
        rc = sm_tracer_step(tr, r->m->g, 1, o->forward_only ? "forward" : "forward+backward", err);
    if (sm_rank_tracer_close(tr, rc != 0, rc ? NULL : err)) rc = -1;
    return rc;
}

int sm_eval(const sm_eval_opts *o, double *loss, size_t *ntasks, sm_error *err)
{
    sm_tokens tk = {0};
    sm_model *m = NULL;
    sm_run *r = NULL;
    int rc = -1;
    if (!(m = sm_model_open_hf(o->model_dir, err)) ||
        sm_tokens_load(&tk, o->inputs, !o->forward_only, m->dims.D, err))
        goto out;
    if (sm_model_mtp_fresh(m) && sm_engine_rank() == 0)
        fprintf(stderr, "starmoe: warning: %s has no MTP tensors: its %d MTP module(s) start "
                        "freshly initialised\n", o->model_dir, m->dims.D);
    sm_launch l = o->launch;
    l.n_routed_experts = m->cfg.n_routed_experts;
    l.batch = tk.B;
    l.batch_field = "the batch of --inputs";
    if (sm_engine_check_launch(&l, err)) goto out;
    sm_run_opts ro = {.deterministic = o->deterministic, .ep = l.ep};
    int B = tk.B / sm_engine_size();
    if (!(r = sm_run_new_with(m, B, tk.S, o->micro > 0 ? o->micro : 1, !o->forward_only, &ro,
                              err)) ||
        sm_run_set_data_parallel(r, err))
        goto out;
    sm_run_set_mtp_lambda(r, o->mtp_lambda > 0 ? o->mtp_lambda : 0.3);
    size_t first = (size_t)sm_engine_rank() * B * tk.S;
    int32_t *mtp[64];            /* num_nextn_predict_layers <= 64 (config_json.c) */
    for (int k = 0; tk.mtp && k < r->D; k++) mtp[k] = tk.mtp[k] + first;
    sm_tokens share = {B, tk.S, tk.ids + first, tk.targets ? tk.targets + first : NULL,
                       tk.mtp ? mtp : NULL, tk.D};
    if (sm_eval_step(o, r, &share, loss, err)) goto out;
    if (!tk.targets) *loss = NAN; /* no targets: no loss */
    for (int k = 0; o->loss_parts && k <= m->dims.D; k++)
        o->loss_parts[k] = k <= r->D ? sm_run_loss_part(r, k) : NAN;
    if (ntasks) *ntasks = sm_run_ntasks(r);
    if (o->dot && sm_run_write_dot(r, o->dot, err)) goto out;
    rc = o->dump ? sm_dump(o, r, *loss, err) : 0;
out:
    /* after a wait gave up on a peer, releasing the run would wait for its tasks forever */
    if (!sm_comm_abandoned()) {
        sm_run_free(r);
        sm_model_free(m);
    }
    sm_tokens_free(&tk);
    return rc;
}
