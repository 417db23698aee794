# data/: text to token batches: the byte-level BPE tokenizer and the dataset pipeline (corpus,
# split, packing, batch reader).
starmoeinclude_HEADERS += include/starmoe/tokenizer.h
libstarmoe_core_la_SOURCES += data/tokenizer.c data/tokenizer.h data/dataset.c data/dataset.h \
	data/corpus_tokenizer.c
check_PROGRAMS += tests/test_tokenizer tests/test_dataset
TESTS += tests/test_tokenizer tests/test_dataset
tests_test_tokenizer_LDADD = $(TEST_LIBS)
tests_test_dataset_LDADD = $(TEST_LIBS)
