/* `starmoe bench`: median/min/max time of forward and forward+backward steps, tokens/s,
 * GFLOP/s, and the runtime's share of a step (submission time, worker busy share, and the
 * cost of an empty task times the task count); with a trace, its writing time per step. Under
 * mpirun every rank runs its share of the batch (expert parallelism with --ep), and the
 * expert-parallel traffic of rank 0's tokens is reported. */
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "base/clock.h"
#include "model/comm.h"
#include "model/parallel.h"
#include "model/rank_trace.h"
#include "tasks/dense.h"

static int sm_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static sm_bench_stats sm_stats(double *v, int n)
{
    qsort(v, n, sizeof *v, sm_cmp_double);
    double med = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    return (sm_bench_stats){.median = med, .min = v[0], .max = v[n - 1]};
}

static double sm_median(double *v, int n) { return sm_stats(v, n).median; }

/* Share of the workers' time spent executing tasks since the last call (resets counters). */
static double sm_worker_busy(double wall_s)
{
    int nw = (int)starpu_worker_get_count();
    double exec_us = 0;
    for (int w = 0; w < nw; w++) {
        struct starpu_profiling_worker_info info;
        if (starpu_profiling_worker_get_info(w, &info) == 0)
            exec_us += starpu_timing_timespec_to_us(&info.executing_time);
    }
    return nw && wall_s > 0 ? exec_us * 1e-6 / (nw * wall_s) : 0;
}

/* Runtime cost of one task (*us): a chain of empty tasks on one handle, timed end to end. */
static int sm_empty_task_us(sm_model *m, double *us, sm_error *err)
{
    enum { N = 20000 };
    sm_tensor_list owned = {0};
    sm_tensor *t = sm_tensor_new_in(m->g, &owned, "bench.nop", SM_F32, SM_ACT, 1, (int64_t[]){1},
                                    err);
    if (!t) return -1;
    sm_op_ctx c = {.g = m->g, .layer = -1, .micro = -1, .err = err};
    int n = 0;
    sm_graph_step_begin(m->g);
    double t0 = sm_now();
    while (n < N && sm_insert_nop(&c, t) == 0) n++;
    sm_graph_wait(m->g);
    *us = (sm_now() - t0) * 1e6 / N;
    sm_graph_step_begin(m->g);
    sm_tensor_list_drop(m->g, &owned);
    return n == N ? 0 : -1;
}

static void sm_random_tokens(int32_t *v, size_t n, int V, uint64_t *s)
{
    for (size_t i = 0; i < n; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (int32_t)((*s >> 33) % (uint64_t)V);
    }
}

typedef struct sm_timing {
    double *wall, *submit, *busy, *trace;
    sm_tracer *tracer;           /* NULL without a trace */
    int64_t step;                /* steps run so far (the trace's step numbers) */
    double loss_first, loss_last;                /* of the last sm_time_steps */
} sm_timing;

/* The AdamW settings of a training step in the benchmark (typical values; they do not change
 * the cost). */
static const sm_optim_hp sm_bench_hp = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8,
                                        .weight_decay = 0.1, .grad_clip = 1.0,
                                        .bias_update_speed = 1e-3};

static const char *sm_step_kind(const sm_run *r, const sm_optimizer *opt)
{
    return opt ? "train" : r->backward ? "forward+backward" : "forward";
}

/* Runs warmup + reps steps of r (with the optimizer when opt is set); records wall time (the
 * trace's writing included), submission time, busy share and the trace's writing time. */
static int sm_time_steps(sm_run *r, sm_optimizer *opt, const sm_bench_opts *o,
                         const int32_t *ids, const int32_t *tg, sm_timing *tm, sm_error *err)
{
    for (int i = 0; i < o->warmup + o->reps; i++) {
        double loss, t0 = sm_now();
        sm_worker_busy(1);
        sm_tracer_begin(tm->tracer);
        if (sm_run_submit(r, ids, tg, err) ||
            (opt && sm_optimizer_submit(opt, r, &sm_bench_hp, err)) ||
            sm_comm_wait(sm_launch_timeout(&o->launch), "bench step", err))
            return -1;
        sm_run_wait(r, &loss);
        if (opt) sm_optimizer_result(opt, NULL, NULL);
        double t1 = sm_now();
        if (sm_tracer_step(tm->tracer, r->m->g, ++tm->step, sm_step_kind(r, opt), err)) return -1;
        double wall = sm_now() - t0;
        if (!isfinite(loss)) return sm_fail(err, "bench: loss is %g", loss);
        if (i == 0) tm->loss_first = loss;
        tm->loss_last = loss;
        if (i < o->warmup) continue;
        tm->trace[i - o->warmup] = tm->tracer ? t0 + wall - t1 : 0;
        tm->wall[i - o->warmup] = wall;
        tm->busy[i - o->warmup] = sm_worker_busy(wall);
        tm->submit[i - o->warmup] = r->submit_s;
    }
    return 0;
}

