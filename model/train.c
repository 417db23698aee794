/* The training loop: per step one task graph (micro-batches, backward, AdamW with clipping,
 * router bias update), a console line and a metrics.jsonl line; evaluation (loss and bits per
 * byte) at step 0 and every eval.every steps; checkpoints every checkpoint.every steps and at
 * the end; non-finite steps skipped, too many in a row stop the run; loss.svg at the end. With
 * a trace, every step graph (training and evaluation) is written as it completes, with marks
 * for evaluations and checkpoints. */
#include "model/trainer.h"
#include "base/clock.h"
#include "model/comm.h"
#include "model/model.h"
#include "model/parallel.h"
#include "model/rank_trace.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* This rank's share of the global batch just read: the run's share-th of the job's equal
 * runs of consecutive sequences (pipeline ranks share theirs), so the ranks together run the
 * batch one rank would. */
static size_t sm_share(const sm_trainer *t)
{
    return (size_t)t->run->share * t->run->B * t->rc.train.seq_len;
}

/* Waits for the submitted step (`kind` "train" or "eval"); under mpirun, fails naming the
 * ranks it waits for when no task finished for parallel.timeout_s. */
static int sm_wait_step(const sm_trainer *t, const char *kind, sm_error *err)
{
    char what[64];
    snprintf(what, sizeof what, "%s step %lld", kind, (long long)t->step + 1);
    return sm_comm_wait(t->rc.parallel.timeout_s, what, err);
}

/* Validation loss over the first eval.batches batches of the validation split. */
static int sm_evaluate(sm_trainer *t, sm_error *err)
{
    const sm_train_config *tr = &t->rc.train;
    double sum = 0, loss;
    int n = t->rc.eval.batches;
    sm_reader_seek(&t->val_rd, 0, 0);
    if (sm_tracer_mark(t->tracer, "evaluation", t->step, err)) return -1;
    for (int i = 0; i < n; i++) {
        sm_reader_next(&t->val_rd, tr->batch_size, t->ids, t->targets);
        sm_tracer_begin(t->tracer);
        if (sm_run_submit(t->eval_run, t->ids + sm_share(t), t->targets + sm_share(t), err) ||
            sm_wait_step(t, "eval", err))
            return -1;
        sm_run_wait(t->eval_run, &loss);
        if (sm_tracer_step(t->tracer, t->eval_run->m->g, t->step, "eval", err)) return -1;
        sum += loss;
    }
    double val = sum / n;
    double bpb = val * ((double)t->ds.nval / (double)t->ds.val_bytes) / log(2.0);
    if (!t->lead) return 0;
    sm_metric kv[] = {{"val_loss", val}, {"val_bpb", bpb}, {"tokens", (double)t->tokens}};
    printf("eval  %6lld | val_loss %.4f | val_bpb %.4f\n", (long long)t->step, val, bpb);
    fflush(stdout);
    return sm_metrics_write(&t->metrics, "eval", t->step, kv, 3, err);
}

/* Largest max/mean expert load over the MoE layers (and MTP blocks) of the last step. */
static double sm_worst_load(sm_trainer *t)
{
    int E = t->rc.model.n_routed_experts;
    int blocks = t->rc.model.num_hidden_layers + t->rc.model.num_nextn_predict_layers;
    float load[E > 0 ? E : 1];
    double worst = 0;
    for (int l = 0; l < blocks; l++) {
        if (sm_optimizer_loads(t->opt, l, load)) continue;
        double mx = 0, sum = 0;
        for (int e = 0; e < E; e++) {
            mx = fmax(mx, load[e]);
            sum += load[e];
        }
        if (sum > 0) worst = fmax(worst, mx / (sum / E));
    }
    return worst;
}

/* The MTP depths reported (more are summed into the loss, not reported one by one). */
#define SM_MTP_REPORTED 4

typedef struct sm_step_report {
    double loss, balance, lr, grad_norm, seconds;
    double loss_main, loss_mtp[SM_MTP_REPORTED];   /* with MTP modules */
    int applied;
} sm_step_report;

