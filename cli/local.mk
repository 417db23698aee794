# cli/: the starmoe command-line tool, a thin layer over include/starmoe.
bin_PROGRAMS += starmoe
starmoe_SOURCES = cli/cli.h cli/main.c cli/cmd_eval.c cli/cmd_bench.c cli/cmd_graph.c
starmoe_LDADD = libstarmoe.la $(DEPS_LIBS)
