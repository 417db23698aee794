/* starmoe: command dispatch and the option helpers shared by the commands. */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sm_cli_int(const char *flag, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "starmoe: --%s '%s': expected an integer in [%ld, %ld]\n", flag, s, lo,
                hi);
        return -1;
    }
    *out = v;
    return 0;
}

int sm_cli_engine_opt(int opt, const char *arg, sm_engine_opts *e)
{
    long v;
    if (opt == 'x') {
        e->sched = arg;
        return 1;
    }
    if (opt != 'w') return 0;
    if (sm_cli_int("workers", arg, 1, 64, &v)) return -1;
    e->ncpus = (int)v;
    return 1;
}

int sm_cli_engine_start(const sm_engine_opts *e)
{
    sm_error err = {{0}};
    if (sm_engine_init(e, &err) == 0) return 0;
    fprintf(stderr, "starmoe: %s\n", err.msg);
    return -1;
}

int sm_cli_usage_error(const char *cmd, const char *usage)
{
    fprintf(stderr, "usage: starmoe %s %s\n", cmd, usage);
    return 2;
}

static void sm_usage(FILE *f)
{
    fprintf(f, "usage: starmoe COMMAND [options]\n"
               "  train  --config RUN.json [--data PATH] [--out DIR] [--steps N] [--resume]\n"
               "  generate --ckpt DIR [--prompt TEXT] [--temperature T] [--top-p P] [--seed S]\n"
               "  tokenizer train|encode|decode ...\n"
               "  eval   --model DIR --inputs FILE [--dump OUT.safetensors] [--forward-only]\n"
               "  bench  (--config FILE.json | --model DIR) --batch B --seq T [--format json]\n"
               "  graph  (--config FILE.json | --model DIR) --dot FILE [--batch B --seq T]\n"
               "Run 'starmoe COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        sm_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "eval")) return sm_cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return sm_cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "graph")) return sm_cmd_graph(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return sm_cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "generate")) return sm_cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenizer")) return sm_cmd_tokenizer(argc - 1, argv + 1);
    fprintf(stderr, "starmoe: unknown command '%s'\n", cmd);
    sm_usage(stderr);
    return 2;
}
