/* starmoe bench: forward and forward+backward step times, tokens/s and GFLOP/s. */
#include "cli/cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *sm_bench_usage =
    "(--config FILE.json | --model DIR) --batch B --seq T [--micro M] [--reps N] [--warmup N]\n"
    "       [--seed S] [--train] [--format text|json] [--workers N] [--sched NAME] [--sched-lib FILE]\n"
    "       [--precision f32|fp8] [--optimizer-state-dtype auto|f32|bf16]\n"
    "       " SM_CLI_RUN_USAGE " " SM_CLI_PARALLEL_USAGE " " SM_CLI_TRACE_USAGE;

/* --precision and --optimizer-state-dtype (auto: BF16 moments under fp8, as train's
 * train.optimizer_state_dtype) */
enum { OPT_PRECISION = 0x400, OPT_STATE_DTYPE };

/* o->run.fp8 from --precision and o->optim from --optimizer-state-dtype; 2 on a bad value. */
static int sm_bench_precision(sm_bench_opts *o, const char *precision, const char *state_dtype)
{
    if (strcmp(precision, "f32") && strcmp(precision, "fp8")) {
        fprintf(stderr, "starmoe bench: --precision '%s': expected f32 or fp8\n", precision);
        return 2;
    }
    o->run.fp8 = strcmp(precision, "fp8") == 0;
    if (sm_optim_state_dtype_parse(state_dtype, o->run.fp8, &o->optim.state_dtype)) {
        fprintf(stderr, "starmoe bench: --optimizer-state-dtype '%s': expected auto, f32 or "
                        "bf16\n", state_dtype);
        return 2;
    }
    return 0;
}

static void sm_print_json(const sm_bench_opts *o, const sm_bench_result *r)
{
    json_t *j = json_pack(
        "{s:b,s:i,s:i,s:i,s:i,s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:I,s:I,s:f,s:f,s:f,s:f,"
        "s:f,s:s,s:f,s:i,s:s?,s:b,s:s,s:f,s:f}",
        "train", o->train, "batch", o->B, "seq", o->S, "micro_batches", o->micro, "workers", r->workers,
        "params", (json_int_t)r->params, "tokens_per_s", r->tokens_per_s,
        "step_s_median", r->step.median, "step_s_min", r->step.min, "step_s_max", r->step.max,
        "fwd_s_median", r->fwd.median, "fwd_s_min", r->fwd.min, "fwd_s_max", r->fwd.max,
        "gflops_per_s", r->gflops_per_s, "gflop_step", r->flops_step * 1e-9,
        "tasks_step", (json_int_t)r->tasks_step, "tasks_fwd", (json_int_t)r->tasks_fwd,
        "submit_s_median", r->submit_s, "worker_busy_share", r->busy_share,
        "task_overhead_us", r->task_overhead_us, "overhead_share", r->overhead_share,
        "fwd_tokens_per_s", o->B * o->S / r->fwd.median, "scheduler", sm_engine_sched_name(),
        "trace_s_median", r->trace_s, "pp", o->run.pp > 0 ? o->run.pp : 1, "pipeline",
        o->run.pipeline, "deterministic", o->run.deterministic, "stages", r->pipeline,
        "loss_first", r->loss_first, "loss_last", r->loss_last);
    json_object_set_new(j, "ranks", json_integer(sm_engine_size()));
    json_object_set_new(j, "ep", json_integer(o->launch.ep > 0 ? o->launch.ep : 1));
    json_object_set_new(j, "dp", json_integer(o->launch.dp > 0 ? o->launch.dp : 1));
    json_object_set_new(j, "ep_rows_per_token", json_real(r->ep_rows_per_token));
    json_object_set_new(j, "ep_bytes_per_token", json_real(r->ep_bytes_per_token));
    json_object_set_new(j, "ep_bytes_unlimited", json_real(r->ep_bytes_unlimited));
    json_object_set_new(j, "ep_ranks_per_token", json_real(r->ep_ranks_per_token));
    json_object_set_new(j, "ep_ranks_max", json_integer(r->ep_ranks_max));
    json_object_set_new(j, "ep_ranks_unlimited", json_real(r->ep_ranks_unlimited));
    json_object_set_new(j, "ep_ranks_unlimited_max", json_integer(r->ep_ranks_unlimited_max));
    json_object_set_new(j, "peak_rss_bytes", json_integer((json_int_t)r->peak_rss_bytes));
    json_object_set_new(j, "peak_rss_max_bytes", json_integer((json_int_t)r->peak_rss_max_bytes));
    char *s = json_dumps(j, JSON_COMPACT);
    puts(s);
    free(s);
    json_decref(j);
}

