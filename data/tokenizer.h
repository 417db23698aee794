/* Byte-level BPE tokenizer, the parts behind include/starmoe/tokenizer.h (the vocabulary, the
 * file format and the public calls are described there).
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
 * chunk in the same order, so it reproduces the training segmentation. */
#ifndef STARMOE_DATA_TOKENIZER_H
#define STARMOE_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include <starmoe/error.h>
#include <starmoe/tokenizer.h>

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
