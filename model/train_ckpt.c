/* Checkpoints of a training job: weights under their Hugging Face names, AdamW moments, the
 * tokenizer (from memory), and the counters and data position that make a resumed run continue
 * bit for bit. With the parameters sharded (routed experts over expert parallelism, layers
 * over pipeline ranks), the ranks of the first data-parallel group of each pipeline rank each
 * write their shard into one folder, every tensor once, in three agreed rounds (rank 0
 * begins, every writer writes, rank 0 finishes); any rank resumes from any layout, reading the
 * tensors it holds by name. */
#include "model/trainer.h"

#include <stdio.h>
#include <stdlib.h>
#include "model/model.h"
#include "model/parallel.h"

/* Which held tensors a list takes: all (to load), or this rank's share of a save (rank 0's:
 * all it holds). */
enum { SM_LIST_HELD, SM_LIST_SHARE };

/* Whether parameter i goes into this rank's list: all it holds, or for a save those no lower
 * writer holds (the first pipeline rank holding a layer writes it; of its ranks, the one of
 * expert-parallel index 0 writes what is not a routed expert's). */
static int sm_listed(const sm_trainer *t, int i, int which)
{
    const sm_model *m = t->m;
    const sm_param *p = &m->all[i];
    if (!sm_model_param_held(m, i)) return 0;
    return which == SM_LIST_HELD ||
           ((p->expert >= 0 || t->run->ep_index == 0) &&
            t->run->pp_index == sm_pipeline_first_holder(t->run, p->layer));
}

/* This rank's shard of a save, -1 when it writes none; *nshards: the writers. They are the
 * ranks of the first data-parallel group (one per expert block) of every pipeline rank that
 * holds its own layers, or of pipeline rank 0 when every rank holds every layer: shard =
 * pipeline rank * ep + expert-parallel index. */
static int sm_shard_of(const sm_trainer *t, int *nshards)
{
    const sm_run *r = t->run;
    int ep = t->m->shard_ep, pps = t->m->held_layers ? r->pp_ranks : 1;
    *nshards = pps * ep;
    return r->share < ep && r->pp_index < pps ? r->pp_index * ep + r->share : -1;
}

/* A checkpoint tensor of parameter i's values under `name`. */
static sm_ckpt_tensor sm_param_tensor(sm_trainer *t, int i, const char *name)
{
    sm_ckpt_tensor c = {.name = name, .data = sm_model_param_data(t->m, i)};
    c.ndim = sm_model_param_shape(t->m, i, c.shape);
    return c;
}

/* The model's parameters (or the optimizer's moments) as checkpoint tensors; a save's share
 * also writes the MTP modules' copies of the embedding and the head (model.h sm_mtp_params)
 * where it writes the main tensors, so the checkpoint has every Hugging Face name. */
static sm_ckpt_tensor *sm_weight_list(sm_trainer *t, int optim, int which, int *n)
{
    int all = optim ? sm_optimizer_nstates(t->opt) : sm_model_nparams(t->m);
    int copies = optim || which != SM_LIST_SHARE ? 0 : t->m->dims.D;
    sm_ckpt_tensor *v = calloc(all + 2 * copies + 1, sizeof *v);
    *n = 0;
    for (int i = 0; v && i < all; i++) {
        if (!sm_listed(t, optim ? sm_optimizer_state_param(t->opt, i) : i, which)) continue;
        sm_ckpt_tensor *c = &v[(*n)++];
        int param = optim ? sm_optimizer_state_param(t->opt, i) : i;
        if (optim) {
            c->name = sm_optimizer_state_name(t->opt, i);
            c->data = sm_optimizer_state_data(t->opt, i, c->shape, &c->ndim);
            c->dtype = sm_optimizer_state_dtype(t->opt) == SM_OPTIM_STATE_BF16 ? SM_BF16 : SM_F32;
        } else {
            *c = sm_param_tensor(t, i, sm_model_param_name(t->m, i));
        }
        /* a run that adds MTP modules resumes a checkpoint without them */
        c->optional = sm_param_is_mtp(t->m, &t->m->all[param]);
    }
    for (int k = 0; v && k < copies; k++) {
        const sm_mtp_params *p = &t->m->mtp[k];
        if (sm_listed(t, t->m->embed.index, which))
            v[(*n)++] = sm_param_tensor(t, t->m->embed.index, p->embed_copy);
        if (sm_listed(t, t->m->head.index, which))
            v[(*n)++] = sm_param_tensor(t, t->m->head.index, p->head_copy);
    }
    return v;
}

/* A checkpoint whose moments are stored in another dtype than this run keeps them loads
 * converted (F32 into BF16 rounds to nearest even, BF16 into F32 widens exactly): the lead says
 * so. The moments of a checkpoint share one dtype: the first one present tells (one missing
 * that is not optional is sm_ckpt_load_tensors' error to report). */
static void sm_note_moment_dtype(const sm_trainer *t, const char *ckpt_dir,
                                 const sm_ckpt_tensor *opt, int n)
{
    sm_dtype found;
    sm_error probe = {0};
    int i = 0;
    if (!t->lead) return;
    while (i < n && sm_ckpt_tensor_dtype(ckpt_dir, "optimizer", opt[i].name, &found, &probe))
        if (!opt[i++].optional) return;
    if (i == n || found == opt[i].dtype) return;
    printf("resume: warning: %s keeps the AdamW moments as %s, this run as %s "
           "(train.optimizer_state_dtype): %s\n", ckpt_dir, sm_dtype_name(found),
           sm_dtype_name(opt[i].dtype),
           opt[i].dtype == SM_BF16 ? "rounded to BF16 (nearest even)" : "widened exactly");
}

