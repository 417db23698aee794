# io/: model formats (safetensors, Hugging Face model folders, config.json), run configs,
# checkpoints, metrics and the loss curve.
libstarmoe_core_la_SOURCES += io/safetensors.c io/safetensors_writer.c io/safetensors.h \
	io/hf_model.c io/hf_model.h io/config_json.c io/config_json.h io/convert.c io/convert.h
starmoeinclude_HEADERS += include/starmoe/config.h

check_PROGRAMS += tests/test_safetensors tests/test_config tests/test_hf_model tests/test_convert
TESTS += tests/test_safetensors tests/test_config tests/test_hf_model tests/test_convert
tests_test_convert_LDADD = $(TEST_LIBS)
tests_test_safetensors_LDADD = $(TEST_LIBS)
tests_test_config_LDADD = $(TEST_LIBS)
tests_test_hf_model_LDADD = $(TEST_LIBS)

# Training runs: the run config, checkpoints, metrics and the loss curve, the run folder's lock.
libstarmoe_core_la_SOURCES += io/run_config.c io/run_config.h io/checkpoint.c io/checkpoint.h \
	io/metrics.c io/metrics.h io/run_folder.c io/run_folder.h \
	io/run_config_diff.c io/run_config_diff.h
check_PROGRAMS += tests/test_run_config tests/test_checkpoint tests/test_metrics
TESTS += tests/test_run_config tests/test_checkpoint tests/test_metrics
tests_test_run_config_LDADD = $(TEST_LIBS)
tests_test_checkpoint_LDADD = $(TEST_LIBS)
tests_test_metrics_LDADD = $(TEST_LIBS)
