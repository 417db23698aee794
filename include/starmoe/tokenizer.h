/* The byte-level BPE tokenizer: training (on documents or on a corpus on disk), its file, and
 * an encoder whose output decodes back to exactly the input bytes (any bytes, UTF-8 or not).
 *
 * Vocabulary: ids 0..255 are the raw bytes; merge i (0-based, in training order) creates id
 * 256 + i from the pair (left, right); the last id, vocab_size - 1, is the special token
 * <|endoftext|> that ends a document. The encoder never emits it (the literal text
 * "<|endoftext|>" is encoded as ordinary bytes) and the decoder turns it into nothing.
 *
 * File format (text): first line "starmoe-bpe 1 <vocab_size>", then vocab_size - 257 lines
 * "<left> <right>", the merges in order, each line ending with '\n' and nothing else. */
#ifndef STARMOE_TOKENIZER_H
#define STARMOE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include <starmoe/error.h>
#include <starmoe/export.h>

/* Largest vocab_size accepted by training and by the loader. */
#define SM_TOKENIZER_MAX_VOCAB (1 << 24)
/* Longest token, in bytes: training never makes a longer one, and the loader refuses a file
 * whose merges would (merges can double a token's length each time, so a file of a few hundred
 * bytes could otherwise ask for gigabytes). */
#define SM_TOKENIZER_MAX_TOKEN_BYTES 512

typedef struct sm_tokenizer sm_tokenizer;

/* Trains on the given documents (any bytes). vocab_size >= 257; training stops early (fewer
 * merges, smaller vocabulary, see sm_tokenizer_vocab_size) when no pair occurs at least twice.
 * Deterministic: ties between equally frequent pairs go to the lexicographically smaller
 * (left id, right id). */
SM_API sm_tokenizer *sm_tokenizer_train(const char *const *docs, const size_t *lens,
                                        size_t ndocs, int vocab_size, sm_error *err);

/* What a corpus held: documents, their bytes, and files skipped as not UTF-8. */
typedef struct sm_corpus_stats {
    size_t docs, bytes, skipped;
} sm_corpus_stats;

/* Trains on the documents of a corpus, as training reads it: a file, or a folder read
 * recursively in name order (hidden entries and symbolic links ignored, files that are not
 * UTF-8 skipped and counted); doc_sep is the line between documents (NULL: one document per
 * file). stats may be NULL. */
SM_API sm_tokenizer *sm_tokenizer_train_corpus(const char *path, const char *doc_sep,
                                               int vocab_size, sm_corpus_stats *stats,
                                               sm_error *err);
/* Writes the file atomically. */
SM_API int sm_tokenizer_save(const sm_tokenizer *t, const char *path, sm_error *err);
/* Reads and validates a file: magic and version, vocab size, the number of merge lines, ids in
 * range and defined before use, no duplicate merge, no trailing bytes. Errors name the file and
 * the line ("tok.bpe:3: ..."). */
SM_API sm_tokenizer *sm_tokenizer_load(const char *path, sm_error *err);
SM_API void sm_tokenizer_free(sm_tokenizer *t);

SM_API int sm_tokenizer_vocab_size(const sm_tokenizer *t);
/* The <|endoftext|> id, vocab_size - 1. */
SM_API int32_t sm_tokenizer_eot(const sm_tokenizer *t);

/* Encodes bytes (never emits the special token). *ids is malloc'd (never NULL on success, even
 * for n = 0). */
SM_API int sm_tokenizer_encode(const sm_tokenizer *t, const char *text, size_t len,
                               int32_t **ids, size_t *n, sm_error *err);
/* Decodes ids to bytes (the special token decodes to nothing); NUL-terminated malloc'd buffer
 * of *len bytes. Ids outside the vocabulary are an error naming the position. */
SM_API char *sm_tokenizer_decode(const sm_tokenizer *t, const int32_t *ids, size_t n,
                                 size_t *len, sm_error *err);

#endif
