/* Setting up a training job: the run folder (created when missing and locked), the effective
 * run config (fresh, or the one stored in the checkpoint being resumed), the tokenizer (trained
 * on the corpus, loaded, or the checkpoint's copy), the packed dataset and its readers, the
 * engine, model, optimizer and runs, the run folder's files and the tracer. A set-up that fails
 * leaves the run folder as it found it. The launch layout (parallel section) is checked before
 * any work. */
#include "model/trainer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/aprintf.h"
#include "base/file.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/rank_trace.h"
#include "model/comm.h"
#include "model/model.h"

/* engine.pp > 1 needs engine.sched naming one of the model's pipeline schedules. */
static int sm_check_pipeline(const sm_run_config *rc, const char *where, sm_error *err)
{
    if (rc->engine.pp <= 1 || sm_run_pipeline_of(rc->engine.sched)) return 0;
    return sm_fail(err, "%s: field 'engine.pp': %d pipeline ranks need engine.sched naming a "
                   "pipeline schedule (gpipe, 1f1b, zbh1, dualpipe or dualpipev), not '%s'",
                   where, rc->engine.pp, rc->engine.sched);
}

/* The newest complete checkpoint of the run folder; the ones skipped are printed with why. */
static int sm_find_checkpoint(const sm_train_opts *o, char *ckpt, size_t cap, sm_error *err)
{
    int found = sm_ckpt_latest(o->out, ckpt, cap, err);
    if (found > 0) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        return sm_fail(err, "cannot resume: %s", why);
    }
    if (found == 0 && err->msg[0])
        printf("resume: skipped what does not verify: %s; resuming from %s\n", err->msg, ckpt);
    return found;
}

/* The run config this command asks for: --config (or, without it on --resume, the run's own)
 * with --set, --data and --seed; on --resume checked against the run's. */
static int sm_setup_config(sm_trainer *t, const sm_train_opts *o, char *ckpt, size_t cap,
                           sm_error *err)
{
    char probe[1200];
    sm_error ignore;
    ckpt[0] = '\0';
    if (o->resume && sm_find_checkpoint(o, ckpt, cap, err)) return -1;
    if (!o->resume && !o->config) return sm_fail(err, "train: --config FILE is required");
    if (!o->resume && sm_ckpt_latest(o->out, probe, sizeof probe, &ignore) == 0)
        return sm_fail(err, "%s already holds checkpoints (%s): pass --resume, or another --out",
                       o->out, probe);
    if (o->config) {
        if (sm_run_config_load(&t->rc, o->config, o->overrides, o->noverrides, err)) return -1;
    } else {
        char *text = sm_ckpt_load_run_config(ckpt, err);
        int rc = text ? sm_run_config_load_text(&t->rc, text, ckpt, o->overrides, o->noverrides,
                                                err)
                      : -1;
        free(text);
        if (rc) return -1;
    }
    if (sm_check_pipeline(&t->rc, ckpt[0] ? ckpt : o->config, err)) return -1;
    if (o->data && sm_format_path(t->rc.data.path, sizeof t->rc.data.path, err, "%s", o->data))
        return sm_fail(err, "--data: %s", err->msg);
    if (o->seed >= 0) t->rc.train.seed = o->seed;
    if (o->resume && sm_resume_config(t, ckpt, err)) return -1;
    t->last_step = o->steps >= 0 ? o->steps : t->rc.train.steps;
    if (t->last_step > t->rc.train.steps)
        return sm_fail(err, "--steps %lld is beyond the schedule's train.steps %d",
                       (long long)t->last_step, t->rc.train.steps);
    if (sm_format_path(t->out, sizeof t->out, err, "%s", o->out))
        return sm_fail(err, "--out: %s", err->msg);
    return 0;
}

/* The tokenizer: the checkpoint's copy, the configured file, or one trained on the corpus
 * (written to the run folder once the set-up succeeds). */
static int sm_setup_tokenizer(sm_trainer *t, const char *corpus, const char *ckpt, sm_error *err)
{
    const sm_data_config *d = &t->rc.data;
    if (ckpt[0]) {
        sm_ckpt_state st;
        if (sm_ckpt_load_state(ckpt, &st, err)) return -1;
        char *path = sm_ckpt_tokenizer_path(ckpt, &st, err);
        int rc = path ? sm_format_path(t->tok_path, sizeof t->tok_path, err, "%s", path) : -1;
        free(path);
        if (rc) return -1;
    } else if (d->tokenizer[0]) {
        if (sm_format_path(t->tok_path, sizeof t->tok_path, err, "%s", d->tokenizer)) return -1;
    } else {
        t->tok = sm_tokenizer_train_corpus(corpus, d->doc_separator[0] ? d->doc_separator : NULL,
                                           d->vocab_size, NULL, err);
        if (!t->tok ||
            sm_format_path(t->tok_path, sizeof t->tok_path, err, "%s/tokenizer.bpe", t->out))
            return -1;
        return 0;
    }
    return (t->tok = sm_tokenizer_load(t->tok_path, err)) ? 0 : -1;
}

