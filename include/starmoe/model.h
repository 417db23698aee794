/* The public C API of starmoe: start the engine, build a DeepSeek-V3 model (from a Hugging
 * Face folder or a config with random weights), run steps as StarPU task graphs, and read
 * logits, routing and gradients. The CLI and the examples use only this. */
#ifndef STARMOE_MODEL_H
#define STARMOE_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <starmoe/config.h>
#include <starmoe/error.h>
#include <starmoe/trace.h>

/* ---- engine ---- */
typedef struct sm_engine_opts {
    int ncpus;                   /* CPU workers (0: StarPU's default) */
    const char *sched;           /* policy name: starmoe's (ordered), a plugin's or a StarPU
                                    built-in (NULL: STARPU_SCHED, else StarPU's default, lws) */
    const char *sched_lib;       /* plugin library of policies to load first (NULL: none);
                                    docs/writing-a-policy.md */
} sm_engine_opts;

/* Starts StarPU with the policy named by o->sched (a set STARPU_SCHED naming another one is
 * refused: it would silently win). */
int sm_engine_init(const sm_engine_opts *o, sm_error *err);
void sm_engine_shutdown(void);
/* The engine's peak in FLOP/s: the best of a few one-thread SGEMM timings (n = 384), taken
 * with the workers paused, times the number of workers (the MFU denominator). */
double sm_engine_peak_flops(void);
/* Name of the scheduling policy actually in force. */
const char *sm_engine_sched_name(void);
/* Prints every policy o->sched accepts, one line each (loads o->sched_lib first). */
int sm_engine_sched_help(const sm_engine_opts *o, sm_error *err);

/* ---- model ---- */
typedef struct sm_model sm_model;

/* A model with zero weights; execute = 0 builds graphs without running them (DAG export). */
sm_model *sm_model_new(const sm_config *cfg, int execute, sm_error *err);
/* Loads every parameter from a Hugging Face folder (config already given to sm_model_new). */
int sm_model_load_hf(sm_model *m, const char *dir, sm_error *err);
/* Opens a Hugging Face folder: reads its config, builds the model and loads the weights. */
sm_model *sm_model_open_hf(const char *dir, sm_error *err);
/* Seeded normal(0, std) matrices, unit norms, zero router bias. */
void sm_model_init_random(sm_model *m, uint64_t seed, double std);
void sm_model_free(sm_model *m);
const sm_config *sm_model_config(const sm_model *m);

/* Parameters in checkpoint order, by Hugging Face name. */
int sm_model_nparams(const sm_model *m);
const char *sm_model_param_name(const sm_model *m, int i);
int sm_model_param_shape(const sm_model *m, int i, int64_t *shape);     /* returns ndim */
float *sm_model_param_data(sm_model *m, int i);
/* Gradient of parameter i after a backward step, NULL when it has none. */
const float *sm_model_param_grad(sm_model *m, int i);
size_t sm_model_numel(const sm_model *m);

/* ---- runs: one step's task graph over B sequences of S tokens ---- */
typedef struct sm_run sm_run;

/* `micro` micro-batches (must divide B) go into one graph, so they overlap; their gradients
 * are summed in micro-batch order. backward = 0 builds the forward (and loss) only. */
sm_run *sm_run_new(sm_model *m, int B, int S, int micro, int backward, sm_error *err);

/* Pipeline parallelism in one process and gradient determinism. */
typedef struct sm_run_opts {
    /* pipeline schedule "gpipe", "1f1b", "zbh1", "dualpipe" or "dualpipev" (NULL: none). The
     * layers are cut into its stages, each pipeline rank gets a lane of the engine's workers,
     * and every rank's tasks start in its program order; the policy in force must be one of
     * the ordered ones (--sched with the same name). Needs a backward run. */
    const char *pipeline;
    int pp;                      /* pipeline ranks (1 with pipeline NULL) */
    /* each micro-batch's weight gradients go to their own copy, summed in micro-batch order at
     * the end of the step: results are bitwise the same whatever the schedule (with or without
     * a pipeline), at the memory cost of one gradient copy per micro-batch */
    int deterministic;
} sm_run_opts;

