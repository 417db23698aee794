# Test helpers shared by every test program (TEST_LIBS links them first).
noinst_LTLIBRARIES += tests/libtestutil.la
tests_libtestutil_la_SOURCES = tests/testutil.c tests/testutil.h tests/tap.h