static int sm_setup_data(sm_trainer *t, const char *ckpt, sm_error *err)
{
    const sm_data_config *d = &t->rc.data;
    const sm_train_config *tr = &t->rc.train;
    const char *corpus = d->path[0] ? d->path : SM_DEFAULT_CORPUS;
    size_t skipped = 0;
    if (access(corpus, R_OK) != 0)
        return sm_fail(err, "corpus %s: %s%s", corpus, sm_file_why(errno),
                       d->path[0] ? "" : " (the default corpus: install Debian's fortunes and "
                                         "fortunes-zh packages, or pass --data PATH)");
    if (sm_setup_tokenizer(t, corpus, ckpt, err)) return -1;
    if (sm_tokenizer_vocab_size(t->tok) > t->rc.model.vocab_size)
        return sm_fail(err, "%s: %d tokens, more than model.vocab_size %d", t->tok_path,
                       sm_tokenizer_vocab_size(t->tok), t->rc.model.vocab_size);
    if (sm_dataset_build(&t->ds, t->tok, corpus, d->doc_separator[0] ? d->doc_separator : NULL,
                         d->val_fraction, (uint64_t)tr->seed, &skipped, err))
        return -1;
    if (sm_reader_init(&t->train_rd, t->ds.train, t->ds.ntrain, tr->seq_len, (uint64_t)tr->seed,
                       err))
        return -1;
    if (t->train_rd.nwin < (size_t)tr->batch_size)
        return sm_fail(err, "%s: corpus too small for one batch: %zu sequences of %d tokens, a "
                            "batch needs %d", corpus, t->train_rd.nwin, tr->seq_len,
                       tr->batch_size);
    sm_error none;
    t->has_val = t->ds.nval > (size_t)tr->seq_len &&
                 sm_reader_init(&t->val_rd, t->ds.val, t->ds.nval, tr->seq_len, 0, &none) == 0;
    if (!t->lead) return 0;
    printf("data: %s, %zu documents (%zu files skipped), %zu train + %zu validation tokens, "
           "vocabulary %d (%s)\n", corpus, t->ds.ndocs, skipped, t->ds.ntrain, t->ds.nval,
           sm_tokenizer_vocab_size(t->tok), t->tok_path);
    if (!t->has_val) printf("data: validation split too small for one sequence: no evaluation\n");
    return 0;
}

static int sm_setup_engine(sm_trainer *t, sm_error *err)
{
    const sm_engine_config *ec = &t->rc.engine;
    sm_engine_opts e = {.ncpus = ec->workers, .sched = ec->sched,
                        .sched_lib = ec->sched_lib[0] ? ec->sched_lib : NULL};
    if (t->engine_up) return 0;
    if (sm_engine_init(&e, err)) return -1;
    t->engine_up = 1;
    return 0;
}

/* The launch layout against the ranks launched, agreed by all of them (the engine must be up
 * when there are several). */
static int sm_setup_launch(sm_trainer *t, sm_error *err)
{
    char *cfg = sm_run_config_to_text(&t->rc, err);
    if (!cfg) return -1;
    sm_launch l = {.ep = t->rc.parallel.ep, .dp = t->rc.parallel.dp, .pp = t->rc.parallel.pp,
                   .timeout_s = t->rc.parallel.timeout_s,
                   .n_routed_experts = t->rc.model.n_routed_experts,
                   .batch = t->rc.train.batch_size, .batch_field = "train.batch_size",
                   .identity = cfg};
    int rc = sm_engine_check_launch(&l, err);
    free(cfg);
    return rc;
}

/* The run config and the launch layout: with one rank in the locked run folder; under
 * mpirun with several ranks, the engine (StarPU-MPI) started and the layout agreed by every
 * rank before rank 0 alone opens the run folder (the other ranks only compute, and read the
 * checkpoint they resume from). */
