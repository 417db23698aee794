# cli/: the starmoe command-line tool, a thin layer over include/starmoe.
bin_PROGRAMS += starmoe
starmoe_SOURCES = cli/cli.h cli/main.c cli/cmd_eval.c cli/cmd_bench.c cli/cmd_graph.c \
	cli/cmd_train.c cli/cmd_generate.c cli/cmd_tokenizer.c cli/cmd_trace.c \
	cli/cmd_schedule.c cli/cmd_convert.c
starmoe_LDADD = libstarmoe.la $(JANSSON_LIBS)

TESTS += tests/test_determinism.sh tests/test_cli_errors.sh tests/test_graph_dot.sh tests/test_example.sh tests/test_train.sh tests/test_pipeline_train.sh \
	tests/test_mtp.sh tests/test_bf16_moments.sh
EXTRA_DIST += tests/tap.sh tests/test_determinism.sh tests/test_cli_errors.sh tests/test_graph_dot.sh tests/test_example.sh tests/test_train.sh tests/test_pipeline_train.sh \
	tests/test_mtp.sh tests/test_bf16_moments.sh
# starmoe generate with MLA's latent cache against --no-cache, its report and its context limit.
TESTS += tests/test_generate_cache.sh tests/test_speculative.sh tests/test_fp8_train.sh
EXTRA_DIST += tests/test_generate_cache.sh tests/test_speculative.sh tests/test_fp8_train.sh

# Execution traces end to end, with a checker of trace files that test_trace.sh runs.
check_PROGRAMS += tests/trace_check
tests_trace_check_LDADD = $(JANSSON_LIBS) -lm
TESTS += tests/test_trace.sh
EXTRA_DIST += tests/test_trace.sh

# starmoe convert: to FP8 and back, the converted folders evaluated, bad scales refused.
TESTS += tests/test_convert.sh
EXTRA_DIST += tests/test_convert.sh
