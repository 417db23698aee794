/* Tests of data/dataset.c: reading a folder corpus (sorted order, "%"-separated documents, CRLF
 * separators, skipped non-UTF-8 file, ignored hidden file and symlink), packing with
 * <|endoftext|>, the seeded validation split, the batch reader (determinism, every window once
 * per epoch, shifted targets, exact seek), the errors, and, when the Debian fortunes are
 * installed, tokenizer training and an exact round trip of that whole corpus. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data/dataset.h"
#include "tests/tap.h"

#define FORTUNES "/usr/share/games/fortunes"

static char dir[] = "/tmp/starmoe-ds-XXXXXX";
static char path[512];

static const char *in_dir(const char *name)
{
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static void write_file(const char *name, const char *text, size_t n)
{
    FILE *f = fopen(in_dir(name), "wb");
    if (!f || fwrite(text, 1, n, f) != n) tap_diag("cannot write %s", path);
    if (f) fclose(f);
}

static void write_text(const char *name, const char *text) { write_file(name, text, strlen(text)); }

static void tap_skip(const char *why)
{
    printf("ok %d # SKIP %s\n", ++tap_n, why);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The documents of the small corpus, in reading order (a.txt, b/c.txt, crlf.txt). */
static const char *const expected_docs[] = {
    "doc one\n", "doc two\nline two\n", "last doc", "another document\n", "x\r\n", "y\r\n",
};
#define NEXPECTED (sizeof expected_docs / sizeof *expected_docs)

static void make_corpus(void)
{
    write_text("a.txt", "doc one\n%\ndoc two\nline two\n%\n%\n  \n%\nlast doc");
    mkdir(in_dir("b"), 0700);
    write_text("b/c.txt", "another document\n");
    write_text("bad.bin", "not \xff\xfe UTF-8\n");
    write_text(".hidden", "hidden text\n%\nmore\n");
    write_text("crlf.txt", "x\r\n%\r\ny\r\n");
    if (symlink("a.txt", in_dir("link.txt")) != 0) tap_diag("cannot create %s", path);
    mkdir(in_dir("empty"), 0700);
    write_text("empty/.hidden", "text\n");
    write_text("empty/bad.bin", "\xff");
}

static void test_corpus(void)
{
    char **docs;
    size_t *lens, n = 0, skipped = 99, same = 0;
    sm_error err = {{0}};
    int rc = sm_corpus_read(dir, "%", &docs, &lens, &n, &skipped, &err);
    tap_ok(rc == 0 && n == NEXPECTED, "%%-separated folder corpus: %zu documents %s", n, err.msg);
    tap_ok(skipped == 2, "the two non-UTF-8 files are skipped and counted (%zu)", skipped);
    for (size_t i = 0; rc == 0 && i < n && i < NEXPECTED; i++)
        same += lens[i] == strlen(expected_docs[i]) && strcmp(docs[i], expected_docs[i]) == 0;
    tap_ok(same == NEXPECTED, "documents in sorted order, separators, blank documents, hidden "
           "files and symlinks dropped");
    if (rc == 0) sm_corpus_free(docs, lens, n);

    rc = sm_corpus_read(dir, NULL, &docs, &lens, &n, NULL, &err);
    tap_ok(rc == 0 && n == 3 && strncmp(docs[0], "doc one\n%\n", 10) == 0,
           "without a separator each file is one document (%zu)", n);
    if (rc == 0) sm_corpus_free(docs, lens, n);

    rc = sm_corpus_read(in_dir("b/c.txt"), "%", &docs, &lens, &n, NULL, &err);
    tap_ok(rc == 0 && n == 1 && strcmp(docs[0], expected_docs[3]) == 0, "a single file path");
    if (rc == 0) sm_corpus_free(docs, lens, n);
}

static void test_corpus_errors(void)
{
    char **docs;
    size_t *lens, n, skipped = 0;
    sm_error err = {{0}};
    tap_ok(sm_corpus_read(in_dir("nope"), "%", &docs, &lens, &n, NULL, &err) == -1 &&
               strstr(err.msg, path) && strstr(err.msg, "not found"),
           "missing path: %s", err.msg);
    tap_ok(sm_corpus_read(in_dir("empty"), "%", &docs, &lens, &n, &skipped, &err) == -1 &&
               strstr(err.msg, path) && strstr(err.msg, "empty corpus") && skipped == 1,
           "a folder without text: %s", err.msg);
    tap_ok(sm_corpus_read(in_dir("bad.bin"), NULL, &docs, &lens, &n, NULL, &err) == -1 &&
               strstr(err.msg, "empty corpus"),
           "a single non-UTF-8 file: %s", err.msg);
    mkfifo(in_dir("fifo.txt"), 0600);
    alarm(10);   /* a regression that blocks on the FIFO fails instead of hanging */
    tap_ok(sm_corpus_read(in_dir("fifo.txt"), NULL, &docs, &lens, &n, NULL, &err) == -1 &&
               strstr(err.msg, "fifo.txt: cannot open: not a regular file (a FIFO)"),
           "a FIFO as corpus, without blocking: %s", err.msg);
    alarm(0);
    unlink(in_dir("fifo.txt"));
    symlink("loop.txt", in_dir("loop.txt"));
    tap_ok(sm_corpus_read(in_dir("loop.txt"), NULL, &docs, &lens, &n, NULL, &err) == -1 &&
               strstr(err.msg, "loop.txt: cannot open: a symbolic link loop"),
           "a symbolic link loop is not reported as missing: %s", err.msg);
    unlink(in_dir("loop.txt"));
}

