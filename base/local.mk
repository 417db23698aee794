# base/: small helpers every folder may use: errors, growable arrays, atomic files, dtype codecs
# (FP8 casts, quantisers and the reference FP8 GEMMs), the monotonic clock, the table of task
# phases, safe input files and exact-size strings. Depends on nothing else of starmoe.
libstarmoe_core_la_SOURCES += base/error.c base/grow.h base/atomic_file.c base/atomic_file.h \
	base/dtype.c base/dtype.h base/clock.c base/clock.h base/phase.c base/phase.h \
	base/file.c base/file.h base/aprintf.c base/aprintf.h base/fp8_quant.c base/fp8_quant.h
starmoeinclude_HEADERS += include/starmoe/error.h include/starmoe/export.h include/starmoe/fp8.h

check_PROGRAMS += tests/test_dtype
TESTS += tests/test_dtype
tests_test_dtype_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test_error
TESTS += tests/test_error
tests_test_error_LDADD = $(TEST_LIBS)

# The FP8 casts, quantisers and GEMMs (tasks/fp8_kernels.c's fast ones too), docs/fp8.md.
check_PROGRAMS += tests/test_fp8
TESTS += tests/test_fp8
tests_test_fp8_LDADD = $(TEST_LIBS)
EXTRA_DIST += docs/fp8.md
