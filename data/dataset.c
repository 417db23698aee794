/* Corpus reading, train/validation split, token packing and the seeded batch reader (see
 * dataset.h). */
#include "data/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/file.h"

/* ---- corpus ---- */

typedef struct corpus {
    char **docs;
    size_t *lens;
    size_t n, dcap, lcap;
    size_t skipped;
    const char *doc_sep;
} corpus;

void sm_corpus_free(char **docs, size_t *lens, size_t ndocs)
{
    for (size_t i = 0; docs && i < ndocs; i++) free(docs[i]);
    free(docs);
    free(lens);
}

/* Only ASCII whitespace (' ' and '\t' through '\r')? */
static int is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && (s[i] < '\t' || s[i] > '\r')) return 0;
    return 1;
}

/* Appends a copy of the document (unless blank). */
static int add_doc(corpus *c, const char *s, size_t n)
{
    if (is_blank(s, n)) return 0;
    char *copy = malloc(n + 1);
    if (!copy || SM_GROW(c->docs, c->dcap, c->n + 1) || SM_GROW(c->lens, c->lcap, c->n + 1)) {
        free(copy);
        return -1;
    }
    memcpy(copy, s, n);
    copy[n] = '\0';
    c->docs[c->n] = copy;
    c->lens[c->n++] = n;
    return 0;
}

/* Is the line (n bytes, maybe ending in "\n" or "\r\n") equal to sep? */
static int is_separator(const char *line, size_t n, const char *sep)
{
    if (n > 0 && line[n - 1] == '\n') n--;
    if (n > 0 && line[n - 1] == '\r') n--;
    return n == strlen(sep) && memcmp(line, sep, n) == 0;
}

/* Splits text at separator lines. */
static int split_docs(corpus *c, const char *text, size_t len)
{
    size_t start = 0, pos = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) + 1 : len;
        if (is_separator(text + pos, end - pos, c->doc_sep)) {
            if (add_doc(c, text + start, pos - start)) return -1;
            start = end;
        }
        pos = end;
    }
    return add_doc(c, text + start, len - start);
}

static int read_text_file(corpus *c, const char *path, sm_error *err)
{
    size_t len;
    char *text = sm_read_file(path, &len, err);
    int rc = 0;
    if (!text) return -1;
    if (!sm_utf8_valid(text, len)) c->skipped++;
    else if (c->doc_sep ? split_docs(c, text, len) : add_doc(c, text, len))
        rc = sm_fail(err, "%s: out of memory", path);
    free(text);
    return rc;
}

static int visible(const struct dirent *e) { return e->d_name[0] != '.'; }

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int read_folder(corpus *c, const char *dir, sm_error *err);

/* One folder entry: recurse into folders, read regular files, ignore the rest. */
static int read_entry(corpus *c, const char *dir, const char *name, sm_error *err)
{
    struct stat st;
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n);
    int rc = 0;
    if (!path) return sm_fail(err, "%s: out of memory", dir);
    snprintf(path, n, "%s/%s", dir, name);
    if (lstat(path, &st) != 0) rc = sm_fail(err, "%s: %s", path, sm_file_why(errno));
    else if (S_ISDIR(st.st_mode)) rc = read_folder(c, path, err);
    else if (S_ISREG(st.st_mode)) rc = read_text_file(c, path, err);
    free(path);
    return rc;
}

static int read_folder(corpus *c, const char *dir, sm_error *err)
{
    struct dirent **names;
    int n = scandir(dir, &names, visible, by_name), rc = 0;
    if (n < 0) return sm_fail(err, "%s: cannot list the folder: %s", dir, strerror(errno));
    for (int i = 0; i < n; i++) {
        if (!rc) rc = read_entry(c, dir, names[i]->d_name, err);
        free(names[i]);
    }
    free(names);
    return rc;
}

int sm_corpus_read(const char *path, const char *doc_sep, char ***docs, size_t **lens,
                   size_t *ndocs, size_t *skipped, sm_error *err)
{
    corpus c = {.doc_sep = doc_sep};
    struct stat st;
    int rc;
    if (stat(path, &st) != 0)
        return sm_fail(err, "%s: cannot open: %s", path, sm_file_why(errno));
    rc = S_ISDIR(st.st_mode) ? read_folder(&c, path, err) : read_text_file(&c, path, err);
    if (!rc && c.n == 0)
        rc = sm_fail(err, "%s: empty corpus: no text (%zu files skipped as not UTF-8)", path,
                     c.skipped);
    if (skipped) *skipped = c.skipped;
    if (rc) {
        sm_corpus_free(c.docs, c.lens, c.n);
        return -1;
    }
    *docs = c.docs;
    *lens = c.lens;
    *ndocs = c.n;
    return 0;
}

/* ---- dataset ---- */

/* splitmix64: the state advances by the golden gamma, the output is its mix. */
static uint64_t splitmix_next(uint64_t *state)
{
    return sm_mix64(*state += 0x9E3779B97F4A7C15ull);
}

/* A uniform [0, 1) value from a hash of (seed, i). */
static double hash_unit(uint64_t seed, uint64_t i)
{
    return (double)(sm_mix64(sm_mix64(seed) + i) >> 11) * (1.0 / 9007199254740992.0);
}