static size_t count_id(const int32_t *ids, size_t n, int32_t id)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ids[i] == id;
    return c;
}

/* The stream decodes, document by document between the <|endoftext|> ids, to docs. */
static int stream_matches(const sm_tokenizer *tok, const int32_t *ids, size_t n,
                          const char *const *docs, size_t ndocs)
{
    size_t d = 0, start = 0, len;
    sm_error err;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] != sm_tokenizer_eot(tok)) continue;
        char *text = sm_tokenizer_decode(tok, ids + start, i - start, &len, &err);
        int ok = text && d < ndocs && len == strlen(docs[d]) && memcmp(text, docs[d], len) == 0;
        free(text);
        if (!ok) return 0;
        d++;
        start = i + 1;
    }
    return d == ndocs && start == n;
}

static void test_build(const sm_tokenizer *tok)
{
    sm_dataset ds;
    sm_error err = {{0}};
    size_t bytes = 0, skipped = 0;
    for (size_t i = 0; i < NEXPECTED; i++) bytes += strlen(expected_docs[i]);
    int rc = sm_dataset_build(&ds, tok, dir, "%", 0.0, 1, &skipped, &err);
    tap_ok(rc == 0 && ds.ndocs == NEXPECTED && ds.nval == 0 && !ds.val && skipped == 2,
           "dataset of %zu documents, no validation at fraction 0 %s", ds.ndocs, err.msg);
    tap_ok(count_id(ds.train, ds.ntrain, sm_tokenizer_eot(tok)) == NEXPECTED &&
               ds.ntrain > 0 && ds.train[ds.ntrain - 1] == sm_tokenizer_eot(tok),
           "one <|endoftext|> after each document");
    tap_ok(stream_matches(tok, ds.train, ds.ntrain, expected_docs, NEXPECTED),
           "the packed stream decodes to the documents in order");
    tap_ok(ds.train_bytes == bytes && ds.val_bytes == 0, "train bytes %zu (want %zu)",
           ds.train_bytes, bytes);
    sm_dataset_free(&ds);

    const double bad[] = {-0.1, 0.6, NAN};
    for (int i = 0; i < 3; i++)
        tap_ok(sm_dataset_build(&ds, tok, dir, "%", bad[i], 1, NULL, &err) == -1 &&
                   strstr(err.msg, "val_fraction") && !ds.train,
               "val_fraction %g rejected: %s", bad[i], err.msg);
    tap_ok(sm_dataset_build(&ds, tok, in_dir("empty"), "%", 0.1, 1, NULL, &err) == -1 &&
               strstr(err.msg, "empty corpus"),
           "empty corpus: %s", err.msg);
}

/* A file of 2000 "%"-separated documents of varied lengths. */
static void make_split_corpus(void)
{
    enum { NDOC = 2000 };
    static char text[NDOC * 64];
    size_t n = 0;
    for (int i = 0; i < NDOC; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "document %d says %.*s\n%%\n", i,
                              i % 17, "hello hello hello hello");
    mkdir(in_dir("split"), 0700);
    write_file("split/docs.txt", text, n);
}

static int same_dataset(const sm_dataset *a, const sm_dataset *b)
{
    return a->ntrain == b->ntrain && a->nval == b->nval &&
           memcmp(a->train, b->train, a->ntrain * sizeof *a->train) == 0 &&
           (a->nval == 0 || memcmp(a->val, b->val, a->nval * sizeof *a->val) == 0);
}