static void sm_print_text(const sm_bench_opts *o, const sm_bench_result *r)
{
    printf("model %.2f M params, batch %d x seq %d, %d micro-batches, %d workers, sched %s, "
           "pp %d%s", r->params * 1e-6, o->B, o->S, o->micro, r->workers,
           sm_engine_sched_name(), o->run.pp > 0 ? o->run.pp : 1,
           o->run.deterministic ? ", deterministic" : "");
    if (sm_engine_size() > 1)
        printf(", %d ranks (ep %d x dp %d; figures of rank 0, micro-batches per rank)",
               sm_engine_size(), o->launch.ep > 0 ? o->launch.ep : 1,
               o->launch.dp > 0 ? o->launch.dp : 1);
    printf("\n");
    if (o->run.pipeline) printf("pipeline       %s\n", r->pipeline);
    printf("forward        median %8.2f ms  min %8.2f  max %8.2f  (%zu tasks)\n",
           r->fwd.median * 1e3, r->fwd.min * 1e3, r->fwd.max * 1e3, r->tasks_fwd);
    printf("%-14s median %8.2f ms  min %8.2f  max %8.2f  (%zu tasks, %.2f GFLOP)\n",
           o->train ? "train step" : "forward+back", r->step.median * 1e3, r->step.min * 1e3,
           r->step.max * 1e3, r->tasks_step, r->flops_step * 1e-9);
    printf("throughput     %.0f tokens/s  %.2f GFLOP/s\n", r->tokens_per_s, r->gflops_per_s);
    printf("loss           first step %.8f, last %.8f\n", r->loss_first, r->loss_last);
    printf("runtime        submit %.2f ms/step, workers busy %.1f%%, empty task %.2f us -> "
           "overhead %.2f%% of a step\n",
           r->submit_s * 1e3, 100 * r->busy_share, r->task_overhead_us, 100 * r->overhead_share);
    printf("memory         peak resident %.1f MiB", r->peak_rss_bytes / 1048576.0);
    if (sm_engine_size() > 1)
        printf(" (rank 0; the largest of the %d ranks %.1f MiB)", sm_engine_size(),
               r->peak_rss_max_bytes / 1048576.0);
    printf("\n");
    if (r->ep_rows_per_token > 0)
        printf("expert-par.    %.2f rows (%.0f bytes; %.0f without the group limit) sent per "
               "token over the MoE layers; a token's experts on %.2f ranks per layer (max %d), "
               "%.2f (max %d) without the group limit\n", r->ep_rows_per_token,
               r->ep_bytes_per_token, r->ep_bytes_unlimited, r->ep_ranks_per_token,
               r->ep_ranks_max, r->ep_ranks_unlimited, r->ep_ranks_unlimited_max);
    if (o->trace.path) {
        char where[1200];
        sm_trace_where(o->trace.path, where, sizeof where);
        printf("trace          %.3f ms/step writing %s (%.2f%% of a step)\n", r->trace_s * 1e3,
               where, 100 * r->trace_s / r->step.median);
    }
}

