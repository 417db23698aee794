# trace/: execution traces: the recorder (graph records to events after each step), the Chrome
# and Paje writers, the reader and summary, the HTML report and the merge of ranks' traces (their
# outputs: trace/output.c).
libstarmoe_core_la_SOURCES += trace/recorder.c trace/recorder.h trace/writer.h trace/chrome.c \
	trace/paje.c trace/read.h trace/read.c trace/summary.c trace/html.c trace/html_page.c \
	trace/merge.c trace/output.c trace/output.h trace/pipeline_times.c
starmoeinclude_HEADERS += include/starmoe/trace.h
check_PROGRAMS += tests/test_trace_io
TESTS += tests/test_trace_io
tests_test_trace_io_LDADD = $(TEST_LIBS)