static void test_split(const sm_tokenizer *tok)
{
    sm_dataset a, b, c;
    sm_error err = {{0}};
    make_split_corpus();
    int rc = sm_dataset_build(&a, tok, in_dir("split"), "%", 0.2, 42, NULL, &err) |
             sm_dataset_build(&b, tok, path, "%", 0.2, 42, NULL, &err) |
             sm_dataset_build(&c, tok, path, "%", 0.2, 43, NULL, &err);
    tap_ok(rc == 0, "three builds of the split corpus %s", err.msg);
    if (rc) return;
    int32_t eot = sm_tokenizer_eot(tok);
    size_t nval = count_id(a.val, a.nval, eot), ntrain = count_id(a.train, a.ntrain, eot);
    tap_ok(a.ndocs == 2000 && nval + ntrain == 2000, "2000 documents: %zu train, %zu val",
           ntrain, nval);
    tap_ok(nval > 340 && nval < 460, "validation holds about 20%% of the documents (%zu)", nval);
    double fb = (double)a.val_bytes / (double)(a.val_bytes + a.train_bytes);
    tap_ok(fb > 0.16 && fb < 0.24, "and about 20%% of the bytes (%.3f)", fb);
    tap_ok(same_dataset(&a, &b), "the split is deterministic for a seed");
    tap_ok(!same_dataset(&a, &c), "another seed gives another split");
    sm_dataset_free(&a);
    sm_dataset_free(&b);
    sm_dataset_free(&c);
}

/* Reads nb batches of B from r into ids/targets (nb*B*S each). */
static void read_batches(sm_batch_reader *r, int nb, int B, int32_t *ids, int32_t *targets)
{
    for (int i = 0; i < nb; i++)
        sm_reader_next(r, B, ids + (size_t)i * B * r->S, targets + (size_t)i * B * r->S);
}

/* Reads one epoch window by window: each window once, inputs at w*S, targets shifted. */
static int epoch_ok(sm_batch_reader *r)
{
    size_t S = (size_t)r->S, bad = 0;
    int32_t *ids = malloc(S * sizeof *ids), *tg = malloc(S * sizeof *tg);
    char *seen = calloc(r->nwin, 1);
    for (size_t k = 0; ids && tg && seen && k < r->nwin; k++) {
        sm_reader_next(r, 1, ids, tg);
        size_t w = (size_t)ids[0] / S;
        bad += ids[0] % S != 0 || w >= r->nwin || seen[w]++;
        for (size_t i = 0; i < S; i++) bad += ids[i] != ids[0] + (int32_t)i || tg[i] != ids[i] + 1;
    }
    int ok = ids && tg && seen && bad == 0;
    free(ids);
    free(tg);
    free(seen);
    return ok;
}

static void test_reader(void)
{
    enum { N = 1000, S = 7, B = 4, NB = 30 };
    static int32_t stream[N], x[NB * B * S], y[NB * B * S], tx[NB * B * S], ty[NB * B * S];
    sm_batch_reader r1, r2, r3;
    sm_error err = {{0}};
    static uint32_t order0[(N - 1) / S];
    for (int i = 0; i < N; i++) stream[i] = i;
    int rc = sm_reader_init(&r1, stream, N, S, 5, &err) |
             sm_reader_init(&r2, stream, N, S, 5, &err) | sm_reader_init(&r3, stream, N, S, 6, &err);
    tap_ok(rc == 0 && r1.nwin == (N - 1) / S, "readers over %d tokens: %zu windows of %d", N,
           r1.nwin, S);
    if (rc) return;
    read_batches(&r1, NB, B, x, tx);
    read_batches(&r2, NB, B, y, ty);
    tap_ok(memcmp(x, y, sizeof x) == 0 && memcmp(tx, ty, sizeof tx) == 0,
           "same seed, same batches");
    read_batches(&r3, NB, B, y, ty);
    tap_ok(memcmp(x, y, sizeof x) != 0, "another seed, other batches");

    sm_reader_seek(&r2, 0, 0);
    memcpy(order0, r2.order, sizeof order0);
    tap_ok(epoch_ok(&r2), "epoch 0 uses every window exactly once, targets shifted");
    tap_ok(r2.epoch == 1 && r2.cursor == 0, "then the reader is at epoch 1, cursor 0");
    tap_ok(memcmp(order0, r2.order, sizeof order0) != 0, "each epoch is reshuffled");
    tap_ok(epoch_ok(&r2), "epoch 1 uses every window exactly once too");

    read_batches(&r1, 20, B, x, tx);          /* 50 batches of 4 > 142 windows: into epoch 1 */
    uint64_t epoch = r1.epoch;
    size_t cursor = r1.cursor;
    read_batches(&r1, NB, B, x, tx);
    sm_reader_seek(&r2, epoch, cursor);
    read_batches(&r2, NB, B, y, ty);
    tap_ok(epoch == 1 && memcmp(x, y, sizeof x) == 0 && memcmp(tx, ty, sizeof tx) == 0,
           "seek to (epoch %llu, cursor %zu) reproduces the next %d batches",
           (unsigned long long)epoch, cursor, NB);
    sm_reader_free(&r1);
    sm_reader_free(&r2);
    sm_reader_free(&r3);

    tap_ok(sm_reader_init(&r1, stream, S, S, 1, &err) == -1 && strstr(err.msg, "too small") &&
               !r1.order,
           "a stream shorter than one window: %s", err.msg);
    tap_ok(sm_reader_init(&r1, stream, S + 1, S, 1, &err) == 0 && r1.nwin == 1,
           "a stream of exactly S+1 tokens has one window");
    read_batches(&r1, 1, B, x, tx);
    tap_ok(x[0] == 0 && x[S] == 0 && tx[S - 1] == S && r1.cursor == 0 && r1.epoch == B,
           "one window repeats, one epoch per sequence");
    sm_reader_free(&r1);
    tap_ok(sm_reader_init(&r1, stream, N, 0, 1, &err) == -1 && strstr(err.msg, "length 0"),
           "S = 0 rejected: %s", err.msg);
}

