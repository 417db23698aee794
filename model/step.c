/* A run: one step of B sequences of S tokens, cut into micro-batches, submitted as one task
 * graph — embedding, blocks, final norm, head and loss per micro-batch, then the backward
 * pass in reverse; results read back for the caller. */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/clock.h"
#include "tasks/dense.h"

/* The config's YaRN settings in *buf, or NULL when YaRN is off. */
static const sm_yarn *sm_config_yarn(const sm_config *c, sm_yarn *buf)
{
    const sm_rope_scaling *s = &c->rope_scaling;
    if (!sm_config_yarn_active(c)) return NULL;
    *buf = (sm_yarn){.factor = s->factor,
                     .original_max_position_embeddings = s->original_max_position_embeddings,
                     .beta_fast = s->beta_fast, .beta_slow = s->beta_slow,
                     .mscale_all_dim = s->mscale_all_dim};
    return buf;
}

int sm_model_rope_tables(const sm_model *m, int S, float *cos_t, float *sin_t, sm_error *err)
{
    sm_yarn buf;
    int dr = m->dims.dr;
    double *theta = malloc((dr / 2) * sizeof *theta);
    if (!theta) return sm_fail(err, "out of memory for the RoPE tables");
    sm_rope_freqs(theta, dr, m->cfg.rope_theta, sm_config_yarn(&m->cfg, &buf));
    sm_rope_table(cos_t, sin_t, theta, S, dr);
    free(theta);
    return 0;
}

float sm_model_softmax_scale(const sm_model *m)
{
    sm_yarn buf;
    return (float)sm_mla_softmax_scale(m->dims.dqk, sm_config_yarn(&m->cfg, &buf));
}

sm_router_dims sm_model_router_dims(const sm_model *m, int T)
{
    const sm_config *c = &m->cfg;
    return (sm_router_dims){.T = T, .d = m->dims.d, .E = m->dims.E, .K = m->dims.K,
                            .G = c->n_group, .Gk = c->topk_group,
                            .route_scale = (float)c->routed_scaling_factor,
                            .norm_topk = c->norm_topk_prob};
}

/* The positions of the layers (k = 0) or of MTP depth k (the first S - k of each sequence),
 * with their attention, router and balance-loss dimensions. */
static sm_block_shape sm_block_shape_at(const sm_run *r, int k)
{
    const sm_dims *x = &r->m->dims;
    int S = r->S - k, T = r->Bm * S;
    return (sm_block_shape){
        .S = S, .T = T,
        .mla = {.B = r->Bm, .S = S, .H = x->H, .dn = x->dn, .dr = x->dr, .dv = x->dv,
                .dc = x->dc, .scale = sm_model_softmax_scale(r->m)},
        .router = sm_model_router_dims(r->m, T), .bal = {.S = S, .coef = 0.0f}};
}

/* RoPE tables (depth k's blocks read their first S - k rows), the blocks' shapes and the
 * losses, derived once from the config. */
static int sm_run_setup(sm_run *r, sm_error *err)
{
    int64_t shape[2] = {r->S, r->m->dims.dr / 2};
    if (!(r->shape = calloc(1 + r->D, sizeof *r->shape)) ||
        (r->D && !(r->loss_mtp = calloc(r->D, sizeof *r->loss_mtp))))
        return sm_fail(err, "out of memory");
    for (int k = 0; k <= r->D; k++) r->shape[k] = sm_block_shape_at(r, k);
    sm_graph *g = r->m->g;
    r->cos_t = sm_tensor_new_in(g, &r->owned, "rope.cos", SM_F32, SM_INPUT, 2, shape, err);
    r->sin_t = sm_tensor_new_in(g, &r->owned, "rope.sin", SM_F32, SM_INPUT, 2, shape, err);
    r->loss = sm_tensor_new_in(g, &r->owned, "loss", SM_F32, SM_ACT, 1, (int64_t[]){1}, err);
    r->bal_total = sm_tensor_new_in(g, &r->owned, "balance_loss", SM_F32, SM_ACT, 1,
                                    (int64_t[]){1}, err);
    if (!r->cos_t || !r->sin_t || !r->loss || !r->bal_total) return -1;
    if (r->D && !(r->loss_main = sm_tensor_new_in(g, &r->owned, "loss_main", SM_F32, SM_ACT, 1,
                                                  (int64_t[]){1}, err)))
        return -1;
    for (int k = 1; k <= r->D; k++) {
        char name[32];
        if (!(r->loss_mtp[k - 1] = sm_tensor_new_in(g, &r->owned,
                                                    sm_mtp_name(name, sizeof name, "loss_mtp", k),
                                                    SM_F32, SM_ACT, 1, (int64_t[]){1}, err)))
            return -1;
    }
    return sm_model_rope_tables(r->m, r->S, r->cos_t->data, r->sin_t->data, err);
}

