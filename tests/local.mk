# Test helpers shared by every test program.
noinst_LTLIBRARIES = tests/libtestutil.la
tests_libtestutil_la_SOURCES = tests/testutil.c tests/testutil.h tests/tap.h
TEST_LIBS += tests/libtestutil.la