/* `sched` when it names a pipeline schedule (the ordered policy of that name runs it), else
 * NULL: what the CLI puts in sm_run_opts.pipeline for --sched NAME. */
const char *sm_run_pipeline_of(const char *sched);

/* Writes how the run is cut into pipeline stages, e.g. "1f1b, 2 ranks: stage 0 = embedding +
 * layers 0-1; stage 1 = layers 2-3 + head" (or "no pipeline"); returns snprintf's length. */
int sm_run_pipeline_summary(const sm_run *r, char *buf, size_t n);

/* sm_run_new with options (NULL: the defaults of sm_run_new). */
sm_run *sm_run_new_with(sm_model *m, int B, int S, int micro, int backward,
                        const sm_run_opts *o, sm_error *err);
/* Waits for the run's tasks and releases its tensors; the graph's records of the last step are
 * forgotten (read task counts, flops, traces or the DOT export before). */
void sm_run_free(sm_run *r);

/* Runs one step: ids and targets are [B, S] (targets may be NULL without backward; token ids
 * are checked against the vocabulary). Writes the mean cross-entropy to *loss. */
int sm_run_step(sm_run *r, const int32_t *ids, const int32_t *targets, double *loss,
                sm_error *err);

/* Turns on the sequence-wise balance loss (spec 6.2) with weight alpha for the next steps: it
 * joins the gradient, and sm_run_balance_loss() reports it (summed over MoE layers, mean over
 * the batch's sequences). The loss sm_run_step() writes stays the cross-entropy alone. */
void sm_run_set_balance(sm_run *r, double alpha);
double sm_run_balance_loss(sm_run *r);

/* The same in two halves, so more tasks (the optimizer's) can join the step's graph before
 * waiting: submit checks and uploads the tokens and submits the step's tasks; wait waits for
 * every task and reads the loss. */
int sm_run_submit(sm_run *r, const int32_t *ids, const int32_t *targets, sm_error *err);
void sm_run_wait(sm_run *r, double *loss);

/* Builds one step's graph without executing it (for a model made with execute = 0). */
int sm_run_build(sm_run *r, sm_error *err);
size_t sm_run_ntasks(const sm_run *r);
int sm_run_write_dot(const sm_run *r, const char *path, sm_error *err);
/* Flops of one step as counted by its tasks. */
double sm_run_flops(const sm_run *r);

/* Results of the last step: logits [B, S, V]; routing of MoE layer l: indices and weights
 * [B*S, K]; residual stream after layer l [B, S, d]. */
void sm_run_logits(sm_run *r, float *dst);
int sm_run_routing(sm_run *r, int layer, int32_t *idx, float *w);
void sm_run_hidden(sm_run *r, int layer, float *dst);



/* ---- optimizer: AdamW with global-norm clipping, and the router bias update, as tasks ---- */
typedef struct sm_optimizer sm_optimizer;

typedef struct sm_optim_hp {
    double lr, beta1, beta2, eps, weight_decay;
    double grad_clip;            /* max global gradient norm, 0 = no clipping */
    double bias_update_speed;    /* gamma of the auxiliary-loss-free balancing */
} sm_optim_hp;

/* Moments for every trainable parameter (zero), grouped one task per layer. */
sm_optimizer *sm_optimizer_new(sm_model *m, sm_error *err);
void sm_optimizer_free(sm_optimizer *o);
/* Adds the optimizer tasks to the step r has submitted: gradient norm, clip factor and skip
 * decision (a non-finite loss or norm skips the step: nothing changes), AdamW, bias update
 * from the loads counted by the routers. */
int sm_optimizer_submit(sm_optimizer *o, sm_run *r, const sm_optim_hp *hp, sm_error *err);
/* After sm_run_wait: the global gradient norm and whether the step was applied. */
void sm_optimizer_result(sm_optimizer *o, double *grad_norm, int *applied);
/* Tokens routed to each expert of MoE layer l in the last applied step ([E]), -1 when l is not
 * an MoE layer. */