sm_run *sm_run_new_with(sm_model *m, int B, int S, int micro, int backward,
                        const sm_run_opts *o, sm_error *err)
{
    const sm_config *c = &m->cfg;
    if (B < 1 || S < 1 || micro < 1 || B % micro != 0) {
        sm_fail(err, "batch %d, sequence %d, micro-batches %d: need B, S >= 1 and "
                     "micro-batches dividing the batch", B, S, micro);
        return NULL;
    }
    if (S > c->max_position_embeddings) {
        sm_fail(err, "sequence length %d exceeds max_position_embeddings %d", S,
                c->max_position_embeddings);
        return NULL;
    }
    int ep = o && o->ep > 1 ? o->ep : 1, rank = sm_engine_rank();
    int ppr = o && o->pp_ranks > 1 ? o->pp_ranks : 1, shares = sm_engine_size() / ppr;
    if (sm_engine_size() % ppr || shares % ep || (ppr > 1 && o->pipeline && o->pp != ppr)) {
        sm_fail(err, "pipeline over %d ranks: it needs a multiple of %d ranks (%d launched), "
                     "expert parallelism (ep %d) dividing the %d ranks of each pipeline rank "
                     "and the schedule's pp equal to it (pp %d)", ppr, ppr, sm_engine_size(),
                ep, shares, o ? o->pp : 0);
        return NULL;
    }
    if (sm_engine_size() % ep || c->n_routed_experts % ep) {
        sm_fail(err, "expert parallelism over %d ranks: it needs a multiple of %d ranks (%d "
                     "launched) and %d dividing the %d routed experts", ep, ep,
                sm_engine_size(), ep, c->n_routed_experts);
        return NULL;
    }
    if (m->shard_ep > 1 && (ep != m->shard_ep || rank % ep != m->shard_index)) {
        sm_fail(err, "the model holds expert shard %d of %d, but this run is expert-parallel "
                     "rank %d of %d: build the model with sm_model_new_shard(.., %d, %d, ..)",
                m->shard_index, m->shard_ep, rank % ep, ep, ep, rank % ep);
        return NULL;
    }
    if (m->held_layers && !(o && o->pipeline && ppr > 1)) {
        sm_fail(err, "the model holds one pipeline rank's layers: a run of it needs the "
                     "pipeline schedule over its pipeline ranks (sm_run_opts pipeline, pp_ranks)");
        return NULL;
    }
    if (ep > 1 && o->pipeline && ppr == 1) {
        sm_fail(err, "expert parallelism with the pipeline schedule '%s' inside one process is "
                     "not built: put the pipeline ranks on MPI ranks (parallel.pp), or run "
                     "with parallel.ep 1", o->pipeline);
        return NULL;
    }
    int D = o && o->no_mtp ? 0 : m->dims.D;
    if (D > 0 && S <= D) {
        sm_fail(err, "sequence length %d: the model's %d MTP modules (num_nextn_predict_layers) "
                     "need sequences of more than %d tokens", S, D, D);
        return NULL;
    }
    if (D > 0 && ppr > 1) {
        sm_fail(err, "Multi-Token Prediction (num_nextn_predict_layers %d) with pipeline stages "
                     "on MPI ranks (parallel.pp %d) is not built: train with parallel.pp 1, or "
                     "drop the modules with --set model.num_nextn_predict_layers=0", D, ppr);
        return NULL;
    }
    sm_run *r = calloc(1, sizeof *r);
    if (!r) {
        sm_fail(err, "out of memory");
        return NULL;
    }
    *r = (sm_run){.m = m, .B = B, .S = S, .micro = micro, .Bm = B / micro, .T = B / micro * S,
                  .backward = backward, .split_dx = sm_pipeline_defers_weights(o), .Bg = B,
                  .share_bwd = backward && !(o && o->pipeline),
                  .grad_over_logits = backward && o && o->grad_over_logits, .ep = ep,
                  .ep_index = rank % ep, .ep_first = rank - rank % ep, .pp_ranks = ppr,
                  .pp_index = rank / shares, .share = rank % shares, .shares = shares,
                  .D = D, .mtp_lambda = 0.3f};
    if ((o && o->fp8 && sm_fp8_state_new(r, err)) || sm_run_setup(r, err) ||
        sm_run_alloc(r, err) || sm_pipeline_setup(r, o, err)) {
        sm_run_free(r);
        return NULL;
    }
    return r;
}