/* The trace's metadata: the benchmark's settings and the model config. */
static int sm_bench_trace(const sm_bench_opts *o, const sm_model *m, sm_tracer **t,
                          sm_error *err)
{
    char settings[160];
    if (!o->trace.path) return 0;
    char *text = sm_tracer_config_text(sm_model_config(m));
    if (!text) return sm_fail(err, "%s: out of memory for the trace", o->trace.path);
    snprintf(settings, sizeof settings, "batch %d, seq %d, micro-batches %d, warmup %d, reps %d%s, "
             "pipeline %s x %d%s", o->B, o->S, o->micro, o->warmup, o->reps,
             o->train ? ", train" : "", o->run.pipeline ? o->run.pipeline : "none",
             o->run.pp > 0 ? o->run.pp : 1, o->run.deterministic ? ", deterministic" : "");
    sm_trace_meta meta[] = {{"command", "bench"}, {"settings", settings}, {"config", text}};
    int rc = sm_rank_tracer_open(t, &o->trace, meta, 3, err);
    free(text);
    return rc;
}

/* A run of this rank's share of the batch (all of it on one rank). */
static sm_run *sm_bench_run(sm_model *m, const sm_bench_opts *o, int backward,
                            const sm_run_opts *ro, sm_error *err)
{
    sm_run *r = sm_run_new_with(m, o->B / sm_engine_size(), o->S, o->micro, backward, ro, err);
    if (r && sm_run_set_data_parallel(r, err)) {
        sm_run_free(r);
        return NULL;
    }
    return r;
}

/* Rows of hidden states (and bytes, with the tokens' index and the mixing weights) one token
 * sends over the MoE layers: it and its output gradient once to each other rank holding one of
 * its experts; per (token, remote expert) the output back and the input's gradient back. */
static double sm_ep_rows(const sm_ep_route_count *c, double tokens)
{
    return 2.0 * (c->remote_ranks + c->remote_pairs) / tokens;
}

static double sm_ep_bytes(const sm_ep_route_count *c, double tokens, int d)
{
    return sm_ep_rows(c, tokens) * d * sizeof(float) +
           c->remote_pairs / tokens * (sizeof(int32_t) + sizeof(float));
}

/* The process's peak resident memory (rank 0's) and the largest over the ranks, after the
 * timed steps of every rank. */
static void sm_bench_peak_rss(sm_bench_result *res)
{
    struct rusage u;
    size_t mine = getrusage(RUSAGE_SELF, &u) == 0 ? (size_t)u.ru_maxrss * 1024 : 0; /* KiB */
    int n = sm_engine_size();
    size_t *all = calloc((size_t)n, sizeof *all);
    res->peak_rss_bytes = res->peak_rss_max_bytes = mine;
    if (!all) return; /* then rank 0's alone */
    sm_parallel_gather(&mine, sizeof mine, all);
    for (int r = 0; r < n && sm_engine_rank() == 0; r++)
        if (all[r] > res->peak_rss_max_bytes) res->peak_rss_max_bytes = all[r];
    free(all);
}

/* The expert-parallel traffic of the timed step's tokens (nothing without it). */
static void sm_bench_traffic(sm_run *r, sm_bench_result *res)
{
    sm_ep_traffic t;
    if (r->ep == 1) return;
    sm_ep_traffic_of(r, &t);
    if (t.tokens == 0) return;
    int nlayers = 0, d = r->m->dims.d;
    for (int l = 0; l < r->m->dims.L; l++) nlayers += r->m->layers[l].moe;
    double per_layer = t.tokens / nlayers; /* tokens of one layer */
    res->ep_rows_per_token = sm_ep_rows(&t.routed, per_layer);
    res->ep_bytes_per_token = sm_ep_bytes(&t.routed, per_layer, d);
    res->ep_bytes_unlimited = sm_ep_bytes(&t.unlimited, per_layer, d);
    res->ep_ranks_per_token = t.routed.ranks / t.tokens;
    res->ep_ranks_max = t.routed.ranks_max;
    res->ep_ranks_unlimited = t.unlimited.ranks / t.tokens;
    res->ep_ranks_unlimited_max = t.unlimited.ranks_max;
}

/* The model, or under expert parallelism this rank's block of its routed experts (a layout
 * that does not split them gets the whole model, and the launch check's error). */
