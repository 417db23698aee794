/* The starmoe command-line tool: a thin layer over the public C API (include/starmoe only).
 * Shared option parsing. */
#ifndef STARMOE_CLI_H
#define STARMOE_CLI_H

#include <getopt.h>
#include <starmoe/starmoe.h>

/* Engine options every running command accepts ('--sched help' lists the policies). */
enum { SM_OPT_SCHED_LIB = 0x200, SM_OPT_PP, SM_OPT_DETERMINISTIC };
#define SM_CLI_ENGINE_OPTS                                                                   \
    {"workers", required_argument, 0, 'w'}, {"sched", required_argument, 0, 'x'},           \
        {"sched-lib", required_argument, 0, SM_OPT_SCHED_LIB}

/* Run options of bench: --pp N (pipeline ranks, with --sched naming a pipeline schedule) and
 * --deterministic. */
#define SM_CLI_RUN_OPTS                                                                      \
    {"pp", required_argument, 0, SM_OPT_PP},                                                \
        {"deterministic", no_argument, 0, SM_OPT_DETERMINISTIC}
#define SM_CLI_RUN_USAGE "[--pp N] [--deterministic]"

/* Launch layout of bench and eval under mpirun: --ep E --dp D (train: --set parallel.ep=E). */
enum { SM_OPT_EP = 0x300, SM_OPT_DP };
#define SM_CLI_PARALLEL_OPTS \
    {"ep", required_argument, 0, SM_OPT_EP}, {"dp", required_argument, 0, SM_OPT_DP}
#define SM_CLI_PARALLEL_USAGE "[--ep E --dp D]"

/* Trace options of the running commands (train, eval, bench); codes above any character. */
enum { SM_OPT_TRACE = 0x100, SM_OPT_TRACE_STEPS, SM_OPT_TRACE_FORMAT, SM_OPT_TRACE_DEPS };
#define SM_CLI_TRACE_OPTS                                                                    \
    {"trace", required_argument, 0, SM_OPT_TRACE},                                          \
        {"trace-steps", required_argument, 0, SM_OPT_TRACE_STEPS},                          \
        {"trace-format", required_argument, 0, SM_OPT_TRACE_FORMAT},                        \
        {"trace-deps", no_argument, 0, SM_OPT_TRACE_DEPS}
#define SM_CLI_TRACE_USAGE \
    "[--trace FILE [--trace-steps A:B] [--trace-format chrome|paje] [--trace-deps]]"

/* Strict integer (number) parsing: the whole string, within [lo, hi]; prints an error naming
 * the flag and returns -1 otherwise. */
int sm_cli_int(const char *flag, const char *s, long lo, long hi, long *out);
int sm_cli_double(const char *flag, const char *s, double lo, double hi, double *out);
/* Handles the engine options (returns 1 when opt was one of them, -1 on a bad value). */
int sm_cli_engine_opt(int opt, const char *arg, sm_engine_opts *e);
/* Handles the run options (returns 1 when opt was one of them, -1 on a bad value); call
 * sm_cli_run_finish after parsing to take the pipeline schedule from --sched (the run itself
 * refuses --pp above 1 without one). */
int sm_cli_run_opt(int opt, const char *arg, sm_run_opts *r);
void sm_cli_run_finish(sm_run_opts *r, const sm_engine_opts *e);
/* Handles the trace options (returns 1 when opt was one of them, -1 on a bad value). */
int sm_cli_trace_opt(int opt, const char *arg, sm_trace_opts *o);
/* Handles --ep and --dp (returns 1 when opt was one of them, -1 on a bad value). */
int sm_cli_parallel_opt(int opt, const char *arg, sm_launch *l);
/* The command line as one line of text (malloc'd): what every rank must share. */
char *sm_cli_identity(int argc, char **argv);
/* Prints "starmoe CMD: MSG", after "rank R: " when mpirun launched several ranks. */
void sm_cli_error(const char *cmd, const char *msg);
/* Starts the engine, printing the error on failure. */
int sm_cli_engine_start(const sm_engine_opts *e);
/* Prints "starmoe CMD: unknown option" help hints. */
int sm_cli_usage_error(const char *cmd, const char *usage);

int sm_cmd_eval(int argc, char **argv);
int sm_cmd_bench(int argc, char **argv);
int sm_cmd_graph(int argc, char **argv);
int sm_cmd_train(int argc, char **argv);
int sm_cmd_generate(int argc, char **argv);
int sm_cmd_tokenizer(int argc, char **argv);
int sm_cmd_schedule(int argc, char **argv);
int sm_cmd_trace(int argc, char **argv);
int sm_cmd_convert(int argc, char **argv);

#endif
