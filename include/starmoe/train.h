/* Training from the public API: one call runs a whole training job described by a run config
 * (model, optimizer, data, evaluation, checkpoints, engine), resumable exactly. */
#ifndef STARMOE_TRAIN_H
#define STARMOE_TRAIN_H

#include <stdint.h>
#include <starmoe/error.h>
#include <starmoe/trace.h>

/* Used when neither --data nor data.path names a corpus: the text of Debian's fortunes and
 * fortunes-zh packages (documents separated by "%" lines). */
#define SM_DEFAULT_CORPUS "/usr/share/games/fortunes"

typedef struct sm_train_opts {
    const char *config;          /* run config JSON; on resume NULL: the checkpoint's, else it
                                    must keep the run's model, train and data settings */
    const char *data;            /* corpus file or folder, NULL: data.path or the default corpus */
    const char *out;             /* run folder: metrics.jsonl, loss.svg, tokenizer, checkpoints;
                                    locked for the job's life (a second job there fails) */
    int64_t steps;               /* stop after this step, -1: train.steps (the schedule's length
                                    is always train.steps) */
    int64_t seed;                /* -1: train.seed */
    int resume;                  /* continue from the newest complete checkpoint in out; a
                                    setting other than the run's in model, train (seed included)
                                    or data is refused, naming the field and both values;
                                    data.path, eval, checkpoint, log and engine take this job's
                                    values (a line says each) */
    const char *const *overrides; /* "section.key=value" */
    int noverrides;
    sm_trace_opts trace;         /* execution trace (trace.path NULL: none); steps are training
                                    steps, evaluations are traced with the step they follow */
} sm_train_opts;

/* Runs the job; prints one line per logged step and per evaluation to stdout. A job that fails
 * before its first step removes what it created (the run folder when it made it). */
SM_API int sm_train(const sm_train_opts *o, sm_error *err);

/* Learning rate at step s (1-based) of a schedule of `steps` steps: linear warm-up from 0 over
 * `warmup` steps, then cosine decay from lr to min_lr at the last step. */
SM_API double sm_lr_schedule(int64_t s, int64_t steps, int64_t warmup, double lr, double min_lr);

#endif
