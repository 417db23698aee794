/* starmoe eval: forward (and backward) of a Hugging Face model on given tokens, dumped. */
#include "cli/cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const char *sm_eval_usage =
    "--model DIR --inputs FILE [--dump OUT.safetensors] [--forward-only] [--micro M]\n"
    "       [--deterministic] [--mtp-lambda L] [--dot FILE] [--workers N] [--sched NAME] " SM_CLI_PARALLEL_USAGE "\n"
    "       " SM_CLI_TRACE_USAGE;

int sm_cmd_eval(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"inputs", required_argument, 0, 'i'},
        {"dump", required_argument, 0, 'd'},  {"forward-only", no_argument, 0, 'f'},
        {"micro", required_argument, 0, 'u'}, {"dot", required_argument, 0, 'g'},
        {"help", no_argument, 0, 'h'},        SM_CLI_ENGINE_OPTS,
        {"deterministic", no_argument, 0, SM_OPT_DETERMINISTIC},
        {"mtp-lambda", required_argument, 0, 'l'},
        SM_CLI_PARALLEL_OPTS,                 SM_CLI_TRACE_OPTS,
        {0, 0, 0, 0}};
    sm_eval_opts o = {.micro = 1, .trace = SM_TRACE_OPTS_DEFAULT};
    sm_engine_opts e = {0};
    long v;
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int r = sm_cli_engine_opt(opt, optarg, &e);
        if (!r) r = sm_cli_parallel_opt(opt, optarg, &o.launch);
        if (!r) r = sm_cli_trace_opt(opt, optarg, &o.trace);
        if (r < 0) return 2;
        if (r) continue;
        switch (opt) {
        case 'm': o.model_dir = optarg; break;
        case 'i': o.inputs = optarg; break;
        case 'd': o.dump = optarg; break;
        case 'f': o.forward_only = 1; break;
        case 'g': o.dot = optarg; break;
        case SM_OPT_DETERMINISTIC: o.deterministic = 1; break;
        case 'u':
            if (sm_cli_int("micro", optarg, 1, 4096, &v)) return 2;
            o.micro = (int)v;
            break;
        case 'l':
            if (sm_cli_double("mtp-lambda", optarg, 1e-9, 1e6, &o.mtp_lambda)) return 2;
            break;
        case 'h': printf("usage: starmoe eval %s\n", sm_eval_usage); return 0;
        default: return sm_cli_usage_error("eval", sm_eval_usage);
        }
    }
    if (!o.model_dir || !o.inputs || optind < argc)
        return sm_cli_usage_error("eval", sm_eval_usage);
    char *identity = sm_cli_identity(argc, argv);
    if (!identity || sm_cli_engine_start(&e)) {
        free(identity);
        return 1;
    }
    o.launch.identity = identity;
    sm_error err = {{0}};
    double loss = 0, parts[65];
    size_t ntasks = 0;
    for (int k = 0; k < 65; k++) parts[k] = NAN;
    o.loss_parts = parts;
    int rc = sm_eval(&o, &loss, &ntasks, &err), lead = sm_engine_rank() == 0;
    sm_engine_shutdown();
    free(identity);
    if (rc) {
        sm_cli_error("eval", err.msg);
        return 1;
    }
    if (!lead) return 0; /* rank 0 reports for all */
    if (isnan(loss))
        printf("no loss (no targets given)");
    else
        printf("loss %.8f", loss);
    if (!isnan(parts[1])) printf("  (main %.8f, mtp %.8f", parts[0], parts[1]);
    for (int k = 2; k < 65 && !isnan(parts[k]); k++) printf(", mtp.%d %.8f", k, parts[k]);
    if (!isnan(parts[1])) printf(")");
    char where[1200] = "";
    if (o.trace.path) sm_trace_where(o.trace.path, where, sizeof where);
    printf("  tasks %zu%s%s%s%s\n", ntasks, o.dump ? "  dump " : "", o.dump ? o.dump : "",
           o.trace.path ? "  trace " : "", where);
    return 0;
}
