# base/: small helpers every folder may use: errors, growable arrays, atomic files, dtype codecs
# (FP8 included), the monotonic clock and the table of task phases. Depends on nothing else of
# starmoe.
libstarmoe_la_SOURCES += base/error.c base/grow.h base/atomic_file.c base/atomic_file.h \
	base/dtype.c base/dtype.h base/clock.c base/clock.h \
	base/phase.c base/phase.h
starmoeinclude_HEADERS += include/starmoe/error.h

check_PROGRAMS += tests/test_dtype
TESTS += tests/test_dtype
tests_test_dtype_LDADD = $(TEST_LIBS)