static sm_model *sm_bench_model(const sm_bench_opts *o, sm_error *err)
{
    int ep = o->launch.ep > 1 ? o->launch.ep : 1, at = sm_engine_rank() % ep;
    if (o->model_dir) return sm_model_open_hf_shard(o->model_dir, ep, at, err);
    if (o->config->n_routed_experts % ep) ep = 1, at = 0;
    sm_model *m = sm_model_new_shard(o->config, 1, ep, at, err);
    if (m) sm_model_init_random(m, o->seed, o->config->initializer_range);
    return m;
}

int sm_bench(const sm_bench_opts *o, sm_bench_result *res, sm_error *err)
{
    if (o->reps < 1 || o->warmup < 0) return sm_fail(err, "bench: --reps must be >= 1");
    sm_model *m = sm_bench_model(o, err);
    if (!m) return -1;
    sm_launch l = o->launch;
    l.n_routed_experts = m->cfg.n_routed_experts;
    l.batch = o->B;
    l.batch_field = "--batch";
    if (sm_engine_check_launch(&l, err)) {
        sm_model_free(m);
        return -1;
    }
    size_t n = (size_t)o->B * o->S;
    int32_t *ids = malloc(n * sizeof *ids), *tg = malloc(n * sizeof *tg);
    double *buf = calloc(4 * (size_t)o->reps, sizeof *buf);
    sm_timing tm = {buf, buf + o->reps, buf + 2 * o->reps, buf + 3 * o->reps, NULL, 0, 0, 0};
    uint64_t s = o->seed;
    int rc = -1;
    sm_run *fwd = NULL, *step = NULL;
    sm_optimizer *opt = NULL;
    memset(res, 0, sizeof *res);
    if (!ids || !tg || !buf) {
        sm_fail(err, "out of memory");
        goto out;
    }
    sm_random_tokens(ids, n, m->cfg.vocab_size, &s);
    sm_random_tokens(tg, n, m->cfg.vocab_size, &s);
    /* the forward-only run is freed before the training run is built, so the peak memory is
     * the training step's own */
    sm_run_opts fro = {.ep = l.ep, .fp8 = o->run.fp8}, ro = o->run;
    ro.ep = l.ep;
    ro.grad_over_logits = 1; /* nothing reads the logits */
    size_t first = (size_t)sm_engine_rank() * (o->B / sm_engine_size()) * o->S;
    if (!(fwd = sm_bench_run(m, o, 0, &fro, err)) || sm_bench_trace(o, m, &tm.tracer, err) ||
        sm_time_steps(fwd, NULL, o, ids + first, tg + first, &tm, err))
        goto out;
    res->fwd = sm_stats(tm.wall, o->reps);
    res->tasks_fwd = sm_run_ntasks(fwd);
    res->flops_fwd = sm_run_flops(fwd);
    sm_run_free(fwd);
    fwd = NULL;
    if (!(step = sm_bench_run(m, o, 1, &ro, err)) ||
        (o->train && !(opt = sm_optimizer_new_with(m, &o->optim, err))))
        goto out;
    sm_run_set_balance(step, o->train ? 1e-4 : 0.0);
    if (sm_time_steps(step, opt, o, ids + first, tg + first, &tm, err)) goto out;
    sm_bench_traffic(step, res);
    sm_bench_peak_rss(res);
    res->step = sm_stats(tm.wall, o->reps);
    res->loss_first = tm.loss_first;
    res->loss_last = tm.loss_last;
    res->tasks_step = sm_run_ntasks(step);
    res->flops_step = sm_run_flops(step);
    res->submit_s = sm_median(tm.submit, o->reps);
    res->busy_share = sm_median(tm.busy, o->reps);
    res->trace_s = sm_median(tm.trace, o->reps);
    res->tokens_per_s = n / res->step.median;
    res->gflops_per_s = res->flops_step * sm_run_ranks(step) / res->step.median * 1e-9;
    res->workers = (int)starpu_worker_get_count();
    res->params = sm_model_numel(m);
    sm_run_pipeline_summary(step, res->pipeline, sizeof res->pipeline);
    if (sm_empty_task_us(m, &res->task_overhead_us, err)) goto out;
    res->overhead_share = res->tasks_step * res->task_overhead_us * 1e-6 / res->step.median;
    rc = 0;
out:
    if (sm_rank_tracer_close(tm.tracer, rc != 0, rc ? NULL : err)) rc = -1;
    /* after a wait gave up on a peer, releasing the runs would wait for their tasks forever */
    if (!sm_comm_abandoned()) {
        sm_run_free(fwd);
        sm_run_free(step);
        sm_optimizer_free(opt);
        sm_model_free(m);
    }
    free(ids);
    free(tg);
    free(buf);
    return rc;
}