/* The optimizer's moments from the checkpoint, in the run's dtype. */
static int sm_load_moments(const sm_trainer *t, const char *ckpt_dir, const sm_ckpt_tensor *opt,
                           int n, sm_error *err)
{
    sm_note_moment_dtype(t, ckpt_dir, opt, n);
    return sm_ckpt_load_tensors(ckpt_dir, "optimizer", opt, n, err);
}

static sm_ckpt_state sm_state_of(const sm_trainer *t)
{
    return (sm_ckpt_state){.rng = {(uint64_t)t->rc.train.seed}, .epoch = t->train_rd.epoch,
                           .cursor = t->train_rd.cursor, .tokens = t->tokens,
                           .loss_ema = t->loss_ema, .bad_steps = t->bad_steps,
                           .optim_steps = sm_optimizer_steps(t->opt),
                           .tokenizer_vocab = sm_tokenizer_vocab_size(t->tok)};
}

/* One round of a sharded save: every rank says how its part went. 0 when all went well; -1
 * otherwise, err saying why (this rank's own error, or which rank failed). */
static int sm_save_round(const sm_trainer *t, int rc, const char *part, sm_error *err)
{
    char what[96];
    snprintf(what, sizeof what, "checkpoint step %lld (%s)", (long long)t->step, part);
    int failed = sm_parallel_agree(rc == 0, t->rc.parallel.timeout_s, what, err);
    if (failed == -1 || failed == -2 || failed == sm_engine_rank()) return failed == -1 ? 0 : -1;
    return sm_fail(err, "%s: rank %d failed (its own message says why)", what, failed);
}

/* This rank's share of the save, written as shard `shard` of nshards into tmp. */
static int sm_save_share(sm_trainer *t, const char *tmp, int shard, int nshards, sm_error *err)
{
    int nw, no, rc;
    sm_ckpt_tensor *w = sm_weight_list(t, 0, SM_LIST_SHARE, &nw);
    sm_ckpt_tensor *opt = sm_weight_list(t, 1, SM_LIST_SHARE, &no);
    rc = w && opt ? sm_ckpt_save_shard(tmp, shard, nshards, w, nw, opt, no, err)
                  : sm_fail(err, "out of memory for the checkpoint");
    free(w);
    free(opt);
    return rc;
}

/* A part of the save: its outcome as is on one writer, agreed by every rank when several
 * write (sm_save_round). */
static int sm_save_part(int nshards, const sm_trainer *t, int rc, const char *part,
                        sm_error *err)
{
    return nshards > 1 ? sm_save_round(t, rc, part, err) : rc;
}

int sm_trainer_save(sm_trainer *t, sm_error *err)
{
    int nshards, shard = sm_shard_of(t, &nshards), rank = sm_engine_rank(), lead = rank == 0, rc;
    if (nshards == 1 && !lead) return 0; /* rank 0 writes alone */
    sm_ckpt_state st = sm_state_of(t);
    sm_ckpt_file tok = {"tokenizer.bpe", t->tok_text, t->tok_len};
    char *cfg = lead ? sm_run_config_to_text(&t->rc, err) : NULL;
    char saved[1400], tmp[1400], job[32];
    snprintf(job, sizeof job, "ranks%d", sm_engine_size());
    /* the writers are the ranks of the first data-parallel group: rank j holds shard j */
    rc = lead ? (cfg ? sm_ckpt_save_begin(t->out, t->step, job, tmp, sizeof tmp, err) : -1)
              : sm_ckpt_tmp_path(t->out, t->step, job, tmp, sizeof tmp, err);
    rc = sm_save_part(nshards, t, rc, "begin", err);
    if (rc == 0)
        rc = sm_save_part(nshards, t, shard >= 0 ? sm_save_share(t, tmp, shard, nshards, err) : 0,
                          "shards", err);
    if (rc == 0)
        rc = sm_save_part(nshards, t, lead ? sm_ckpt_save_finish(t->out, tmp, t->step, nshards,
                                                        &t->rc.model, cfg, &st, &tok,
                                                        t->rc.checkpoint.keep, saved,
                                                        sizeof saved, err)
                                  : 0,
                          "finish", err);
    if (rc && lead) sm_ckpt_save_abandon(tmp);
    if (rc == 0 && lead) printf("checkpoint step %lld: %s\n", (long long)t->step, saved);
    free(cfg);
    return rc;
}

int sm_trainer_restore(sm_trainer *t, const char *ckpt_dir, sm_error *err)
{
    int nw, no, rc = -1, absent = 0;
    sm_ckpt_state st;
    sm_ckpt_tensor *w = sm_weight_list(t, 0, SM_LIST_HELD, &nw);
    sm_ckpt_tensor *opt = sm_weight_list(t, 1, SM_LIST_HELD, &no);
    if (!w || !opt) rc = sm_fail(err, "out of memory for the checkpoint");
    else if (sm_ckpt_load_state(ckpt_dir, &st, err) == 0 &&
             sm_resume_check_state(t, &st, ckpt_dir, err) == 0 &&
             (absent = sm_ckpt_load_tensors(ckpt_dir, "model", w, nw, err)) >= 0 &&
             sm_load_moments(t, ckpt_dir, opt, no, err) >= 0) {
        if (absent && t->lead)
            printf("resume: warning: %s has no tensors for %d of the MTP modules' parameters: "
                   "they start freshly initialised, their AdamW moments at 0\n", ckpt_dir,
                   absent);
        t->step = st.step;
        t->tokens = st.tokens;
        t->loss_ema = st.loss_ema;
        t->bad_steps = st.bad_steps;
        sm_optimizer_set_steps(t->opt, st.optim_steps);
        sm_reader_seek(&t->train_rd, st.epoch, st.cursor);
        rc = 0;
    }
    free(w);
    free(opt);
    return rc;
}