static int sm_setup_launched(sm_trainer *t, const sm_train_opts *o, char *ckpt, size_t cap,
                             sm_error *err)
{
    if (sm_engine_size() == 1)
        return sm_run_folder_open(&t->folder, o->out, err) ||
                       sm_setup_config(t, o, ckpt, cap, err) || sm_setup_launch(t, err)
                   ? -1
                   : 0;
    return sm_setup_config(t, o, ckpt, cap, err) || sm_setup_engine(t, err) ||
                   sm_setup_launch(t, err) ||
                   (t->lead && sm_run_folder_open(&t->folder, o->out, err))
               ? -1
               : 0;
}

/* A run of this rank's share of the global batch (all of it on one rank). */
static sm_run *sm_setup_run(sm_trainer *t, int backward, const sm_run_opts *ro, sm_error *err)
{
    const sm_train_config *tr = &t->rc.train;
    /* pipeline ranks share their sequences */
    int shares = sm_engine_size() / t->rc.parallel.pp;
    sm_run *r = sm_run_new_with(t->m, tr->batch_size / shares, tr->seq_len, tr->micro_batches,
                                backward, ro, err);
    if (r && sm_run_set_data_parallel(r, err)) {
        sm_run_free(r);
        return NULL;
    }
    return r;
}

static int sm_setup_model(sm_trainer *t, sm_error *err)
{
    const sm_train_config *tr = &t->rc.train;
    const sm_engine_config *ec = &t->rc.engine;
    /* nothing in training reads the logits after the loss: their gradient takes their place */
    int ppr = t->rc.parallel.pp;
    sm_run_opts ro = {.pipeline = sm_run_pipeline_of(ec->sched), .pp = ppr > 1 ? ppr : ec->pp,
                      .deterministic = ec->deterministic, .grad_over_logits = 1,
                      .fb_serial = !ec->fb_interleave,
                      .ep = t->rc.parallel.ep, .pp_ranks = ppr,
                      .fp8 = strcmp(tr->precision, "fp8") == 0};
    sm_optimizer_opts oo = {0};
    /* a model sharded by stages evaluates through the pipeline too (forward only) */
    sm_run_opts eval_ro = {.ep = t->rc.parallel.ep, .pp_ranks = ppr,
                           .pipeline = ppr > 1 ? ro.pipeline : NULL, .pp = ppr > 1 ? ppr : 0,
                           .no_mtp = 1,   /* validation measures the main model */
                           .fp8 = ro.fp8};  /* in the precision it trains in */
    if (ppr > 1 && (ec->pp > 1 || !ro.pipeline))
        return sm_fail(err, "parallel.pp %d puts pipeline ranks on MPI ranks: it needs "
                            "engine.sched naming a pipeline schedule (gpipe, 1f1b, zbh1, "
                            "dualpipe or dualpipev; here '%s') and engine.pp 1 (here %d)", ppr,
                       ec->sched, ec->pp);
    int ep = ro.ep > 1 ? ro.ep : 1, L = t->rc.model.num_hidden_layers;
    unsigned char held[L + 2];
    if (sm_optim_state_dtype_parse(tr->optimizer_state_dtype, ro.fp8, &oo.state_dtype))
        return sm_fail(err, "train.optimizer_state_dtype '%s': expected auto, f32 or bf16",
                       tr->optimizer_state_dtype);
    if (sm_setup_engine(t, err)) return -1;
    /* each rank holds its block of the routed experts and, with pipeline ranks on MPI ranks,
     * its stages' layers (the layout was checked before) */
    int rc = ppr > 1 ? sm_pipeline_held_layers(&t->rc.model, ro.pipeline, ppr, tr->micro_batches,
                                               tr->seq_len, sm_engine_rank() / (sm_engine_size() /
                                                                                ppr), held, err)
                     : 0;
    if (!rc && (!(t->m = sm_model_new_stages(&t->rc.model, 1, ep, sm_engine_rank() % ep,
                                            ppr > 1 ? held : NULL, err)) ||
                !(t->opt = sm_optimizer_new_with(t->m, &oo, err))))
        return -1;
    if (!rc) sm_model_init_random(t->m, (uint64_t)tr->seed, t->rc.model.initializer_range);
    t->run = rc ? NULL : sm_setup_run(t, 1, &ro, err);
    if (!t->run && ro.pipeline) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        return sm_fail(err, "engine.sched '%s' with %s %d and train.micro_batches %d: %s",
                       ro.pipeline, ppr > 1 ? "parallel.pp" : "engine.pp", ro.pp,
                       tr->micro_batches, why);
    }
    if (!t->run) return -1;
    if (ro.pipeline && t->lead) {
        char cut[512];
        sm_run_pipeline_summary(t->run, cut, sizeof cut);
        printf("pipeline: %s\n", cut);
    }
    sm_run_set_balance(t->run, tr->balance_alpha);
    sm_run_set_mtp_lambda(t->run, tr->mtp_lambda);
    if (t->has_val &&
        !(t->eval_run = sm_setup_run(t, 0, &eval_ro, err)))
        return -1;
    t->ids = malloc((size_t)tr->batch_size * tr->seq_len * sizeof *t->ids);
    t->targets = malloc((size_t)tr->batch_size * tr->seq_len * sizeof *t->targets);
    if (!t->ids || !t->targets) return sm_fail(err, "out of memory");
    if (!t->lead) return 0; /* only rank 0 reports, so only it measures the peak for MFU */
    t->peak_flops = sm_engine_peak_flops();
    printf("model: %.2f M parameters, %d layers, %d experts top-%d; engine: %d workers, %s, "
           "pp %d%s; peak %.1f GFLOP/s (SGEMM x %d)\n", sm_model_numel(t->m) * 1e-6,
           t->rc.model.num_hidden_layers, t->rc.model.n_routed_experts,
           t->rc.model.num_experts_per_tok, ec->workers, sm_engine_sched_name(), ec->pp,
           ec->deterministic ? ", deterministic" : "", t->peak_flops * 1e-9, ec->workers);
    printf("optimizer: AdamW, moments %s (%.2f MiB), precision %s\n",
           sm_optim_state_dtype_name(sm_optimizer_state_dtype(t->opt)),
           sm_optimizer_state_bytes(t->opt) / 1048576.0, tr->precision);
    return 0;
}