sm_run *sm_run_new(sm_model *m, int B, int S, int micro, int backward, sm_error *err)
{
    return sm_run_new_with(m, B, S, micro, backward, NULL, err);
}

void sm_run_free(sm_run *r)
{
    if (!r) return;
    /* the step's records refer to the run's tensors: forget them, then release the tensors */
    sm_dp_free(r->dp);
    sm_graph_step_begin(r->m->g);
    sm_tensor_list_drop(r->m->g, &r->owned);
    sm_pipeline_free(r);
    sm_fp8_state_free(r);
    for (int mb = 0; r->mb && mb < r->micro; mb++) {
        sm_micro_acts *a = &r->mb[mb];
        for (int l = 0; a->layers && l < sm_run_blocks(r); l++) {
            sm_layer_acts *x = &a->layers[l];
            sm_tensor ***lists[] = {&x->xe,      &x->ye,      &x->eh1,    &x->eh3,
                                    &x->dye,     &x->dge,     &x->dxe,    &x->deh1,
                                    &x->deh3,    &x->tok_out, &x->idx_out, &x->tok_in,
                                    &x->idx_in,  &x->grad_out, &x->wt_out, &x->grad_in,
                                    &x->wt_in};
            for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) free(*lists[i]);
        }
        free(a->layers);
        free(a->x);
        free(a->dx);
        free(a->mtp);
    }
    free(r->mb);
    free(r->shape);
    free(r->loss_mtp);
    free(r);
}

/* The gradient of unit u = (source, micro-batch) of the ep * micro units of a group. */
static sm_tensor *sm_grad_of_unit(const sm_run *r, const sm_param *p, int u)
{
    int c = r->copy_of_unit ? r->copy_of_unit[u] : -1;
    return c < 0 ? p->g : r->gcopy[c][p->index];
}

sm_tensor *sm_grad(const sm_run *r, const sm_param *p, int mb)
{
    return sm_grad_of_unit(r, p, r->ep_index * r->micro + mb);
}

sm_tensor *sm_expert_grad(const sm_run *r, const sm_param *p, int src, int mb)
{
    return sm_grad_of_unit(r, p, src * r->micro + mb);
}

int sm_residual_grad_pass(const sm_op_ctx *c, sm_tensor *out, sm_tensor *in)
{
    return out == in ? 0 : sm_insert_copy(c, SM_BACKWARD_INPUT, out, in);
}

int sm_stage_fwd(sm_run *r, const sm_op_ctx *c, const sm_stage_span *sp, int mb)
{
    const sm_dims *x = &r->m->dims;
    sm_micro_acts *a = &r->mb[mb];
    sm_op_ctx ctx = *c;
    int d = x->d;
    ctx.layer = -1;
    if (sp->embed && sm_insert_embedding_fwd(&ctx, a->x[0], a->ids, r->m->embed.w, r->T, d))
        return -1;
    for (int l = sp->first; l < sp->end; l++) {
        ctx.layer = l;
        ctx.part = SM_PART_ATTENTION;  /* the FFN block names its own parts */
        if (sm_attention_block_fwd(r, &ctx, l, mb) || sm_ffn_block_fwd(r, &ctx, l, mb))
            return -1;
    }
    ctx.layer = -1;
    ctx.part = SM_PART_NONE;
    if (!sp->head) return 0;
    if (sm_insert_rmsnorm_fwd(&ctx, a->xf, a->rstd_f, a->x[x->L], d, r->m->final_norm.w, r->T, d,
                              (float)r->m->cfg.rms_norm_eps) ||
        sm_insert_linear_fwd(&ctx, a->logits, a->xf, r->m->head.w, NULL, r->T, d, x->V) ||
        sm_insert_cross_entropy(&ctx, a->loss_part, r->backward ? a->dlogits : NULL, a->logits,
                                a->targets, r->T, x->V, 1.0f / ((float)r->Bg * r->S)))
        return -1;
    for (int k = 1; k <= r->D; k++)
        if (sm_mtp_fwd(r, &ctx, k, mb)) return -1;
    return 0;
}

