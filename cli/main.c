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

int sm_cli_double(const char *flag, const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "starmoe: --%s '%s': expected a number in [%g, %g]\n", flag, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* '--sched help': lists the policies (with those of a --sched-lib given before) and exits. */
static void sm_cli_sched_help(const sm_engine_opts *e)
{
    sm_error err = {{0}};
    if (sm_engine_sched_help(e, &err) == 0) exit(0);
    fprintf(stderr, "starmoe: %s\n", err.msg);
    exit(1);
}

int sm_cli_engine_opt(int opt, const char *arg, sm_engine_opts *e)
{
    long v;
    if (opt == 'x' && !strcmp(arg, "help")) sm_cli_sched_help(e);
    if (opt == 'x') {
        e->sched = arg;
        return 1;
    }
    if (opt == SM_OPT_SCHED_LIB) {
        e->sched_lib = arg;
        return 1;
    }
    if (opt != 'w') return 0;
    if (sm_cli_int("workers", arg, 1, 64, &v)) return -1;
    e->ncpus = (int)v;
    return 1;
}

int sm_cli_run_opt(int opt, const char *arg, sm_run_opts *r)
{
    long v;
    if (opt == SM_OPT_DETERMINISTIC) {
        r->deterministic = 1;
        return 1;
    }
    if (opt != SM_OPT_PP) return 0;
    if (sm_cli_int("pp", arg, 1, 64, &v)) return -1;
    r->pp = (int)v;
    return 1;
}

void sm_cli_run_finish(sm_run_opts *r, const sm_engine_opts *e)
{
    r->pipeline = sm_run_pipeline_of(e->sched);
}

int sm_cli_parallel_opt(int opt, const char *arg, sm_launch *l)
{
    long v;
    if (opt != SM_OPT_EP && opt != SM_OPT_DP) return 0;
    if (sm_cli_int(opt == SM_OPT_EP ? "ep" : "dp", arg, 1, 4096, &v)) return -1;
    *(opt == SM_OPT_EP ? &l->ep : &l->dp) = (int)v;
    return 1;
}

char *sm_cli_identity(int argc, char **argv)
{
    size_t n = 1;
    for (int i = 0; i < argc; i++) n += strlen(argv[i]) + 1;
    char *s = malloc(n);
    if (!s) return NULL;
    s[0] = '\0';
    for (int i = 0; i < argc; i++) {
        strcat(s, argv[i]);
        if (i + 1 < argc) strcat(s, " ");
    }
    return s;
}

void sm_cli_error(const char *cmd, const char *msg)
{
    if (sm_engine_size() > 1)
        fprintf(stderr, "rank %d: starmoe%s%s: %s\n", sm_engine_rank(), cmd ? " " : "",
                cmd ? cmd : "", msg);
    else
        fprintf(stderr, "starmoe%s%s: %s\n", cmd ? " " : "", cmd ? cmd : "", msg);
}

int sm_cli_trace_opt(int opt, const char *arg, sm_trace_opts *o)
{
    sm_error err = {{0}};
    int rc = 0;
    switch (opt) {
    case SM_OPT_TRACE: o->path = arg; return 1;
    case SM_OPT_TRACE_DEPS: o->deps = 1; return 1;
    case SM_OPT_TRACE_STEPS: rc = sm_trace_parse_steps(arg, o, &err); break;
    case SM_OPT_TRACE_FORMAT: rc = sm_trace_parse_format(arg, o, &err); break;
    default: return 0;
    }
    if (rc) fprintf(stderr, "starmoe: %s\n", err.msg);
    return rc ? -1 : 1;
}

int sm_cli_engine_start(const sm_engine_opts *e)
{
    sm_error err = {{0}};
    if (sm_engine_init(e, &err) == 0) return 0;
    sm_cli_error(NULL, err.msg);
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
               "  schedule --policy gpipe|1f1b|zbh1|dualpipe|dualpipev --pp P --micro M\n"
               "         [--cost F,B,W,FB] [--format text|json] [-o TIMELINE.svg]\n"
               "  trace  summary|html|merge FILE... (a trace written with --trace FILE)\n"
               "  convert --model DIR --to fp8|bf16|f32 -o OUT\n"
               "train, eval and bench take --trace FILE [--trace-steps A:B] [--trace-format "
               "chrome|paje] [--trace-deps].\n"
               "train, eval, bench and generate take --workers N --sched NAME|help --sched-lib FILE.so;\n"
               "bench and eval take --ep E --dp D under mpirun (train: --set parallel.ep=E);\n"
               "  (mpirun -np N starmoe train --config RUN.json --set parallel.dp=N).\n"
               "train and bench take --pp N (with --sched gpipe|1f1b|zbh1|dualpipe|dualpipev) and --deterministic.\n"
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
    if (!strcmp(cmd, "schedule")) return sm_cmd_schedule(argc - 1, argv + 1);
    if (!strcmp(cmd, "trace")) return sm_cmd_trace(argc - 1, argv + 1);
    if (!strcmp(cmd, "convert")) return sm_cmd_convert(argc - 1, argv + 1);
    fprintf(stderr, "starmoe: unknown command '%s'\n", cmd);
    sm_usage(stderr);
    return 2;
}
