# io/: formats (safetensors, Hugging Face model folders, config.json), errors.
libstarmoe_la_SOURCES += io/error.c io/safetensors.c io/safetensors_writer.c io/hf_model.c \
	io/config_json.c io/safetensors.h io/hf_model.h
starmoeinclude_HEADERS += include/starmoe/error.h include/starmoe/config.h

check_PROGRAMS += tests/test_dtype tests/test_safetensors tests/test_config tests/test_hf_model
TESTS += tests/test_dtype tests/test_safetensors tests/test_config tests/test_hf_model
tests_test_dtype_LDADD = $(TEST_LIBS)
tests_test_safetensors_LDADD = $(TEST_LIBS)
tests_test_config_LDADD = $(TEST_LIBS)
tests_test_hf_model_LDADD = $(TEST_LIBS)

# Byte-level BPE tokenizer and the dataset pipeline (corpus, split, packing, batch reader).
libstarmoe_la_SOURCES += io/tokenizer.c io/tokenizer.h io/dataset.c io/dataset.h
check_PROGRAMS += tests/test_tokenizer tests/test_dataset
TESTS += tests/test_tokenizer tests/test_dataset
tests_test_tokenizer_LDADD = $(TEST_LIBS)
tests_test_dataset_LDADD = $(TEST_LIBS)

# Training runs: the run config, checkpoints, metrics and the loss curve.
libstarmoe_la_SOURCES += io/config_json.h io/run_config.c io/run_config.h io/checkpoint.c \
	io/checkpoint.h io/metrics.c io/metrics.h
check_PROGRAMS += tests/test_run_config tests/test_checkpoint tests/test_metrics
TESTS += tests/test_run_config tests/test_checkpoint tests/test_metrics
tests_test_run_config_LDADD = $(TEST_LIBS)
tests_test_checkpoint_LDADD = $(TEST_LIBS)
tests_test_metrics_LDADD = $(TEST_LIBS)

# Execution traces: the Chrome and Paje writers, the reader and summary, the HTML report and
# the merge of ranks' traces.
libstarmoe_la_SOURCES += io/trace.h io/trace_writer.c io/trace_paje.c io/trace_read.h \
	io/trace_read.c io/trace_summary.c io/trace_html.c io/trace_html_page.c io/trace_merge.c
starmoeinclude_HEADERS += include/starmoe/trace.h
check_PROGRAMS += tests/test_trace_io
TESTS += tests/test_trace_io
tests_test_trace_io_LDADD = $(TEST_LIBS)
