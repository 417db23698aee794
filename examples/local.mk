# examples/: programs written against the public API only (include/starmoe).
noinst_PROGRAMS = examples/forward_backward
examples_forward_backward_SOURCES = examples/forward_backward.c
examples_forward_backward_LDADD = libstarmoe.la

# The public API alone: exports of libstarmoe.so against include/starmoe, and the example
# built against the installed library through pkg-config.
TESTS += tests/test_exports.sh tests/test_install.sh
EXTRA_DIST += tests/test_exports.sh tests/test_install.sh
