/* Internal state of a training job (model/train*.c): the locked run folder, the effective run
 * config, data, model, optimizer, the training and evaluation runs, the tracer, and the
 * counters a checkpoint carries. */
#ifndef STARMOE_TRAINER_H
#define STARMOE_TRAINER_H

#include <starmoe/engine.h>
#include <starmoe/optimizer.h>
#include <starmoe/train.h>
#include "data/dataset.h"
#include "io/checkpoint.h"
#include "io/metrics.h"
#include "io/run_config.h"
#include "io/run_folder.h"
#include "data/tokenizer.h"
#include "trace/recorder.h"

typedef struct sm_trainer {
    sm_run_folder folder;        /* created when missing, locked for the job's life */
    int started;                 /* set up completely: a failure no longer undoes the folder */
    int lead;                    /* rank 0: the one that writes the run folder and prints */
    sm_run_config rc;
    char out[1024];
    char tok_path[1200];         /* where the tokenizer was read from (messages only) */
    sm_tokenizer *tok;
    char *tok_text;              /* its file's bytes, which every checkpoint writes */
    size_t tok_len;
    sm_dataset ds;
    sm_batch_reader train_rd, val_rd;
    int has_val;
    int engine_up;
    sm_model *m;
    sm_optimizer *opt;
    sm_run *run, *eval_run;
    sm_metrics metrics;
    sm_tracer *tracer;           /* NULL without --trace */
    int32_t *ids, *targets;      /* one global batch (each rank runs its share) */
    int64_t step;                /* last completed step */
    int64_t last_step;           /* stop after this one */
    int64_t tokens;
    int bad_steps;
    double peak_flops;           /* measured at start-up, all workers (by the lead rank only) */
    double loss_ema;
} sm_trainer;

/* train_setup.c: fresh or resumed job up to the first step; sm_trainer_close frees all, and
 * when the set-up failed removes what it created in the run folder (the folder itself when it
 * made it). */
int sm_trainer_open(sm_trainer *t, const sm_train_opts *o, sm_error *err);
void sm_trainer_close(sm_trainer *t);

/* train_resume.c: checks the run config this command asks for (t->rc, loaded) against the one
 * of the run being resumed: it may differ only outside model, train and data (each such change
 * is printed); and checks a checkpoint's state against the tokenizer and corpus it resumes
 * with. */
int sm_resume_config(sm_trainer *t, const char *ckpt, sm_error *err);
int sm_resume_check_state(const sm_trainer *t, const sm_ckpt_state *st, const char *ckpt,
                          sm_error *err);

/* train_ckpt.c */
int sm_trainer_save(sm_trainer *t, sm_error *err);
int sm_trainer_restore(sm_trainer *t, const char *ckpt_dir, sm_error *err);

#endif
