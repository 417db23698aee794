/* starmoe train: a training job from a run config (see include/starmoe/train.h). */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <starmoe/train.h>

static const char *sm_train_usage =
    "--config RUN.json [--data PATH] [--out DIR] [--steps N] [--seed S] [--resume]\n"
    "       [--set section.key=value ...] [--workers N] [--sched NAME] [--sched-lib FILE.so]\n"
    "       " SM_CLI_RUN_USAGE " " SM_CLI_TRACE_USAGE;

/* The engine and run flags are shorthands for --set engine.KEY=VALUE; returns the override
 * (malloc'd) or NULL when opt is not one of them. */
static char *sm_train_engine_set(int opt, const char *arg)
{
    const char *key = opt == 'w' ? "workers" : opt == 'x' ? "sched" :
                      opt == SM_OPT_SCHED_LIB ? "sched_lib" : opt == SM_OPT_PP ? "pp" :
                      opt == SM_OPT_DETERMINISTIC ? "deterministic" : NULL;
    if (!key) return NULL;
    int quote = opt == 'x' || opt == SM_OPT_SCHED_LIB;
    const char *value = opt == SM_OPT_DETERMINISTIC ? "true" : arg;
    size_t n = strlen(key) + strlen(value) + 16;
    char *set = malloc(n);
    if (set) snprintf(set, n, "engine.%s=%s%s%s", key, quote ? "\"" : "", value, quote ? "\"" : "");
    return set;
}

int sm_cmd_train(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"data", required_argument, 0, 'd'},
        {"out", required_argument, 0, 'o'},    {"steps", required_argument, 0, 'n'},
        {"seed", required_argument, 0, 's'},   {"resume", no_argument, 0, 'r'},
        {"set", required_argument, 0, 'S'},    {"help", no_argument, 0, 'h'},
        SM_CLI_ENGINE_OPTS,                    SM_CLI_RUN_OPTS,
        SM_CLI_TRACE_OPTS,                     {0, 0, 0, 0}};
    sm_train_opts o = {.out = "runs/latest", .steps = -1, .seed = -1,
                       .trace = SM_TRACE_OPTS_DEFAULT};
    const char **sets = calloc(argc, sizeof *sets);
    char **owned = calloc(argc, sizeof *owned);
    long v;
    int opt, rc = 2, nowned = 0;
    sm_engine_opts help = {0};
    if (!sets || !owned) {
        free(sets);
        free(owned);
        return 1;
    }
    o.overrides = sets;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int t = sm_cli_trace_opt(opt, optarg, &o.trace);
        if (t < 0) goto out;
        if (t) continue;
        /* --sched help lists the policies (those of an earlier --sched-lib too) and exits */
        if ((opt == 'x' || opt == SM_OPT_SCHED_LIB) && sm_cli_engine_opt(opt, optarg, &help) < 0)
            goto out;
        if ((owned[nowned] = sm_train_engine_set(opt, optarg))) {
            sets[o.noverrides++] = owned[nowned++];
            continue;
        }
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
    if (rc) sm_cli_error("train", err.msg);
out:
    for (int i = 0; i < nowned; i++) free(owned[i]);
    free(owned);
    free(sets);
    return rc;
}
