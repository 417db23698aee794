# tasks/: pure kernels (callable without StarPU) and their codelets, one family a file.
libstarmoe_core_la_SOURCES += tasks/kernel_util.c tasks/kernel_util.h tasks/dense_kernels.c tasks/dense_kernels.h \
	tasks/attention_kernels.c tasks/attention_kernels.h \
	tasks/moe_kernels.c tasks/moe_kernels.h tasks/mtp_kernels.c tasks/mtp_kernels.h \
	tasks/mla_cache_kernels.c tasks/mla_cache_kernels.h tasks/fp8_kernels.c tasks/fp8_kernels.h

check_PROGRAMS += tests/test_dense_kernels tests/test_attention_kernels tests/test_moe_kernels
TESTS += tests/test_dense_kernels tests/test_attention_kernels tests/test_moe_kernels
tests_test_dense_kernels_LDADD = $(TEST_LIBS)
tests_test_attention_kernels_LDADD = $(TEST_LIBS)
tests_test_moe_kernels_LDADD = $(TEST_LIBS)
libstarmoe_core_la_SOURCES += tasks/codelet.c tasks/codelet.h tasks/dense.c tasks/dense.h \
	tasks/attention.c tasks/attention.h tasks/moe.c tasks/moe.h tasks/mtp.c tasks/mtp.h \
	tasks/mla_cache.c tasks/mla_cache.h tasks/fp8.c tasks/fp8.h
libstarmoe_core_la_SOURCES += tasks/optim_kernels.c tasks/optim_kernels.h tasks/optim.c tasks/optim.h

check_PROGRAMS += tests/test_optim_kernels
TESTS += tests/test_optim_kernels
tests_test_optim_kernels_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test_codelets
TESTS += tests/test_codelets
tests_test_codelets_SOURCES = tests/test_codelets.c tests/codelet_harness.c \
	tests/codelet_harness.h tests/codelets_dense.c tests/codelets_attention.c \
	tests/codelets_moe.c tests/codelets_optim.c tests/codelets_mtp.c \
	tests/codelets_mla_cache.c tests/codelets_fp8.c
tests_test_codelets_LDADD = $(TEST_LIBS)
