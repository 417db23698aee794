# examples/: programs written against the public API only (include/starmoe).
noinst_PROGRAMS = examples/forward_backward
examples_forward_backward_SOURCES = examples/forward_backward.c
examples_forward_backward_LDADD = libstarmoe.la $(DEPS_LIBS)
