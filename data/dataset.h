/* Training data: reading a text corpus (a file or a folder) into documents, a deterministic
 * train/validation split, tokenisation into packed token streams, and a seeded batch reader
 * whose position (epoch, cursor) is all a checkpoint needs to resume exactly.
 *
 * Corpus rules: a folder is read recursively, entries in strcmp order of their names; entries
 * whose name starts with '.' and symbolic links are ignored, as is anything that is neither a
 * regular file nor a folder; a file that is not valid UTF-8 (sm_utf8_valid) is skipped and
 * counted in *skipped. A path named directly is read whatever its name. With a doc_sep, a line
 * equal to doc_sep (before its '\n' and an optional '\r') separates documents and is not part
 * of them; a document keeps the newline of its last line. Without one, each file is one
 * document. Documents made only of ASCII whitespace are dropped. */
#ifndef STARMOE_DATASET_H
#define STARMOE_DATASET_H

#include <stddef.h>
#include <stdint.h>
#include <starmoe/error.h>
#include "data/tokenizer.h"

typedef struct sm_dataset {
    int32_t *train, *val;          /* packed token streams: documents, each followed by
                                      <|endoftext|> (NULL when empty) */
    size_t ntrain, nval;           /* tokens */
    size_t train_bytes, val_bytes; /* UTF-8 bytes of text behind each stream (for bits per byte) */
    size_t ndocs;
} sm_dataset;

/* Reads `path` (see the corpus rules above), holds out document i for validation when a hash
 * of (seed, i) mapped to [0, 1) is below val_fraction (deterministic for a seed), tokenizes
 * each document and packs it, followed by <|endoftext|>, into its stream. Errors: missing path,
 * empty corpus (no text), val_fraction outside [0, 0.5]. */
int sm_dataset_build(sm_dataset *ds, const sm_tokenizer *tok, const char *path,
                     const char *doc_sep, double val_fraction, uint64_t seed, size_t *skipped,
                     sm_error *err);
/* The documents alone (for training the tokenizer): *docs[i] is a NUL-terminated malloc'd copy
 * of *lens[i] bytes. An empty corpus is an error. */
int sm_corpus_read(const char *path, const char *doc_sep, char ***docs, size_t **lens,
                   size_t *ndocs, size_t *skipped, sm_error *err);
void sm_corpus_free(char **docs, size_t *lens, size_t ndocs);
void sm_dataset_free(sm_dataset *ds);

/* Batches of B sequences of S tokens cut from a stream at windows: window w holds tokens
 * [w*S, w*S+S] (the inputs are the first S, the targets the last S), so there are (n-1)/S
 * windows, each used once per epoch. The order is a Fisher-Yates shuffle driven by splitmix64
 * seeded with a hash of (seed, epoch); a new order is drawn when an epoch ends.
 *
 * Training: sm_reader_init once, sm_reader_next per step; a checkpoint saves (epoch, cursor)
 * and sm_reader_seek restores them. Validation: a reader on the val stream with a fixed seed;
 * before each evaluation call sm_reader_seek(r, 0, 0) and read the first k batches, so every
 * evaluation sees the same windows (all distinct when k*B <= nwin). */
typedef struct sm_batch_reader {
    const int32_t *stream;
    size_t n;
    int S;
    uint64_t seed, epoch;
    size_t cursor;               /* position in the current epoch's order: with epoch, all a
                                    checkpoint must save */
    size_t nwin;
    uint32_t *order;
} sm_batch_reader;

/* Errors: S < 1, a stream with less than one window ("corpus too small for one sequence of S
 * tokens"), more than 2^32 - 1 windows. The reader keeps a pointer to the stream. */
int sm_reader_init(sm_batch_reader *r, const int32_t *stream, size_t n, int S, uint64_t seed,
                   sm_error *err);
/* Fills ids/targets [B*S]; wraps into the next epoch as needed. After the call cursor < nwin. */
void sm_reader_next(sm_batch_reader *r, int B, int32_t *ids, int32_t *targets);
/* Jumps to a saved (epoch, cursor) position exactly (a cursor >= nwin moves on whole epochs). */
void sm_reader_seek(sm_batch_reader *r, uint64_t epoch, size_t cursor);
void sm_reader_free(sm_batch_reader *r);

#endif
