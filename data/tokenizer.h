/* Byte-level BPE tokenizer: training on raw documents, a small text file format, and an encoder
 * whose output decodes back to exactly the input bytes (any bytes, UTF-8 or not).
 *
 * Vocabulary: ids 0..255 are the raw bytes; merge i (0-based, in training order) creates id
 * 256 + i from the pair (left, right); the last id, vocab_size - 1, is the special token
 * <|endoftext|> that ends a document. The encoder never emits it (the literal text
 * "<|endoftext|>" is encoded as ordinary bytes) and the decoder turns it into nothing.
 *
 * Pre-tokenisation (merges never cross chunk boundaries), GPT-2 style without regexes. Classes
 * of code points: letters (ASCII letters and every valid non-ASCII code point that is not CJK),
 * digits (ASCII 0-9), spaces (' ', '\t', '\v', '\f'), newlines ('\n', '\r'), CJK (U+3000-U+9FFF,
 * U+AC00-U+D7AF, U+F900-U+FAFF, U+FF00-U+FFEF, U+20000-U+2FFFF: ideographs, kana, hangul,
 * full-width punctuation), other (every remaining ASCII byte: punctuation, symbols, controls),
 * and invalid (a byte that does not start a valid UTF-8 sequence: overlong forms, surrogates,
 * code points above U+10FFFF and truncated sequences are invalid). A chunk is one of:
 *   - an optional single ' ' followed by a run of letters, a run of 1 to 3 digits, or a run of
 *     other characters ("Hello", " world", " 202" "4", "...", " (");
 *   - one CJK code point (床 前 明 月 光 ， are six chunks; a space before one is its own chunk);
 *   - one invalid byte;
 *   - a run of newlines;
 *   - a run of spaces; when the run is longer than one character, ends with ' ' and is followed
 *     by a letter, digit or other character, its last ' ' is left to start the next chunk
 *     ("a   b" is "a", "  ", " b").
 *
 * Training counts the chunks of all documents, then repeatedly merges the most frequent
 * adjacent pair (counts weighted by chunk frequency; ties go to the smaller (left, right)),
 * merging every non-overlapping occurrence left to right; encoding applies the merges to each
 * chunk in the same order, so it reproduces the training segmentation.
 *
 * File format (text): first line "starmoe-bpe 1 <vocab_size>", then vocab_size - 257 lines
 * "<left> <right>", the merges in order, each line ending with '\n' and nothing else. */
#ifndef STARMOE_TOKENIZER_H
#define STARMOE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include <starmoe/error.h>

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
sm_tokenizer *sm_tokenizer_train(const char *const *docs, const size_t *lens, size_t ndocs,
                                 int vocab_size, sm_error *err);
/* Writes the file atomically (sm_atomic_write_file). */
int sm_tokenizer_save(const sm_tokenizer *t, const char *path, sm_error *err);
/* Reads and validates a file: magic and version, vocab size, the number of merge lines, ids in
 * range and defined before use, no duplicate merge, no trailing bytes. Errors name the file and
 * the line ("tok.bpe:3: ..."). */
sm_tokenizer *sm_tokenizer_load(const char *path, sm_error *err);
void sm_tokenizer_free(sm_tokenizer *t);

int sm_tokenizer_vocab_size(const sm_tokenizer *t);
/* The <|endoftext|> id, vocab_size - 1. */
int32_t sm_tokenizer_eot(const sm_tokenizer *t);

/* Encodes bytes (never emits the special token). *ids is malloc'd (never NULL on success, even
 * for n = 0). */
int sm_tokenizer_encode(const sm_tokenizer *t, const char *text, size_t len, int32_t **ids,
                        size_t *n, sm_error *err);
/* Decodes ids to bytes (the special token decodes to nothing); NUL-terminated malloc'd buffer
 * of *len bytes. Ids outside the vocabulary are an error naming the position. */
char *sm_tokenizer_decode(const sm_tokenizer *t, const int32_t *ids, size_t n, size_t *len,
                          sm_error *err);
/* Bytes a token stands for: 0 for the special token, -1 for an id outside the vocabulary. */
int sm_tokenizer_token_bytes(const sm_tokenizer *t, int32_t id);

/* An encoder keeps a cache of encoded chunks across calls, which makes encoding many small
 * documents fast. One per thread; it must not outlive its tokenizer. */
typedef struct sm_encoder sm_encoder;
sm_encoder *sm_encoder_new(const sm_tokenizer *t, sm_error *err);
/* Appends the ids of text to the growing array *ids (*n used, *cap allocated; realloc'd as
 * needed). On failure *ids stays valid (and owned by the caller). */
int sm_encoder_append(sm_encoder *e, const char *text, size_t len, int32_t **ids, size_t *n,
                      size_t *cap, sm_error *err);
void sm_encoder_free(sm_encoder *e);

/* Length in bytes of the first pre-tokenisation chunk of text (0 only when len is 0). */
size_t sm_tokenizer_chunk(const char *text, size_t len);

/* Helpers shared with the dataset reader. */
/* 1 when the n bytes are valid UTF-8 (strict: no overlong forms, surrogates or code points
 * above U+10FFFF), else 0. */
int sm_utf8_valid(const char *s, size_t n);
/* Grows the malloc'd array whose pointer is at pp (elements of elem bytes, *cap allocated) to
 * hold at least need elements, doubling; 0 or -1 when out of memory (the array is kept). */
int sm_grow(void *pp, size_t *cap, size_t need, size_t elem);
#define SM_GROW(arr, cap, need) sm_grow(&(arr), &(cap), (need), sizeof *(arr))
/* The splitmix64 finaliser: a bijective 64-bit mix, for hashing and seeding. */
uint64_t sm_mix64(uint64_t z);

#endif
