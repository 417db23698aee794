/* starmoe train: a training job from a run config (see include/starmoe/train.h). */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <starmoe/train.h>

static const char *sm_train_usage =
    "--config RUN.json [--data PATH] [--out DIR] [--steps N] [--seed S] [--resume]\n"
    "       [--set section.key=value ...]\n"
    "       " SM_CLI_TRACE_USAGE;

int sm_cmd_train(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"data", required_argument, 0, 'd'},
        {"out", required_argument, 0, 'o'},    {"steps", required_argument, 0, 'n'},
        {"seed", required_argument, 0, 's'},   {"resume", no_argument, 0, 'r'},
        {"set", required_argument, 0, 'S'},    {"help", no_argument, 0, 'h'},
        SM_CLI_TRACE_OPTS,                     {0, 0, 0, 0}};
    sm_train_opts o = {.out = "runs/latest", .steps = -1, .seed = -1,
                       .trace = SM_TRACE_OPTS_DEFAULT};
    const char **sets = calloc(argc, sizeof *sets);
    long v;
    int opt, rc = 2;
    if (!sets) return 1;
    o.overrides = sets;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int t = sm_cli_trace_opt(opt, optarg, &o.trace);
        if (t < 0) goto out;
        if (t) continue;
        switch (opt) {
        case 'c': o.config = optarg; break;
        case 'd': o.data = optarg; break;
        case 'o': o.out = optarg; break;
        case 'r': o.resume = 1; break;
        case 'S': sets[o.noverrides++] = optarg; break;
        case 'n': if (sm_cli_int("steps", optarg, 0, 1L << 40, &v)) goto out; o.steps = v; break;
        case 's': if (sm_cli_int("seed", optarg, 0, 1L << 62, &v)) goto out; o.seed = v; break;
        case 'h': printf("usage: starmoe train %s\n", sm_train_usage); rc = 0; goto out;
        default: rc = sm_cli_usage_error("train", sm_train_usage); goto out;
        }
    }
    if ((!o.config && !o.resume) || optind < argc) {
        rc = sm_cli_usage_error("train", sm_train_usage);
        goto out;
    }
    sm_error err = {{0}};
    rc = sm_train(&o, &err) ? 1 : 0;
    if (rc) fprintf(stderr, "starmoe train: %s\n", err.msg);
out:
    free(sets);
    return rc;
}