static int sm_train_step(sm_trainer *t, sm_step_report *s, sm_error *err)
{
    const sm_train_config *tr = &t->rc.train;
    sm_optim_hp hp = {.lr = s->lr, .beta1 = tr->beta1, .beta2 = tr->beta2, .eps = tr->eps,
                      .weight_decay = tr->weight_decay, .grad_clip = tr->grad_clip,
                      .bias_update_speed = tr->bias_update_speed};
    double t0 = sm_now();
    sm_reader_next(&t->train_rd, tr->batch_size, t->ids, t->targets);
    sm_tracer_begin(t->tracer);
    if (sm_run_submit(t->run, t->ids + sm_share(t), t->targets + sm_share(t), err) ||
        sm_optimizer_submit(t->opt, t->run, &hp, err) || sm_wait_step(t, "train", err))
        return -1;
    sm_run_wait(t->run, &s->loss);
    sm_optimizer_result(t->opt, &s->grad_norm, &s->applied);
    s->balance = sm_run_balance_loss(t->run);
    s->loss_main = sm_run_loss_part(t->run, 0);
    for (int k = 1; k <= sm_run_mtp_depth(t->run) && k <= SM_MTP_REPORTED; k++)
        s->loss_mtp[k - 1] = sm_run_loss_part(t->run, k);
    if (sm_tracer_step(t->tracer, t->run->m->g, t->step + 1, "train", err)) return -1;
    s->seconds = sm_now() - t0;
    return 0;
}

static int sm_report(sm_trainer *t, const sm_step_report *s, double step_flops, sm_error *err)
{
    const sm_train_config *tr = &t->rc.train;
    if (!t->lead || (t->step % t->rc.log.every != 0 && t->step != t->last_step)) return 0;
    double tps = (double)tr->batch_size * tr->seq_len / s->seconds;
    double mfu = step_flops / s->seconds / t->peak_flops, load = sm_worst_load(t);
    int D = sm_run_mtp_depth(t->run), nmtp = D < SM_MTP_REPORTED ? D : SM_MTP_REPORTED;
    char mtp[32 * (SM_MTP_REPORTED + 1)] = "";
    size_t at = 0;
    if (D) at += snprintf(mtp, sizeof mtp, " (main %.4f, mtp", s->loss_main);
    for (int k = 0; k < nmtp; k++)
        at += snprintf(mtp + at, sizeof mtp - at, " %.4f%s", s->loss_mtp[k],
                       k + 1 < nmtp ? "," : ")");
    printf("step %6lld/%d | loss %.4f%s | lr %.2e | gnorm %7.3f | %7.1f ms | %7.0f tok/s | "
           "MFU %4.1f%% | load max/mean %.2f\n", (long long)t->step, tr->steps, s->loss, mtp,
           s->lr, s->grad_norm, s->seconds * 1e3, tps, 100 * mfu, load);
    fflush(stdout);
    char names[SM_MTP_REPORTED][16];
    sm_metric kv[10 + SM_MTP_REPORTED] = {
        {"loss", s->loss}, {"balance_loss", s->balance}, {"lr", s->lr},
        {"grad_norm", s->grad_norm}, {"tokens_per_s", tps}, {"step_ms", s->seconds * 1e3},
        {"mfu", mfu}, {"load_max_over_mean", load}, {"tokens", (double)t->tokens}};
    int n = 9;
    if (D) kv[n++] = (sm_metric){"loss_main", s->loss_main};
    for (int k = 0; k < nmtp; k++) {
        snprintf(names[k], sizeof names[k], k ? "loss_mtp.%d" : "loss_mtp", k + 1);
        kv[n++] = (sm_metric){names[k], s->loss_mtp[k]};
    }
    return sm_metrics_write(&t->metrics, "train", t->step, kv, n, err);
}

