/* The drivers behind the CLI's running commands, each one call on a started engine: sampling
 * (token ids, or text from a checkpoint), evaluation of a Hugging Face folder on given inputs,
 * and the benchmark of forward and training steps; and the conversion of a folder to another
 * precision (no engine). Training is in train.h. */
#ifndef STARMOE_DRIVERS_H
#define STARMOE_DRIVERS_H

#include <stddef.h>
#include <stdint.h>
#include <starmoe/config.h>
#include <starmoe/engine.h>
#include <starmoe/error.h>
#include <starmoe/export.h>
#include <starmoe/model.h>
#include <starmoe/optimizer.h>
#include <starmoe/run.h>
#include <starmoe/trace.h>

/* ---- generation ---- */
typedef struct sm_sample_opts {
    double temperature;          /* 0 = greedy */
    double top_p;                /* nucleus mass, 1 = all */
    uint64_t seed;
    int32_t stop_token;          /* generation ends after it (e.g. end of document), -1 none */
    int32_t start_token;         /* fed when the prompt is empty */
    int min_new;                 /* the stop token is not drawn before this many new tokens */
    /* 0 (default): a prefill step over the prompt fills MLA's latent cache, then one decode
     * step per new token runs that token alone over the cache; the prompt and the new tokens
     * must fit in max_position_embeddings. 1: every new token re-runs a forward pass over the
     * whole window of `context` positions, which slides once the sequence is longer. */
    int no_cache;
    /* 1: speculative decoding with the model's Multi-Token Prediction modules (it must have
     * some; the cache is used): at each step depth k drafts the token k + 1 ahead, and one
     * main-model step over the last token and the drafts verifies them all, keeping each draft
     * by speculative sampling's rule (temperature 0: when it is the main model's greedy
     * choice), so the text is the one plain decoding would draw: token for token at
     * temperature 0, and from the same distribution otherwise. */
    int speculative;
} sm_sample_opts;

/* What a generation held and how fast it went. The latent cache keeps per position and layer
 * cache_floats = kv_lora_rank + qk_rope_head_dim floats (the normalised KV latent and the
 * rotated rope key), where caching every head's keys and values would keep full_kv_floats =
 * heads * (qk_nope + qk_rope + v head dims); the byte counts are over all layers (float32). */
typedef struct sm_generate_stats {
    int cached;                  /* the latent cache was used (not no_cache) */
    int cache_floats, full_kv_floats, layers;
    size_t cache_bytes_per_token, full_kv_bytes_per_token;
    int prompt_tokens;           /* positions of the prompt (1: the start token for none) */
    int new_tokens;              /* tokens sampled */
    /* the first forward pass (the prefill with the cache), and the ones after it: decode_steps
     * passes of one new token each, sampling included */
    double prefill_s, decode_s;
    int decode_steps;
    /* speculative decoding: the main-model steps that verified drafts, and per MTP depth k
     * (index k - 1; depths past SM_SPEC_DEPTHS are not counted) the drafts the main model
     * checked (those of the depths before it were kept) and kept */
    int verify_steps, depths;
#define SM_SPEC_DEPTHS 8
    int drafts_checked[SM_SPEC_DEPTHS], drafts_kept[SM_SPEC_DEPTHS];
} sm_generate_stats;

/* Samples up to max_new (>= 1) tokens after the prompt (see sm_sample_opts.no_cache; context
 * is the window without the cache); *out (malloc'd) holds the prompt followed by the new
 * tokens, *nout in all; *stats (when not NULL) what it took. */
SM_API int sm_generate_ids(sm_model *m, const int32_t *prompt, int nprompt, int max_new,
                           int context, const sm_sample_opts *so, int32_t **out, int *nout,
                           sm_generate_stats *stats, sm_error *err);
/* One draw from logits [V] (exposed for tests): banned (or -1) is never drawn. */
SM_API int sm_sample_token(const float *logits, int V, double temperature, double top_p,
                           int banned, uint64_t *rng);
/* What sm_generate_text made, and from where (free with sm_generated_free). */
typedef struct sm_generated {
    char *text;                  /* the prompt and the sample, NUL-terminated */
    size_t len;                  /* bytes of text */
    char *ckpt;                  /* the checkpoint folder used */
    /* for a run folder: the newer checkpoints skipped because they do not verify, and why;
     * NULL when none was */
    char *skipped;
    sm_generate_stats stats;     /* the cache and the speed of the generation */
} sm_generated;

/* Samples up to max_new tokens of text after the prompt from a checkpoint (a step-* folder,
 * used only when it verifies, or a run folder: its newest complete checkpoint) with the
 * checkpoint's own tokenizer (with so->no_cache, in a window of its run config's
 * train.seq_len); the stop and start tokens are the tokenizer's end of text (those of so are
 * ignored). The text is cut to whole UTF-8 characters. */
SM_API int sm_generate_text(const char *ckpt, const char *prompt, int max_new,
                            const sm_sample_opts *so, sm_generated *out, sm_error *err);
SM_API void sm_generated_free(sm_generated *g);

/* ---- evaluation ---- */
typedef struct sm_eval_opts {
    const char *model_dir;       /* Hugging Face folder */
    const char *inputs;          /* safetensors with input_ids and targets, I32 [B, S] */
    const char *dump;            /* output safetensors, NULL for none */
    int forward_only;
    int micro;                   /* micro-batches (default 1) */
    int deterministic;           /* per-micro-batch gradient copies (sm_run_opts) */
    const char *dot;             /* write the step's DAG here when not NULL */
    sm_trace_opts trace;         /* execution trace of the step (step 1), trace.path NULL: none */
    sm_launch launch;            /* ep, dp, timeout_s and identity (the model's routed experts
                                    and the inputs' batch are filled in) */
    double mtp_lambda;           /* weight of the MTP losses (models with MTP modules); 0: the
                                    default 0.3 */
    double *loss_parts;          /* when not NULL, receives the main loss and each MTP depth's
                                    (1 + num_nextn_predict_layers values; NaN without targets) */
} sm_eval_opts;