/* The run folder's files: run.json, tokenizer.bpe (the run's tokenizer, whatever its source;
 * its bytes stay in memory for the checkpoints, which so never read another folder) and
 * metrics.jsonl (emptied on a fresh run, cut after the step resumed from). */
static int sm_setup_run_files(sm_trainer *t, int resumed, sm_error *err)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/run.json", t->out);
    if (sm_run_config_save(&t->rc, path, err)) return -1;
    snprintf(path, sizeof path, "%s/tokenizer.bpe", t->out);
    if (sm_tokenizer_save(t->tok, path, err) || !(t->tok_text = sm_read_file(path, &t->tok_len,
                                                                            err)))
        return -1;
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->out);
    if (!resumed) unlink(path);
    return sm_metrics_open(&t->metrics, path, resumed ? t->step : -1, err);
}

/* The trace's metadata: the command, the run folder and the effective run config. */
static int sm_setup_trace(sm_trainer *t, const sm_train_opts *o, sm_error *err)
{
    if (!o->trace.path) return 0;
    char *cfg = sm_run_config_to_text(&t->rc, err);
    if (!cfg) return -1;
    sm_trace_meta meta[] = {{"command", "train"}, {"run_folder", t->out}, {"config", cfg}};
    int rc = sm_rank_tracer_open(&t->tracer, &o->trace, meta, 3, err);
    free(cfg);
    return rc;
}

int sm_trainer_open(sm_trainer *t, const sm_train_opts *o, sm_error *err)
{
    char ckpt[1200];
    memset(t, 0, sizeof *t);
    t->lead = sm_engine_rank() == 0;
    if (sm_setup_launched(t, o, ckpt, sizeof ckpt, err) || sm_setup_data(t, ckpt, err) ||
        sm_setup_model(t, err))
        return -1;
    if (ckpt[0]) {
        if (sm_trainer_restore(t, ckpt, err)) return -1;
        if (t->lead) printf("resumed from %s at step %lld\n", ckpt, (long long)t->step);
    }
    /* every rank traces, each in its own file (model/rank_trace.h) */
    if ((t->lead && sm_setup_run_files(t, ckpt[0] != '\0', err)) || sm_setup_trace(t, o, err))
        return -1;
    t->started = 1;
    return 0;
}

void sm_trainer_close(sm_trainer *t)
{
    sm_rank_tracer_close(t->tracer, 1, NULL);
    sm_metrics_close(&t->metrics, NULL);
    sm_run_folder_close(&t->folder, !t->started);
    /* after a wait gave up on a peer, tasks stay pending forever: releasing their data would
     * wait for them; the process is leaving anyway */
    if (!sm_comm_abandoned()) {
        sm_run_free(t->run);
        sm_run_free(t->eval_run);
        sm_optimizer_free(t->opt);
        sm_model_free(t->m);
    }
    if (t->engine_up) sm_engine_shutdown();
    sm_reader_free(&t->train_rd);
    if (t->has_val) sm_reader_free(&t->val_rd);
    sm_dataset_free(&t->ds);
    sm_tokenizer_free(t->tok);
    free(t->tok_text);
    free(t->ids);
    free(t->targets);
}
