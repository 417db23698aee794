# graph/: tensors as named StarPU handles, the one task-insertion path, DAG export, dtypes.
libstarmoe_la_SOURCES += graph/dtype.c graph/dtype.h
libstarmoe_la_SOURCES += graph/graph.c graph/graph.h
libstarmoe_la_SOURCES += graph/deps.c graph/grow.h
