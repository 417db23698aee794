# base/: small helpers every folder may use: errors, growable arrays, atomic files, dtype codecs
# (FP8 included) and the monotonic clock. Depends on nothing else of starmoe.
libstarmoe_core_la_SOURCES += base/error.c base/grow.h base/atomic_file.c base/atomic_file.h \
	base/dtype.c base/dtype.h base/clock.c base/clock.h
starmoeinclude_HEADERS += include/starmoe/error.h

check_PROGRAMS += tests/test_dtype
TESTS += tests/test_dtype
tests_test_dtype_LDADD = $(TEST_LIBS)
