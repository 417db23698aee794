# schedulers/: scheduling policies by name (starmoe's ordered policy, plugin libraries, StarPU's
# built-ins), the pipeline schedule generators, their timing simulator and its reports.
libstarmoe_core_la_SOURCES += schedulers/registry.c schedulers/registry.h \
	schedulers/ordered.c schedulers/ordered.h \
	schedulers/yielding.c schedulers/yielding.h \
	schedulers/schedule.c schedulers/schedule.h \
	schedulers/simulate.c schedulers/simulate.h \
	schedulers/render.c schedulers/render.h \
	schedulers/measured.c schedulers/measured.h \
	schedulers/overlap.c schedulers/overlap.h \
	schedulers/report.c

starmoeinclude_HEADERS += include/starmoe/schedule.h

check_PROGRAMS += tests/test_schedule tests/test_schedule_comm tests/test_ordered tests/test_overlap
TESTS += tests/test_schedule tests/test_schedule_comm tests/test_ordered tests/test_overlap \
	tests/test_sched_cli.sh \
	tests/test_schedule_costs.sh
EXTRA_DIST += tests/test_sched_cli.sh tests/test_schedule_costs.sh \
	tests/fixtures/schedule-costs-trace.json docs/writing-a-policy.md docs/pipeline-schedules.md
tests_test_schedule_LDADD = $(TEST_LIBS)
tests_test_schedule_comm_LDADD = $(TEST_LIBS)
tests_test_ordered_LDADD = $(TEST_LIBS)
tests_test_overlap_LDADD = $(TEST_LIBS)

# The example policy plugin, a shared library (-rpath makes libtool build one) that
# tests/test_sched_cli.sh loads with --sched-lib.
check_LTLIBRARIES = examples/plugin_fifo.la
examples_plugin_fifo_la_SOURCES = examples/plugin_fifo.c
examples_plugin_fifo_la_LDFLAGS = -module -avoid-version -shared -rpath /nowhere $(AM_LDFLAGS)
examples_plugin_fifo_la_LIBADD = $(STARPU_LIBS)
