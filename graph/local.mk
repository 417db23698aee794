# graph/: tensors as named StarPU handles, the one task-insertion path, DAG export.
libstarmoe_core_la_SOURCES += graph/graph.c graph/graph.h graph/deps.c \
	graph/resizable.c graph/resizable.h
