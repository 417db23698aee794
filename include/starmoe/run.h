/* Runs: one step's task graph over B sequences of S tokens (forward, loss and backward), with
 * micro-batches, an in-process pipeline and deterministic gradients, and the step's results
 * (loss, logits, routing, hidden states, task counts, flops, the DAG). */
#ifndef STARMOE_RUN_H
#define STARMOE_RUN_H

#include <stddef.h>
#include <stdint.h>
#include <starmoe/error.h>
#include <starmoe/export.h>
#include <starmoe/model.h>

typedef struct sm_run sm_run;

/* `micro` micro-batches (must divide B) go into one graph, so they overlap; their gradients
 * are summed in micro-batch order. backward = 0 builds the forward (and loss) only. */
SM_API sm_run *sm_run_new(sm_model *m, int B, int S, int micro, int backward, sm_error *err);

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
    /* the cross-entropy writes the logits' gradient over the logits: one [B*S, V] buffer less,
     * the same results, but sm_run_logits() then reads that gradient (for runs whose logits
     * are not read: training, bench). Ignored without backward. */
    int grad_over_logits;
    /* expert parallelism (0 or 1: none): under mpirun, the job's ranks in consecutive groups
     * of ep; each rank holds n_routed_experts / ep of the routed experts, runs them on the
     * tokens every rank of its group routes there, and sends its own tokens to the ranks
     * holding their experts (every rank still runs its own sequences through everything
     * else). The number of ranks must be a multiple of ep, and ep must divide the experts. */
    int ep;
    /* pipeline stages on MPI ranks (0 or 1: none): the job's ranks in pp_ranks groups of
     * consecutive ranks, group r running pipeline rank r of `pipeline` (pp must equal it),
     * the ranks of a group on their shares of the batch (expert and data parallelism inside
     * it), stage boundaries sent and received between groups. A run without a backward pass
     * goes forward through the pipeline (every micro-batch along the first direction); one
     * without a pipeline runs the whole model on every rank (the model must hold it all). */
    int pp_ranks;
    /* DualPipe(V)'s overlapped slots run the forward chunk, then the backward chunk, instead of
     * interleaving them by block parts (attention, dispatch, MLP, combine; the default), which
     * lets each chunk's messages travel while the other computes (schedulers/overlap.h). The
     * numbers are the same either way. */
    int fb_serial;
    /* leave the model's Multi-Token Prediction modules out (num_nextn_predict_layers D > 0):
     * the run is the main model alone (validation, generation). By default a run of an MTP
     * model builds its D modules after the head (docs/model.md, MTP). */
    int no_mtp;
    /* FP8 training (docs/fp8.md): the GEMMs of the linear layers DeepSeek-V3 names (MLA
     * projections, dense FFN, shared and routed experts) take E4M3 operands quantised by cast
     * tasks (1x128 tiles for activations and gradients, 128x128 blocks for weights); the
     * embedding, head, router, norms and attention stay float32 */
    int fp8;
} sm_run_opts;

/* `sched` when it names a pipeline schedule (the ordered policy of that name runs it), else
 * NULL: what the CLI puts in sm_run_opts.pipeline for --sched NAME. */
SM_API const char *sm_run_pipeline_of(const char *sched);

/* Writes how the run is cut into pipeline stages, e.g. "1f1b, 2 ranks: stage 0 = embedding +
 * layers 0-1; stage 1 = layers 2-3 + head" (or "no pipeline"); returns snprintf's length. */
SM_API int sm_run_pipeline_summary(const sm_run *r, char *buf, size_t n);

/* sm_run_new with options (NULL: the defaults of sm_run_new). */
SM_API sm_run *sm_run_new_with(sm_model *m, int B, int S, int micro, int backward,
                               const sm_run_opts *o, sm_error *err);
/* Waits for the run's tasks and releases its tensors; the graph's records of the last step are
 * forgotten (read task counts, flops, traces or the DOT export before). */
SM_API void sm_run_free(sm_run *r);

/* Runs one step: ids and targets are [B, S] (targets may be NULL without backward; token ids
 * are checked against the vocabulary). Writes the mean cross-entropy to *loss. */
SM_API int sm_run_step(sm_run *r, const int32_t *ids, const int32_t *targets, double *loss,
                       sm_error *err);

/* Turns on the sequence-wise balance loss (docs/model.md §6.2) with weight alpha for the next steps: it
 * joins the gradient, and sm_run_balance_loss() reports it (summed over MoE layers, mean over
 * the batch's sequences). The loss sm_run_step() writes stays the cross-entropy alone. */
SM_API void sm_run_set_balance(sm_run *r, double alpha);
SM_API double sm_run_balance_loss(sm_run *r);

/* The same in two halves, so more tasks (the optimizer's) can join the step's graph before
 * waiting: submit checks and uploads the tokens and submits the step's tasks; wait waits for
 * every task and reads the loss. */
SM_API int sm_run_submit(sm_run *r, const int32_t *ids, const int32_t *targets, sm_error *err);
SM_API void sm_run_wait(sm_run *r, double *loss);

/* Multi-Token Prediction (a run of a model with num_nextn_predict_layers D > 0): depth k's
 * module predicts the token k + 1 positions ahead from the positions that have the token k
 * ahead (the first S - k of each sequence). The loss a step writes is then
 * loss_main + lambda / D * sum_k loss_mtp_k, each the cross-entropy summed over the positions
 * with a target, divided by the batch's B * S (spec 7.2); lambda is 0.3 until set here. */
SM_API void sm_run_set_mtp_lambda(sm_run *r, double lambda);
/* The MTP depths the run builds (0: none). */
SM_API int sm_run_mtp_depth(const sm_run *r);
/* sm_run_submit with each depth's targets: mtp_targets[k - 1] is [B, S], position i's target
 * for depth k (-1: none; only the first S - k positions are read). NULL: the targets shifted
 * by k (position i's is targets[i + k]). */
SM_API int sm_run_submit_mtp(sm_run *r, const int32_t *ids, const int32_t *targets,
                             const int32_t *const *mtp_targets, sm_error *err);
/* The last step's main loss and depth k's loss_mtp_k (k = 1..D; 0: the main loss) as above;
 * NaN without targets or without that depth. */
SM_API double sm_run_loss_part(sm_run *r, int k);
/* Depth k's logits of the last step: [B, S - k, V]. -1 without that depth. */
SM_API int sm_run_mtp_logits(sm_run *r, int k, float *dst);

/* Builds one step's graph without executing it (for a model made with execute = 0). */
SM_API int sm_run_build(sm_run *r, sm_error *err);
SM_API size_t sm_run_ntasks(const sm_run *r);
SM_API int sm_run_write_dot(const sm_run *r, const char *path, sm_error *err);
/* Flops of one step as counted by its tasks. */
SM_API double sm_run_flops(const sm_run *r);

/* Results of the last step: logits [B, S, V]; routing of MoE layer l: indices and weights
 * [B*S, K] (an MTP depth k's block, layer num_hidden_layers + k - 1: [B*(S-k), K]); residual
 * stream after layer l [B, S, d]. */
SM_API void sm_run_logits(sm_run *r, float *dst);
SM_API int sm_run_routing(sm_run *r, int layer, int32_t *idx, float *w);
SM_API void sm_run_hidden(sm_run *r, int layer, float *dst);

#endif