int sm_stage_bwd(sm_run *r, const sm_op_ctx *c, const sm_stage_span *sp, int mb, int parts)
{
    const sm_dims *x = &r->m->dims;
    sm_micro_acts *a = &r->mb[mb];
    sm_model *m = r->m;
    sm_op_ctx ctx = *c;
    int L = x->L, d = x->d, V = x->V;
    ctx.layer = -1;
    if (sp->head && (parts & SM_BWD_INPUT) &&
        sm_insert_linear_bwd_input(&ctx, a->dxf, a->dlogits, m->head.w, r->T, d, V, 0))
        return -1;
    for (int k = sp->head ? r->D : 0; k >= 1; k--)   /* depth 1 adds into dxf */
        if (sm_mtp_bwd(r, &ctx, k, mb, parts)) return -1;
    ctx.layer = -1;
    if (sp->head && (parts & SM_BWD_INPUT) &&
        sm_insert_rmsnorm_bwd(&ctx, a->dx[2 * L], d, sm_grad(r, &m->final_norm, mb), a->dxf,
                              a->x[L], d, m->final_norm.w, a->rstd_f, r->T, d, 0))
        return -1;
    if (sp->head && (parts & SM_BWD_WEIGHT) &&
        sm_insert_linear_bwd_weight(&ctx, sm_grad(r, &m->head, mb), a->dlogits, a->xf, r->T, d,
                                    V))
        return -1;
    for (int l = sp->end - 1; l >= sp->first; l--) {
        ctx.layer = l;
        ctx.part = SM_PART_ATTENTION;  /* the FFN block names its own parts */
        if (sm_ffn_block_bwd(r, &ctx, l, mb, parts) ||
            sm_attention_block_bwd(r, &ctx, l, mb, parts))
            return -1;
    }
    ctx.layer = -1;
    ctx.part = SM_PART_NONE;
    if (sp->embed && (parts & SM_BWD_WEIGHT) &&
        sm_insert_embedding_bwd(&ctx, sm_grad(r, &m->embed, mb), a->ids, a->dx[0], r->T, d))
        return -1;
    for (int k = 1; sp->embed && (parts & SM_BWD_WEIGHT) && k <= r->D; k++)
        if (sm_mtp_embedding_bwd(r, &ctx, k, mb)) return -1;
    return 0;
}

/* Zeroes every gradient and gradient copy (step-wide, unordered tasks). */
static int sm_zero_grads(sm_run *r, sm_error *err)
{
    sm_model *m = r->m;
    sm_op_ctx step = {.g = m->g, .layer = -1, .micro = -1, .err = err};
    for (int i = 0; i < m->nall; i++) {
        if (!m->all[i].g) continue;
        if (sm_insert_zero(&step, m->all[i].g)) return -1;
        for (int c = 0; c < r->ncopies; c++)
            if (r->gcopy[c][i] && r->gcopy[c][i] != m->all[i].g &&
                sm_insert_zero(&step, r->gcopy[c][i]))
                return -1;
    }
    return 0;
}

int sm_run_ranks(const sm_run *r) { return r->Bg / r->B; }

/* The tensor of the step's loss part k: the main model's (k = 0), MTP depth k's. Without MTP
 * the main loss is the loss. */
static sm_tensor *sm_loss_tensor(const sm_run *r, int k)
{
    return r->D == 0 ? r->loss : k ? r->loss_mtp[k - 1] : r->loss_main;
}

/* The step's loss and balance loss: fixed-order sums of the micro-batches' parts (of every
 * rank's, in the order of one rank's run, under data parallelism). */