typedef struct token_stream {
    int32_t *ids;
    size_t n, cap, bytes;
} token_stream;

/* Tokenizes one document and appends it, then <|endoftext|>. */
static int pack_doc(token_stream *s, sm_encoder *e, int32_t eot, const char *doc, size_t len,
                    const char *path, sm_error *err)
{
    if (sm_encoder_append(e, doc, len, &s->ids, &s->n, &s->cap, err)) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        return sm_fail(err, "%s: %s", path, msg);
    }
    if (SM_GROW(s->ids, s->cap, s->n + 1)) return sm_fail(err, "%s: out of memory", path);
    s->ids[s->n++] = eot;
    s->bytes += len;
    return 0;
}

static int pack_corpus(sm_dataset *ds, const sm_tokenizer *tok, char **docs, const size_t *lens,
                       size_t ndocs, double val_fraction, uint64_t seed, const char *path,
                       sm_error *err)
{
    token_stream split[2] = {{0}};     /* train, val */
    sm_encoder *e = sm_encoder_new(tok, err);
    int rc = e ? 0 : -1;
    for (size_t d = 0; d < ndocs && !rc; d++) {
        token_stream *s = &split[hash_unit(seed, d) < val_fraction];
        rc = pack_doc(s, e, sm_tokenizer_eot(tok), docs[d], lens[d], path, err);
    }
    sm_encoder_free(e);
    *ds = (sm_dataset){split[0].ids, split[1].ids, split[0].n, split[1].n,
                       split[0].bytes, split[1].bytes, ndocs};
    if (rc) sm_dataset_free(ds);
    return rc;
}

int sm_dataset_build(sm_dataset *ds, const sm_tokenizer *tok, const char *path,
                     const char *doc_sep, double val_fraction, uint64_t seed, size_t *skipped,
                     sm_error *err)
{
    char **docs;
    size_t *lens, ndocs;
    memset(ds, 0, sizeof *ds);
    if (!(val_fraction >= 0 && val_fraction <= 0.5))
        return sm_fail(err, "%s: val_fraction %g outside [0, 0.5]", path, val_fraction);
    if (sm_corpus_read(path, doc_sep, &docs, &lens, &ndocs, skipped, err)) return -1;
    int rc = pack_corpus(ds, tok, docs, lens, ndocs, val_fraction, seed, path, err);
    sm_corpus_free(docs, lens, ndocs);
    return rc;
}

void sm_dataset_free(sm_dataset *ds)
{
    free(ds->train);
    free(ds->val);
    memset(ds, 0, sizeof *ds);
}

/* ---- batch reader ---- */

/* Uniform in [0, bound) by rejection (no modulo bias). */
static uint64_t below(uint64_t *state, uint64_t bound)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound, x;
    do x = splitmix_next(state);
    while (x >= limit);
    return x % bound;
}

/* The current epoch's order: a Fisher-Yates shuffle of the windows seeded by (seed, epoch). */
static void shuffle(sm_batch_reader *r)
{
    uint64_t state = sm_mix64(sm_mix64(r->seed) + r->epoch);
    for (size_t i = 0; i < r->nwin; i++) r->order[i] = (uint32_t)i;
    for (size_t i = r->nwin - 1; i > 0; i--) {
        size_t j = (size_t)below(&state, i + 1);
        uint32_t t = r->order[i];
        r->order[i] = r->order[j];
        r->order[j] = t;
    }
}

int sm_reader_init(sm_batch_reader *r, const int32_t *stream, size_t n, int S, uint64_t seed,
                   sm_error *err)
{
    memset(r, 0, sizeof *r);
    if (S < 1) return sm_fail(err, "batch reader: sequence length %d must be at least 1", S);
    if (n < (size_t)S + 1)
        return sm_fail(err, "corpus too small for one sequence of %d tokens: the stream holds "
                       "%zu tokens, a window needs %d", S, n, S + 1);
    size_t nwin = (n - 1) / (size_t)S;
    if (nwin > UINT32_MAX)
        return sm_fail(err, "batch reader: %zu windows of %d tokens, at most %u", nwin, S,
                       UINT32_MAX);
    r->order = malloc(nwin * sizeof *r->order);
    if (!r->order) return sm_fail(err, "batch reader: out of memory for %zu windows", nwin);
    *r = (sm_batch_reader){stream, n, S, seed, 0, 0, nwin, r->order};
    shuffle(r);
    return 0;
}

void sm_reader_next(sm_batch_reader *r, int B, int32_t *ids, int32_t *targets)
{
    size_t S = (size_t)r->S;
    for (size_t b = 0; b < (size_t)B; b++) {
        const int32_t *win = r->stream + (size_t)r->order[r->cursor] * S;
        memcpy(ids + b * S, win, S * sizeof *ids);
        memcpy(targets + b * S, win + 1, S * sizeof *targets);
        if (++r->cursor == r->nwin) sm_reader_seek(r, r->epoch + 1, 0);
    }
}

void sm_reader_seek(sm_batch_reader *r, uint64_t epoch, size_t cursor)
{
    r->epoch = epoch + cursor / r->nwin;
    r->cursor = cursor % r->nwin;
    shuffle(r);
}

void sm_reader_free(sm_batch_reader *r)
{
    free(r->order);
    memset(r, 0, sizeof *r);
}
