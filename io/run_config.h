/* The run config: one JSON file with every hyper-parameter of a training run, in sections
 *   { "model": {Hugging Face DeepSeek-V3 config.json fields}, "train": {...}, "data": {...},
 *     "eval": {...}, "checkpoint": {...}, "log": {...}, "engine": {...}, "parallel": {...} }
 * Only "model" is required; every other key takes the default of sm_run_config_defaults.
 * Strings are fixed char arrays inside the struct (nothing to free); a JSON null string is "".
 * Parsed by the table-driven machinery of io/config_json.c, so unknown keys get a did-you-mean
 * and every error starts with the file (or "--set") and names the key as section.key. */
#ifndef STARMOE_RUN_CONFIG_H
#define STARMOE_RUN_CONFIG_H

#include <stdint.h>
#include <starmoe/config.h>
#include <starmoe/error.h>

typedef struct sm_train_config {
    int steps;                   /* optimizer steps, >= 1 */
    int batch_size;              /* sequences per step, >= 1 */
    int seq_len;                 /* tokens per sequence, in [2, model.max_position_embeddings] */
    int micro_batches;           /* >= 1, divides batch_size */
    double lr, min_lr;           /* peak and final learning rate, 0 <= min_lr <= lr, lr > 0 */
    int warmup_steps;            /* linear warm-up, >= 0 */
    double weight_decay;         /* AdamW, >= 0 */
    double beta1, beta2;         /* in [0, 1) */
    double eps;                  /* > 0 */
    double grad_clip;            /* global norm clip, >= 0 (0 = off) */
    double bias_update_speed;    /* aux-loss-free balancing bias step, >= 0 */
    double balance_alpha;        /* sequence-wise balance loss weight, >= 0 */
    double mtp_lambda;           /* weight of the MTP losses (model.num_nextn_predict_layers
                                  * > 0), >= 0 */
    int max_bad_steps;           /* consecutive non-finite steps tolerated, >= 1 */
    int64_t seed;
    char precision[16];          /* "f32", or "fp8": FP8 GEMMs as DeepSeek-V3 trains
                                    (sm_run_opts.fp8) */
    char optimizer_state_dtype[16]; /* AdamW moments: "auto" (bf16 under precision fp8, else
                                       f32), "f32" or "bf16" (sm_optimizer_opts) */
} sm_train_config;

typedef struct sm_data_config {
    char path[1024];             /* corpus file; "" (null) = none given */
    char doc_separator[64];      /* line that separates documents */
    double val_fraction;         /* in [0, 0.5] */
    int vocab_size;              /* must equal model.vocab_size when there is no tokenizer */
    char tokenizer[1024];        /* tokenizer file; "" (null) = bytes, vocab_size fixed above */
} sm_data_config;

typedef struct sm_eval_config {
    int every;                   /* steps between evaluations, >= 0 (0 = only at the end) */
    int batches;                 /* validation batches per evaluation, >= 1 */
} sm_eval_config;

typedef struct sm_checkpoint_config {
    int every;                   /* steps between checkpoints, >= 0 (0 = only at the end) */
    int keep;                    /* newest checkpoints kept, >= 1 */
} sm_checkpoint_config;

typedef struct sm_log_config {
    int every;                   /* steps between metrics lines, >= 1 */
} sm_log_config;

typedef struct sm_engine_config {
    int workers;                 /* CPU workers, in [1, 64] */
    char sched[32];              /* StarPU scheduling policy, not empty */
    char sched_lib[256];         /* plugin library of policies to load first ("": none) */
    int pp;                      /* pipeline ranks, in [1, workers]; > 1 needs sched naming a
                                    pipeline schedule (gpipe, 1f1b, zbh1, dualpipe, dualpipev),
                                    which the trainer checks (model/train_setup.c) */
    int deterministic;           /* gradients reduced in micro-batch order (sm_run_opts) */
    int fb_interleave;           /* DualPipe's overlapped slots interleave their chunks by block
                                    parts (default; sm_run_opts.fb_serial when off) */
} sm_engine_config;

/* The launch layout under mpirun (model/parallel.c checks it against the ranks launched). */
typedef struct sm_parallel_config {
    int ep;                      /* expert-parallel ranks, in [1, 4096], divides
                                    model.n_routed_experts */
    int dp;                      /* data-parallel ranks, in [1, 4096], splits train.batch_size;
                                    the ranks launched must number pp * ep * dp */
    int pp;                      /* pipeline ranks, in [1, 4096]: each a pipeline rank of
                                    engine.sched's schedule (with ep and dp 1 for now) */
    double timeout_s;            /* how long a rank waits for its peers, > 0 */
} sm_parallel_config;

typedef struct sm_run_config {
    sm_config model;
    sm_train_config train;
    sm_data_config data;
    sm_eval_config eval;
    sm_checkpoint_config checkpoint;
    sm_log_config log;
    sm_engine_config engine;
    sm_parallel_config parallel;
} sm_run_config;

/* The defaults of every section; model gets sm_config_defaults (no required field set):
 * train {steps 600, batch_size 16, seq_len 64, micro_batches 2, lr 3e-3, min_lr 3e-4,
 * warmup_steps 30, weight_decay 0.1, beta1 0.9, beta2 0.95, eps 1e-8, grad_clip 1.0,
 * bias_update_speed 0.001, balance_alpha 0.0001, mtp_lambda 0.3, max_bad_steps 5, seed 1234,
 * precision "f32", optimizer_state_dtype "auto"},
 * data {path null, doc_separator "%", val_fraction 0.02, vocab_size 512, tokenizer null},
 * eval {every 50, batches 8}, checkpoint {every 100, keep 3}, log {every 1},
 * engine {workers 2, sched "lws"}, parallel {ep 1, dp 1, timeout_s 120}. */
void sm_run_config_defaults(sm_run_config *rc);

/* Loads the file at path, applies the overrides "section.key=value" in order, then validates.
 * A value is parsed as JSON when it parses (numbers, true/false/null, "quoted strings",
 * objects such as model.rope_scaling={...}), else taken as a string: "train.lr=1e-3",
 * "data.path=/corpus", "engine.sched=eager". Unknown sections or keys in the file or in an
 * override, wrong types and out-of-range values are errors naming the file (or "--set") and
 * the key. On error rc holds partial values. */
int sm_run_config_load(sm_run_config *rc, const char *path, const char *const *overrides,
                       int noverrides, sm_error *err);
/* The same from JSON text (a run config saved in a checkpoint); `where` names it in messages. */
int sm_run_config_load_text(sm_run_config *rc, const char *text, const char *where,
                            const char *const *overrides, int noverrides, sm_error *err);

/* Checks every range and the rules across keys; `where` starts the messages. */
int sm_run_config_validate(const sm_run_config *rc, const char *where, sm_error *err);

/* The effective config as indented JSON text (all sections, model as HF fields); malloc'd,
 * free() it. NULL with err set when rc does not validate or memory runs out. */
char *sm_run_config_to_text(const sm_run_config *rc, sm_error *err);
/* Writes that text atomically to path (after validating rc). */
int sm_run_config_save(const sm_run_config *rc, const char *path, sm_error *err);

#endif
