# Test helpers shared by every test program (TEST_LIBS links them first).
noinst_LTLIBRARIES += tests/libtestutil.la
tests_libtestutil_la_SOURCES = tests/testutil.c tests/testutil.h tests/tap.h

# The house plan: every #include is an edge the table of docs/architecture.md allows.
TESTS += tests/test_layers.sh
EXTRA_DIST += tests/test_layers.sh docs/architecture.md docs/model.md docs/starpu.md docs/design.md