/* Loads the model and inputs, runs forward (and backward), and dumps logits, loss,
 * routing.layers.N.{indices,weights}, hidden.layers.N.output and grad.<HF name>. Inputs without
 * targets (forward only) have no loss: *loss is NaN and the dump has no "loss". Under mpirun
 * (launch.ep x launch.dp ranks) each rank runs its share of the sequences and rank 0 writes
 * the dump of them all, as one rank would.
 * A model with Multi-Token Prediction modules (D = num_nextn_predict_layers) reads the inputs'
 * optional mtp_targets (depth k > 1: mtp_targets.K; I32 [B, S], -1: no target; absent: the
 * targets shifted by k) and also dumps each depth's logits mtp_logits[.K] [B, S - k, V],
 * loss_main, loss_mtp[.K], the MTP blocks' routing (layer num_hidden_layers + k - 1) and the
 * gradients of the modules' copies of the embedding and the head (each the shared tensor's);
 * *loss and "loss" are the total loss_main + lambda / D * sum of loss_mtp. */
SM_API int sm_eval(const sm_eval_opts *o, double *loss, size_t *ntasks, sm_error *err);

/* ---- conversion ---- */
/* Converts the Hugging Face folder model_dir (config.json + model.safetensors, or shards with
 * model.safetensors.index.json) into out_dir, with `to`:
 * - "fp8": as DeepSeek-V3 is released: the linear weights (MLA's q_a/q_b/q/kv_a/kv_b/o
 *   projections, the gate/up/down projections of dense FFNs and of shared and routed experts)
 *   become F8_E4M3 in 128x128 blocks (sm_fp8_quantize_blocks) with their F32
 *   `<name>_scale_inv` [ceil(rows/128), ceil(cols/128)]; weights already FP8 in 128x128 blocks
 *   are copied as they are; everything else (embeddings, head, norms, router, bias) is kept;
 *   config.json gains quantization_config {fp8, e4m3, dynamic, [128, 128]}.
 * - "bf16" or "f32": every float tensor in that type, FP8 weights dequantised with their
 *   scales, the scales and quantization_config dropped, torch_dtype set.
 * The shard files keep their names (with an index when model_dir has one); config.json (edited)
 * and tokenizer files are copied. out_dir must not exist or be empty; it appears only when
 * complete. Errors (an FP8 weight without its scale, a scale of the wrong shape or not finite,
 * a non-empty out_dir) name the file and the tensor. Needs no engine. */
SM_API int sm_convert(const char *model_dir, const char *to, const char *out_dir, sm_error *err);

/* ---- benchmark ---- */
typedef struct sm_bench_opts {
    const sm_config *config;     /* random weights from this config, or */
    const char *model_dir;       /* a Hugging Face folder */
    int B, S, micro;
    int reps, warmup;
    uint64_t seed;
    int train;                   /* the step includes the optimizer (AdamW, clipping, bias) */
    sm_optimizer_opts optim;     /* with train: the optimizer's (its moments' dtype) */
    sm_run_opts run;             /* pipeline, determinism and FP8 (run.fp8, the forward steps'
                                    too) of the timed steps */
    sm_trace_opts trace;         /* trace of every timed step (warm-up included), numbered from
                                    1: the forward steps, then the others; path NULL: none */
    sm_launch launch;            /* ep, dp, timeout_s and identity (the model's routed experts
                                    and B are filled in) */
} sm_bench_opts;

typedef struct sm_bench_stats {
    double median, min, max;     /* seconds */
} sm_bench_stats;

typedef struct sm_bench_result {
    sm_bench_stats fwd, step;    /* forward only; forward + backward (+ optimizer with train) */
    double tokens_per_s;         /* B*S / step median */
    double gflops_per_s;         /* step flops (of every rank) / step median */
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
    /* the cross-entropy of the first forward+backward (or train) step and of the last one: the
     * seeded weights and tokens make them the same whatever the build, policy or worker count,
     * so they show a change did not alter the numerics (with train, the last includes every
     * optimizer step before it) */
    double loss_first, loss_last;
    /* expert parallelism (zeros without it), for rank 0's tokens of the timed step, per token
     * over all MoE layers: rows of hidden states sent (a token and its output gradient once to
     * each other rank holding one of its experts; per token and remote expert its output back
     * and its input gradient back) and their bytes (with the index and mixing weights), and the
     * bytes of a top-k without the routing's group limit on the same scores; per token and MoE
     * layer: the expert-parallel ranks its experts sit on (mean, max), with and without it */
    double ep_rows_per_token, ep_bytes_per_token, ep_bytes_unlimited;
    double ep_ranks_per_token, ep_ranks_unlimited;
    int ep_ranks_max, ep_ranks_unlimited_max;
    /* the process's peak resident memory (getrusage's ru_maxrss) once the timed steps are
     * done: rank 0's, and the largest over the ranks (the same on one rank) */
    size_t peak_rss_bytes, peak_rss_max_bytes;
} sm_bench_result;

/* Times `warmup` + `reps` forward and forward+backward steps on seeded random tokens. */
SM_API int sm_bench(const sm_bench_opts *o, sm_bench_result *res, sm_error *err);

#endif