/* Trains vocab 512 on the fortunes, encodes every document, checks the exact round trip. */
static void test_fortunes(void)
{
    char **docs;
    size_t *lens, ndocs, skipped, bytes = 0, ntok = 0, cap = 0, bad = 0;
    sm_error err = {{0}};
    struct stat st;
    if (stat(FORTUNES, &st) != 0) {
        tap_skip(FORTUNES " not installed (Debian packages fortunes, fortunes-zh)");
        return;
    }
    if (sm_corpus_read(FORTUNES, "%", &docs, &lens, &ndocs, &skipped, &err)) {
        tap_ok(0, "read %s: %s", FORTUNES, err.msg);
        return;
    }
    for (size_t i = 0; i < ndocs; i++) bytes += lens[i];
    double t0 = now();
    sm_tokenizer *tok = sm_tokenizer_train((const char *const *)docs, lens, ndocs, 512, &err);
    double t1 = now();
    sm_encoder *enc = tok ? sm_encoder_new(tok, &err) : NULL;
    int32_t *ids = NULL;
    size_t *start = malloc((ndocs + 1) * sizeof *start);
    for (size_t i = 0; enc && start && i < ndocs && !bad; i++) {
        start[i] = ntok;
        bad += sm_encoder_append(enc, docs[i], lens[i], &ids, &ntok, &cap, &err) != 0;
    }
    double t2 = now();
    tap_ok(tok && enc && start && !bad && sm_tokenizer_vocab_size(tok) == 512,
           "fortunes: %zu documents, %zu bytes, %zu files skipped, vocab 512 %s", ndocs, bytes,
           skipped, err.msg);
    for (size_t i = 0; tok && start && !bad && i < ndocs; i++) {
        size_t len, end = i + 1 < ndocs ? start[i + 1] : ntok;
        char *text = sm_tokenizer_decode(tok, ids + start[i], end - start[i], &len, &err);
        bad += !text || len != lens[i] || memcmp(text, docs[i], len) != 0;
        free(text);
    }
    tap_ok(tok && !bad, "the whole corpus round-trips exactly (%zu tokens)", ntok);
    tap_diag("fortunes: train vocab 512 %.2f s, encode %.2f s, %.3f bytes/token", t1 - t0,
             t2 - t1, ntok ? (double)bytes / (double)ntok : 0.0);
    free(start);
    free(ids);
    sm_encoder_free(enc);
    sm_tokenizer_free(tok);
    sm_corpus_free(docs, lens, ndocs);
}

static void remove_tree(void)
{
    const char *files[] = {"a.txt", "b/c.txt", "bad.bin", ".hidden", "crlf.txt", "link.txt",
                           "empty/.hidden", "empty/bad.bin", "split/docs.txt"};
    const char *dirs[] = {"b", "empty", "split"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) unlink(in_dir(files[i]));
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) rmdir(in_dir(dirs[i]));
    rmdir(dir);
}

/* A tokenizer trained on the small corpus. */
static sm_tokenizer *small_tokenizer(void)
{
    size_t lens[NEXPECTED];
    sm_error err = {{0}};
    for (size_t i = 0; i < NEXPECTED; i++) lens[i] = strlen(expected_docs[i]);
    sm_tokenizer *tok = sm_tokenizer_train(expected_docs, lens, NEXPECTED, 300, &err);
    tap_ok(tok != NULL, "tokenizer for the small corpus %s", err.msg);
    return tok;
}

int main(void)
{
    if (!mkdtemp(dir)) return tap_ok(0, "mkdtemp"), tap_done();
    make_corpus();
    test_corpus();
    test_corpus_errors();
    sm_tokenizer *tok = small_tokenizer();
    if (tok) {
        test_build(tok);
        test_split(tok);
    }
    sm_tokenizer_free(tok);
    test_reader();
    test_fortunes();
    remove_tree();
    return tap_done();
}