int sm_cmd_bench(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"model", required_argument, 0, 'm'},
        {"batch", required_argument, 0, 'b'},  {"seq", required_argument, 0, 's'},
        {"micro", required_argument, 0, 'u'},  {"reps", required_argument, 0, 'r'},
        {"warmup", required_argument, 0, 'W'}, {"seed", required_argument, 0, 'S'},
        {"format", required_argument, 0, 'f'}, {"help", no_argument, 0, 'h'},
        {"train", no_argument, 0, 't'},
        {"precision", required_argument, 0, OPT_PRECISION},
        {"optimizer-state-dtype", required_argument, 0, OPT_STATE_DTYPE},
        SM_CLI_ENGINE_OPTS, SM_CLI_RUN_OPTS, SM_CLI_PARALLEL_OPTS, SM_CLI_TRACE_OPTS,
        {0, 0, 0, 0}};
    sm_bench_opts o = {.B = 0, .S = 0, .micro = 1, .reps = 5, .warmup = 1, .seed = 1234,
                       .trace = SM_TRACE_OPTS_DEFAULT};
    sm_engine_opts e = {0};
    const char *config_path = NULL, *format = "text", *precision = "f32", *state_dtype = "auto";
    long v;
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int r = sm_cli_engine_opt(opt, optarg, &e);
        if (!r) r = sm_cli_run_opt(opt, optarg, &o.run);
        if (!r) r = sm_cli_parallel_opt(opt, optarg, &o.launch);
        if (!r) r = sm_cli_trace_opt(opt, optarg, &o.trace);
        if (r < 0) return 2;
        if (r) continue;
        switch (opt) {
        case 'c': config_path = optarg; break;
        case 'm': o.model_dir = optarg; break;
        case 'f': format = optarg; break;
        case 't': o.train = 1; break;
        case OPT_PRECISION: precision = optarg; break;
        case OPT_STATE_DTYPE: state_dtype = optarg; break;
        case 'b': if (sm_cli_int("batch", optarg, 1, 1 << 20, &v)) return 2; o.B = (int)v; break;
        case 's': if (sm_cli_int("seq", optarg, 1, 1 << 20, &v)) return 2; o.S = (int)v; break;
        case 'u': if (sm_cli_int("micro", optarg, 1, 4096, &v)) return 2; o.micro = (int)v; break;
        case 'r': if (sm_cli_int("reps", optarg, 1, 100000, &v)) return 2; o.reps = (int)v; break;
        case 'W': if (sm_cli_int("warmup", optarg, 0, 100000, &v)) return 2; o.warmup = (int)v; break;
        case 'S': if (sm_cli_int("seed", optarg, 0, 1L << 62, &v)) return 2; o.seed = (uint64_t)v; break;
        case 'h': printf("usage: starmoe bench %s\n", sm_bench_usage); return 0;
        default: return sm_cli_usage_error("bench", sm_bench_usage);
        }
    }
    if ((!config_path == !o.model_dir) || !o.B || !o.S || optind < argc ||
        (strcmp(format, "text") && strcmp(format, "json")))
        return sm_cli_usage_error("bench", sm_bench_usage);
    if (sm_bench_precision(&o, precision, state_dtype)) return 2;
    sm_cli_run_finish(&o.run, &e);
    sm_error err = {{0}};
    sm_config cfg;
    if (config_path) {
        if (sm_config_load_json(&cfg, config_path, &err)) {
            sm_cli_error("bench", err.msg);
            return 1;
        }
        o.config = &cfg;
    }
    char *identity = sm_cli_identity(argc, argv);
    if (!identity || sm_cli_engine_start(&e)) {
        free(identity);
        return 1;
    }
    o.launch.identity = identity;
    sm_bench_result res;
    int rc = sm_bench(&o, &res, &err);
    /* rank 0 reports for all */
    if (rc == 0 && sm_engine_rank() == 0)
        (strcmp(format, "json") ? sm_print_text : sm_print_json)(&o, &res);
    sm_engine_shutdown();
    free(identity);
    if (rc) sm_cli_error("bench", err.msg);
    return rc ? 1 : 0;
}