int sm_optimizer_loads(sm_optimizer *o, int l, float *load);
/* Applied steps so far (AdamW's bias-correction count); settable when resuming. */
int64_t sm_optimizer_steps(const sm_optimizer *o);
void sm_optimizer_set_steps(sm_optimizer *o, int64_t steps);
/* Moment tensors for checkpoints: 2 per trainable parameter, named "<param>.exp_avg" and
 * "<param>.exp_avg_sq", shape of the parameter. */
int sm_optimizer_nstates(const sm_optimizer *o);
const char *sm_optimizer_state_name(const sm_optimizer *o, int i);
float *sm_optimizer_state_data(sm_optimizer *o, int i, int64_t *shape, int *ndim);

/* ---- generation ---- */
typedef struct sm_sample_opts {
    double temperature;          /* 0 = greedy */
    double top_p;                /* nucleus mass, 1 = all */
    uint64_t seed;
    int32_t stop_token;          /* generation ends after it (e.g. end of document), -1 none */
    int32_t start_token;         /* fed when the prompt is empty */
    int min_new;                 /* the stop token is not drawn before this many new tokens */
} sm_sample_opts;

/* Samples up to max_new tokens after the prompt with a causal window of `context` positions;
 * *out (malloc'd) holds the prompt followed by the new tokens, *nout in all. */
int sm_generate_ids(sm_model *m, const int32_t *prompt, int nprompt, int max_new, int context,
                    const sm_sample_opts *so, int32_t **out, int *nout, sm_error *err);
/* One draw from logits [V] (exposed for tests): banned (or -1) is never drawn. */
int sm_sample_token(const float *logits, int V, double temperature, double top_p, int banned,
                    uint64_t *rng);

/* ---- drivers behind the CLI commands ---- */
typedef struct sm_eval_opts {
    const char *model_dir;       /* Hugging Face folder */
    const char *inputs;          /* safetensors with input_ids and targets, I32 [B, S] */
    const char *dump;            /* output safetensors, NULL for none */
    int forward_only;
    int micro;                   /* micro-batches (default 1) */
    const char *dot;             /* write the step's DAG here when not NULL */
    sm_trace_opts trace;         /* execution trace of the step (step 1), trace.path NULL: none */
} sm_eval_opts;

/* Loads the model and inputs, runs forward (and backward), and dumps logits, loss,
 * routing.layers.N.{indices,weights}, hidden.layers.N.output and grad.<HF name>. Inputs without
 * targets (forward only) have no loss: *loss is NaN and the dump has no "loss". */
int sm_eval(const sm_eval_opts *o, double *loss, size_t *ntasks, sm_error *err);
typedef struct sm_bench_opts {
    const sm_config *config;     /* random weights from this config, or */
    const char *model_dir;       /* a Hugging Face folder */
    int B, S, micro;
    int reps, warmup;
    uint64_t seed;
    int train;                   /* the step includes the optimizer (AdamW, clipping, bias) */
    sm_run_opts run;             /* pipeline and determinism of the timed training step */
    sm_trace_opts trace;         /* trace of every timed step (warm-up included), numbered from
                                    1: the forward steps, then the others; path NULL: none */
} sm_bench_opts;

typedef struct sm_bench_stats {
    double median, min, max;     /* seconds */
} sm_bench_stats;

typedef struct sm_bench_result {
    sm_bench_stats fwd, step;    /* forward only; forward + backward (+ optimizer with train) */
    double tokens_per_s;         /* B*S / step median */
    double gflops_per_s;         /* step flops / step median */
    double flops_fwd, flops_step;
    size_t tasks_fwd, tasks_step;
    double submit_s;             /* median time spent submitting a step's tasks */
    double busy_share;           /* median share of worker time spent in kernels */
    double task_overhead_us;     /* runtime cost of one empty task, measured in-process */
    double overhead_share;       /* tasks_step * task_overhead_us / step median */
    double trace_s;              /* median time a step spent writing its trace (0 without) */
    int workers;
    size_t params;
    char pipeline[512];          /* the stage cut (sm_run_pipeline_summary) */
} sm_bench_result;

/* Times `warmup` + `reps` forward and forward+backward steps on seeded random tokens. */
int sm_bench(const sm_bench_opts *o, sm_bench_result *res, sm_error *err);
#endif
