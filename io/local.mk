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