/* A skipped step: counts toward max_bad_steps, which stops the run. */
static int sm_bad_step(sm_trainer *t, const sm_step_report *s, sm_error *err)
{
    t->bad_steps++;
    if (t->lead)
        printf("step %6lld: non-finite loss %g or gradient norm %g: step skipped (%d in a "
               "row)\n", (long long)t->step, s->loss, s->grad_norm, t->bad_steps);
    if (t->bad_steps >= t->rc.train.max_bad_steps)
        return sm_fail(err, "%d non-finite steps in a row (last at step %lld, loss %g): "
                            "stopping; lower train.lr or check the data", t->bad_steps,
                       (long long)t->step, s->loss);
    return 0;
}

/* The step's flops per rank: on rank 0 (which divides them by one rank's peak for the MFU) the
 * mean over the job's ranks (pipeline ranks run different stages), gathered there; on the
 * others their own. Every rank calls it once, after a step. */
static double sm_rank_flops(sm_trainer *t)
{
    int n = sm_engine_size();
    double mine = sm_run_flops(t->run), sum = 0, all[n];
    memset(all, 0, sizeof all);
    sm_parallel_gather(&mine, sizeof mine, all);
    for (int i = 0; i < n; i++) sum += all[i];
    return t->lead ? sum / n : mine;
}

static int sm_train_loop(sm_trainer *t, sm_error *err)
{
    const sm_train_config *tr = &t->rc.train;
    const sm_checkpoint_config *ck = &t->rc.checkpoint;
    int every_eval = t->rc.eval.every;
    double step_flops = 0;
    int flops_known = 0;         /* sm_rank_flops is collective: once */
    if (t->step == 0 && t->has_val && sm_evaluate(t, err)) return -1;
    while (t->step < t->last_step) {
        sm_step_report s = {.lr = sm_lr_schedule(t->step + 1, tr->steps, tr->warmup_steps, tr->lr,
                                                 tr->min_lr)};
        if (sm_train_step(t, &s, err)) return -1;
        t->step++;
        if (!flops_known) step_flops = sm_rank_flops(t), flops_known = 1;
        if (!s.applied) {
            if (sm_bad_step(t, &s, err)) return -1;
            continue;
        }
        t->bad_steps = 0;
        t->tokens += (int64_t)tr->batch_size * tr->seq_len;
        t->loss_ema = t->step == 1 ? s.loss : 0.95 * t->loss_ema + 0.05 * s.loss;
        if (sm_report(t, &s, step_flops, err)) return -1;
        int last = t->step == t->last_step;
        if (t->has_val && ((every_eval > 0 && t->step % every_eval == 0) || last) &&
            sm_evaluate(t, err))
            return -1;
        if (((ck->every > 0 && t->step % ck->every == 0) || last) &&
            (sm_tracer_mark(t->tracer, "checkpoint", t->step, err) || sm_trainer_save(t, err)))
            return -1;
    }
    return 0;
}

int sm_train(const sm_train_opts *o, sm_error *err)
{
    sm_trainer t;
    char jsonl[1200], svg[1200];
    int rc = sm_trainer_open(&t, o, err);
    if (rc == 0) rc = sm_train_loop(&t, err);
    if (sm_rank_tracer_close(t.tracer, rc != 0, rc ? NULL : err)) rc = -1;
    t.tracer = NULL;
    if (rc == 0 && o->trace.path && t.lead) {
        char said[1200];
        sm_trace_where(o->trace.path, said, sizeof said);
        printf("trace: %s\n", said);
    }
    sm_error plot_err;
    snprintf(jsonl, sizeof jsonl, "%s/metrics.jsonl", t.out);
    snprintf(svg, sizeof svg, "%s/loss.svg", t.out);
    if (t.started && t.lead) {
        sm_metrics_close(&t.metrics, NULL);
        if (sm_metrics_plot_svg(jsonl, svg, "starmoe training loss", &plot_err) == 0)
            printf("loss curve: %s\n", svg);
    }
    if (rc == 0) sm_parallel_sync();
    sm_trainer_close(&t);
    return rc;
}