static int sm_loss_sums(sm_run *r, sm_error *err)
{
    sm_model *m = r->m;
    sm_op_ctx step = {.g = m->g, .layer = -1, .micro = -1, .err = err};
    int L = sm_run_blocks(r), nbal = 0, n = r->micro * sm_run_ranks(r);
    sm_tensor *parts[n], *bal_parts[n * L + 1], *losses[1 + r->D];
    float scale = 1.0f / ((float)r->Bg * r->S), weights[1 + r->D];
    if (r->dp && sm_dp_share(r->dp, err)) return -1;
    for (int k = 0; k <= r->D; k++) {
        sm_tensor **shared = r->dp ? sm_dp_loss_parts(r->dp, k) : NULL;
        for (int i = 0; i < n; i++)
            parts[i] = shared ? shared[i] : k ? r->mb[i].mtp[k - 1].loss_part : r->mb[i].loss_part;
        losses[k] = sm_loss_tensor(r, k);
        weights[k] = k ? r->mtp_lambda / r->D : 1.0f;
        if (sm_insert_sum_scalars(&step, losses[k], parts, n, scale)) return -1;
    }
    if (r->D && sm_insert_weighted_scalars(&step, r->loss, losses, weights, 1 + r->D)) return -1;
    for (int i = 0; i < n; i++)
        for (int l = 0; l < L; l++)
            if (m->layers[l].moe)
                bal_parts[nbal++] = r->dp && sm_dp_loss_parts(r->dp, 0)
                                        ? sm_dp_layer_bal(r->dp, l)[i]
                                        : r->mb[i].layers[l].bal_loss;
    return nbal ? sm_insert_sum_scalars(&step, r->bal_total, bal_parts, nbal, 1.0f) : 0;
}

/* Every micro-batch's forward, the loss sums, then every micro-batch's backward. */
static int sm_run_build_plain(sm_run *r, sm_error *err)
{
    sm_op_ctx c = {.g = r->m->g, .layer = -1, .micro = -1, .err = err};
    sm_stage_span all = {0, r->m->dims.L, 1, 1};
    for (int mb = 0; mb < r->micro; mb++) {
        c.micro = mb;
        if (sm_stage_fwd(r, &c, &all, mb)) return -1;
    }
    if (sm_loss_sums(r, err)) return -1;
    for (int mb = 0; r->backward && mb < r->micro; mb++) {
        c.micro = mb;
        if (sm_stage_bwd(r, &c, &all, mb, SM_BWD_FULL)) return -1;
    }
    return 0;
}

int sm_run_build(sm_run *r, sm_error *err)
{
    sm_graph_step_begin(r->m->g);
    sm_fp8_step_begin(r);
    r->step_parity ^= 1u;
    if (r->pl && sm_pipeline_begin(r, err)) return -1;
    if (r->backward && sm_zero_grads(r, err)) return -1;
    if (r->pl ? sm_pipeline_build(r, err) || sm_loss_sums(r, err) : sm_run_build_plain(r, err))
        return -1;
    if (r->backward && r->dp && sm_dp_receive_partials(r->dp, err)) return -1;
    if (r->backward && sm_pipeline_reduce(r, err)) return -1;
    return r->dp && r->backward ? sm_dp_sum_grads(r->dp, err) : 0;
}

int sm_run_set_data_parallel(sm_run *r, sm_error *err)
{
    if (sm_engine_size() == 1) return 0;
    r->Bg = r->B * r->shares;
    return (r->dp = sm_dp_new(r, err)) ? 0 : -1;
}

/* Copies one micro-batch's slice of a [B*S] token array after checking every id. */
static int sm_upload_tokens(sm_tensor *t, const int32_t *src, int V, const char *what,
                            int first_row, sm_error *err)
{
    for (size_t i = 0; i < t->numel; i++)
        if (src[i] < 0 || src[i] >= V)
            return sm_fail(err, "%s: token id %d at position %zu is outside the vocabulary "
                                "[0, %d)", what, src[i], first_row * t->numel + i, V);
    int32_t *dst = sm_tensor_acquire(t, STARPU_W);
    memcpy(dst, src, t->numel * sizeof *dst);
    sm_tensor_release(t);
    return 0;
}

int sm_run_submit(sm_run *r, const int32_t *ids, const int32_t *targets, sm_error *err)
{
    return sm_run_submit_mtp(r, ids, targets, NULL, err);
}

int sm_run_submit_mtp(sm_run *r, const int32_t *ids, const int32_t *targets,
                      const int32_t *const *mtp_targets, sm_error *err)
{
    int V = r->m->cfg.vocab_size;
    if (r->backward && !targets) return sm_fail(err, "a backward step needs targets");
    r->has_targets = targets != NULL;
    for (int mb = 0; mb < r->micro; mb++) {
        size_t off = (size_t)mb * r->T;
        if (sm_upload_tokens(r->mb[mb].ids, ids + off, V, "input_ids", mb, err)) return -1;
        if (targets && sm_upload_tokens(r->mb[mb].targets, targets + off, V, "targets", mb, err))
            return -1;
        for (int k = 1; k <= r->D; k++)
            if (sm_mtp_upload(r, k, mb, ids, targets, mtp_targets ? mtp_targets[k - 1] : NULL,
                              err))
                return -1;
    }
    double t0 = sm_now();
    if (sm_run_build(r, err)) return -1;
    r->submit_s = sm_now() - t0;
    return 0;
}

void sm_run_wait(sm_run *r, double *loss)
{
    sm_graph_wait(r->m->g);
    if (loss) {
        float *l = sm_tensor_acquire(r->loss, STARPU_R);
        *loss = r->has_targets ? *l : 0.0;
        sm_tensor_release(r->loss);
    }
}

int sm_run_step(sm_run *r, const int32_t *ids, const int32_t *targets, double *loss,
                sm_error *err)
{
    if (sm_run_submit(r, ids, targets, err)) return -1;
    sm_run_wait(r, loss);
    return 0;
}

void sm_run_set_balance(sm_run *r, double alpha)
{
    for (int k = 0; k <= r->D; k++) r->shape[k].bal.coef = (float)(alpha / r->Bg);
}

void sm_run_set_mtp_lambda(sm_run *r, double lambda) { r->mtp_lambda = (float)lambda; }
int sm_run_mtp_depth(const sm_run *r) { return r->D; }

static double sm_scalar(sm_tensor *t)
{
    const float *v = sm_tensor_acquire(t, STARPU_R);
    double x = *v;
    sm_tensor_release(t);
    return x;
}

double sm_run_loss_part(sm_run *r, int k)
{
    if (!r->has_targets || k < 0 || k > r->D) return NAN;
    return sm_scalar(sm_loss_tensor(r, k));
}

double sm_run_balance_loss(sm_run *r) { return sm_scalar(r->bal_total); }

size_t sm_run_ntasks(const sm_run *r) { return sm_graph_ntasks(r->m->g); }

int sm_run_write_dot(const sm_run *r, const char *path, sm_error *err)
{
    return sm_graph_write_dot(r->m->g, path, err);
}

double sm_run_flops(const sm_run *r)
{
    double f = 0;
    for (size_t i = 0, n = sm_graph_ntasks(r->m->g); i < n; i++)
        f += sm_graph_task(r->m->g, i)->flops;
    return f;
}

/* Concatenates a per-micro-batch tensor (picked by `pick`) into dst, row-major. */
static void sm_gather_micro(sm_run *r, sm_tensor *(*pick)(sm_run *, int, int), int arg,
                            void *dst)
{
    char *out = dst;
    for (int mb = 0; mb < r->micro; mb++) {
        sm_tensor *t = pick(r, mb, arg);
        const void *p = sm_tensor_acquire(t, STARPU_R);
        memcpy(out, p, sm_tensor_bytes(t));
        out += sm_tensor_bytes(t);
        sm_tensor_release(t);
    }
}

static sm_tensor *sm_pick_logits(sm_run *r, int mb, int l) { (void)l; return r->mb[mb].logits; }
static sm_tensor *sm_pick_hidden(sm_run *r, int mb, int l) { return r->mb[mb].x[l + 1]; }
static sm_tensor *sm_pick_w(sm_run *r, int mb, int l) { return r->mb[mb].layers[l].w; }
static sm_tensor *sm_pick_mtp_logits(sm_run *r, int mb, int k)
{
    return r->mb[mb].mtp[k - 1].logits;
}

void sm_run_logits(sm_run *r, float *dst) { sm_gather_micro(r, sm_pick_logits, 0, dst); }

int sm_run_mtp_logits(sm_run *r, int k, float *dst)
{
    if (k < 1 || k > r->D) return -1;
    sm_gather_micro(r, sm_pick_mtp_logits, k, dst);
    return 0;
}
void sm_run_hidden(sm_run *r, int layer, float *dst) { sm_gather_micro(r, sm_pick_hidden, layer, dst); }

int sm_run_routing(sm_run *r, int layer, int32_t *idx, float *w)
{
    if (layer < 0 || layer >= sm_run_blocks(r) || !r->m->layers[layer].moe) return -1;
    const sm_router_dims *rd = &sm_shape_of(r, layer)->router;
    int TK = rd->T * rd->K;
    for (int mb = 0; mb < r->micro; mb++) {
        sm_tensor *plan = r->mb[mb].layers[layer].plan;
        const int32_t *p = sm_tensor_acquire(plan, STARPU_R);
        memcpy(idx + (size_t)mb * TK, p, TK * sizeof *idx);
        sm_tensor_release(plan);
    }
    sm_gather_micro(r, sm_pick_w, layer, w);
    return 0;
}
