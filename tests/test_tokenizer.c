/* Tests of data/tokenizer.c: the pre-tokenisation rules, training (vocabulary layout, early stop,
 * tie-breaking, determinism, CJK characters never merged together), exact encode/decode round
 * trips on English, Chinese, mixed text, emoji, invalid UTF-8 and every byte value, the
 * special token, save/load, and one malformed file per loader check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "data/tokenizer.h"
#include "tests/tap.h"
#include "tests/testutil.h"

static char dir[] = "/tmp/starmoe-tok-XXXXXX";
static char path[512];

static const char *in_dir(const char *name)
{
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static void write_text(const char *p, const char *text)
{
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(text, 1, strlen(text), f) != strlen(text)) tap_diag("cannot write %s", p);
    if (f) fclose(f);
}

static const char *const corpus_lines[] = {
    "The quick brown fox jumps over the lazy dog. The dog sleeps in the sun.\n",
    "In the beginning the tokenizer learns the most frequent pairs of bytes.\n",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。\n",
    "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。\n",
    "Mixed text: 明月 and the moon, 2024 years, 12345 numbers!\n",
    "    indented code(x) { return x + 1; }\n\n\n",
};
#define NLINES (sizeof corpus_lines / sizeof *corpus_lines)
#define REPEAT 20

/* The corpus lines, each repeated REPEAT times as separate documents. */
static sm_tokenizer *train_sample(int vocab, sm_error *err)
{
    const char *docs[NLINES * REPEAT];
    size_t lens[NLINES * REPEAT];
    for (size_t i = 0; i < NLINES * REPEAT; i++) {
        docs[i] = corpus_lines[i % NLINES];
        lens[i] = strlen(docs[i]);
    }
    return sm_tokenizer_train(docs, lens, NLINES * REPEAT, vocab, err);
}

/* encode then decode gives back exactly the n bytes; returns the token count (or -1). */
static long round_trip(const sm_tokenizer *t, const char *s, size_t n, const char *what)
{
    sm_error err = {{0}};
    int32_t *ids = NULL;
    size_t nids = 0, len = 0;
    char *back = NULL;
    int eot_seen = 0;
    if (sm_tokenizer_encode(t, s, n, &ids, &nids, &err) == 0)
        back = sm_tokenizer_decode(t, ids, nids, &len, &err);
    for (size_t i = 0; i < nids; i++) eot_seen |= ids[i] == sm_tokenizer_eot(t);
    int ok = ids && back && len == n && memcmp(back, s, n) == 0 && back[n] == '\0' && !eot_seen;
    tap_ok(ok, "round trip of %s: %zu bytes -> %zu tokens %s", what, n, nids, err.msg);
    free(ids);
    free(back);
    return ok ? (long)nids : -1;
}

static void test_chunks(void)
{
    static const struct { const char *text; size_t want; const char *what; } cases[] = {
        {"Hello world", 5, "a word stops at a space"},
        {" world!", 6, "a leading space joins the word"},
        {"a   b", 1, "letters"},
        {"   b", 2, "a space run leaves its last space to the word"},
        {"  \n\n x", 2, "spaces before a newline stay together"},
        {"\n\n\r\n  x", 4, "a newline run stands alone"},
        {"12345", 3, "at most 3 digits"},
        {" 2024", 4, "a space and 3 digits"},
        {"...!?x", 5, "a punctuation run"},
        {" (x)", 2, "a space joins punctuation"},
        {"h\xc3\xa9llo w", 6, "a non-ASCII letter is a letter"},
        {"\xf0\x9f\x98\x80\xf0\x9f\x98\x80 x", 8, "emoji are letters"},
        {"床前明月光", 3, "one CJK character"},
        {"，疑", 3, "full-width punctuation is CJK"},
        {"a床", 1, "CJK ends a word"},
        {" 床", 1, "a space before CJK stands alone"},
        {"\xff\xfe", 1, "an invalid byte alone"},
        {"\xe5\xba", 1, "a truncated sequence is invalid bytes"},
        {"\xc0\xaf", 1, "an overlong form is invalid"},
        {"\xed\xa0\x80", 1, "a surrogate is invalid"},
        {"ab\xff", 2, "an invalid byte ends a word"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t got = sm_tokenizer_chunk(cases[i].text, strlen(cases[i].text));
        tap_ok(got == cases[i].want, "chunk: %s (got %zu want %zu)", cases[i].what, got,
               cases[i].want);
    }
    tap_ok(sm_tokenizer_chunk("", 0) == 0, "chunk of empty text is 0");
}

static void test_utf8(void)
{
    tap_ok(sm_utf8_valid("h\xc3\xa9 床 \xf0\x9f\x98\x80", 12), "valid UTF-8 accepted");
    tap_ok(!sm_utf8_valid("ab\xff", 3) && !sm_utf8_valid("\xe5\xba", 2) &&
               !sm_utf8_valid("\xf4\x90\x80\x80", 4),
           "invalid byte, truncated sequence, code point above U+10FFFF rejected");
}

static void test_vocab(const sm_tokenizer *t)
{
    sm_error err = {{0}};
    int32_t eot = sm_tokenizer_eot(t), ids[3] = {'h', 0, 'i'};
    size_t len = 99;
    tap_ok(sm_tokenizer_vocab_size(t) == 400 && eot == 399, "vocab 400, <|endoftext|> is 399");
    tap_ok(sm_tokenizer_token_bytes(t, eot) == 0 && sm_tokenizer_token_bytes(t, 'a') == 1 &&
               sm_tokenizer_token_bytes(t, 256) == 2 && sm_tokenizer_token_bytes(t, 400) == -1 &&
               sm_tokenizer_token_bytes(t, -1) == -1,
           "token_bytes: 0 for the special token, 1 for a byte, 2 for the first merge");
    ids[1] = eot;
    char *s = sm_tokenizer_decode(t, ids, 3, &len, &err);
    tap_ok(s && len == 2 && strcmp(s, "hi") == 0, "the special token decodes to nothing");
    free(s);
    ids[1] = 400;
    tap_ok(!sm_tokenizer_decode(t, ids, 3, &len, &err) && strstr(err.msg, "position 1") &&
               strstr(err.msg, "400"),
           "decode rejects an id outside the vocabulary: %s", err.msg);
    ids[1] = -3;
    tap_ok(!sm_tokenizer_decode(t, ids, 3, &len, &err) && strstr(err.msg, "position 1"),
           "decode rejects a negative id: %s", err.msg);
}

static void test_round_trips(const sm_tokenizer *t)
{
    unsigned char all[512];
    for (int i = 0; i < 256; i++) {
        all[i] = (unsigned char)i;
        all[511 - i] = (unsigned char)i;
    }
    const char *eng = "The quick brown fox jumps over the lazy dog. The dog sleeps in the sun.\n";
    long n = round_trip(t, eng, strlen(eng), "English training text");
    tap_ok(n > 0 && (size_t)n * 2 < strlen(eng), "merges compress training text (%ld tokens for "
           "%zu bytes)", n, strlen(eng));
    const char *poem = "床前明月光，疑是地上霜。";
    n = round_trip(t, poem, strlen(poem), "Chinese");
    tap_ok(n > 0 && n < (long)strlen(poem), "Chinese learned multi-byte merges (%ld tokens for "
           "%zu bytes)", n, strlen(poem));
    const char *const texts[][2] = {
        {"Unseen words: zebra quartz, 床前 the 月光 99999 ok", "mixed text"},
        {"emoji \xf0\x9f\x98\x80\xf0\x9f\x8e\x89 flag \xf0\x9f\x87\xab\xf0\x9f\x87\xb7", "emoji"},
        {"bad \xff\xfe utf8 \xe5\xba \xc0\xaf\xed\xa0\x80 end\x80", "invalid UTF-8"},
        {"", "the empty string"},
        {"text<|endoftext|>more", "the literal special-token text"},
        {"     \t\t\n\n  \r\n   x  ", "whitespace runs"},
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        round_trip(t, texts[i][0], strlen(texts[i][0]), texts[i][1]);
    round_trip(t, (const char *)all, sizeof all, "all 256 byte values, up and down");
}

/* Every CJK character boundary of the text (all 3-byte characters) is a token boundary. */
static void test_cjk_boundaries(const sm_tokenizer *t)
{
    const char *poem = "床前明月光，疑是地上霜。举头望明月";
    sm_error err;
    int32_t *ids;
    size_t n, at = 0, misses = 0;
    if (sm_tokenizer_encode(t, poem, strlen(poem), &ids, &n, &err)) {
        tap_ok(0, "encode: %s", err.msg);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        size_t end = at + (size_t)sm_tokenizer_token_bytes(t, ids[i]);
        misses += at / 3 != (end - 1) / 3;
        at = end;
    }
    tap_ok(misses == 0 && at == strlen(poem), "no token spans two CJK characters (%zu tokens)", n);
    int whole = 0;
    for (size_t i = 0; i < n; i++) whole += sm_tokenizer_token_bytes(t, ids[i]) == 3;
    tap_ok(whole > 0, "some CJK characters became single tokens (%d)", whole);
    free(ids);
}

/* Both files hold the same bytes. */
static int same_file(const char *a, const char *b)
{
    sm_error err;
    size_t na, nb;
    char *x = sm_read_file(a, &na, &err), *y = sm_read_file(b, &nb, &err);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* The two tokenizers encode the text to the same ids. */
static int same_encoding(const sm_tokenizer *a, const sm_tokenizer *b, const char *text)
{
    sm_error err;
    int32_t *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    sm_tokenizer_encode(a, text, strlen(text), &x, &nx, &err);
    sm_tokenizer_encode(b, text, strlen(text), &y, &ny, &err);
    int same = x && y && nx == ny && memcmp(x, y, nx * sizeof *x) == 0;
    free(x);
    free(y);
    return same;
}

static void test_save_load(const sm_tokenizer *t)
{
    sm_error err = {{0}};
    char first[sizeof path];
    sm_tokenizer *again = train_sample(400, &err);
    tap_ok(sm_tokenizer_save(t, in_dir("a.bpe"), &err) == 0, "save %s", err.msg);
    snprintf(first, sizeof first, "%s", path);
    tap_ok(again && sm_tokenizer_save(again, in_dir("b.bpe"), &err) == 0 &&
               same_file(first, path),
           "training twice gives the same merges");
    sm_tokenizer_free(again);

    size_t len;
    char *text = sm_read_file(first, &len, &err);
    tap_ok(text && strncmp(text, "starmoe-bpe 1 400\n", 18) == 0 && len > 18,
           "file starts with the header line");
    free(text);
    sm_tokenizer *back = sm_tokenizer_load(first, &err);
    tap_ok(back && sm_tokenizer_vocab_size(back) == 400, "load %s", err.msg);
    if (!back) return;
    tap_ok(same_encoding(t, back, "床前明月光 The quick brown fox, 2024! \xff"),
           "loaded tokenizer encodes identically");
    sm_tokenizer_free(back);
    tap_ok(sm_tokenizer_save(t, "/nonexistent-starmoe/t.bpe", &err) == -1 &&
               strstr(err.msg, "/nonexistent-starmoe/t.bpe"),
           "save into a missing folder: %s", err.msg);
}

/* Loading `text` must fail with a message naming the file, the line and `word`. */
static void expect_load_fail(const char *text, const char *line_word, const char *what)
{
    sm_error err = {{0}};
    char want[600];
    write_text(in_dir("bad.bpe"), text);
    snprintf(want, sizeof want, "%s:%s", path, line_word);
    sm_tokenizer *t = sm_tokenizer_load(path, &err);
    tap_ok(!t && strstr(err.msg, want), "rejects %s: %s", what, err.msg);
    sm_tokenizer_free(t);
}

static void test_malformed(void)
{
    expect_load_fail("", "1: missing magic", "an empty file");
    expect_load_fail("starmoe-bpf 1 257\n", "1: missing magic", "a bad magic");
    expect_load_fail("starmoe-bpe 2 257\n", "1: unsupported format version", "version 2");
    expect_load_fail("starmoe-bpe 1 100\n", "1: vocab size 100 outside", "a vocab below 257");
    expect_load_fail("starmoe-bpe 1 99999999999\n", "1: the vocab size is too large",
                     "a huge vocab");
    expect_load_fail("starmoe-bpe 1 258", "1: expected end of line", "a header without newline");
    expect_load_fail("starmoe-bpe 1 259\n97 98\n", "3: missing merges: the vocab size needs 2, "
                     "found 1", "a truncated file");
    expect_load_fail("starmoe-bpe 1 258\n97 98\n99 100\n", "3: trailing data",
                     "an extra merge line");
    expect_load_fail("starmoe-bpe 1 258\n97 98\nxyz", "3: trailing data", "trailing garbage");
    expect_load_fail("starmoe-bpe 1 258\n97 98 99\n", "2: expected end of line",
                     "three ids on a line");
    expect_load_fail("starmoe-bpe 1 258\n97  98\n", "2: expected a token id", "a double space");
    expect_load_fail("starmoe-bpe 1 258\n-1 98\n", "2: expected a token id", "a negative id");
    expect_load_fail("starmoe-bpe 1 260\n97 98\n256 300\n", "3: id 300 out of range",
                     "an out-of-range id");
    expect_load_fail("starmoe-bpe 1 260\n97 98\n256 259\n", "3: id 259 out of range",
                     "a merge using the special token");
    expect_load_fail("starmoe-bpe 1 260\n97 98\n257 98\n", "3: id 257 is not defined yet",
                     "a forward reference");
    expect_load_fail("starmoe-bpe 1 259\n97 98\n97 98\n", "3: duplicate merge",
                     "a duplicate merge");
    expect_load_fail("starmoe-bpe 1 258\n97 98", "2: expected end of line", "a cut last line");

    sm_error err = {{0}};
    tap_ok(!sm_tokenizer_load(in_dir("absent.bpe"), &err) && strstr(err.msg, "absent.bpe") &&
               strstr(err.msg, "not found"),
           "missing file: %s", err.msg);
    mkfifo(in_dir("fifo.bpe"), 0600);
    alarm(10);   /* a regression that blocks on the FIFO fails instead of hanging */
    tap_ok(!sm_tokenizer_load(in_dir("fifo.bpe"), &err) &&
               strstr(err.msg, "fifo.bpe: cannot open: not a regular file (a FIFO)"),
           "a FIFO, without blocking: %s", err.msg);
    alarm(0);
    unlink(in_dir("fifo.bpe"));
    tap_ok(!sm_tokenizer_load(dir, &err) && strstr(err.msg, "cannot open: is a folder"),
           "a folder: %s", err.msg);
    write_text(in_dir("ok.bpe"), "starmoe-bpe 1 257\n");
    sm_tokenizer *t = sm_tokenizer_load(path, &err);
    tap_ok(t && sm_tokenizer_vocab_size(t) == 257 && sm_tokenizer_eot(t) == 256,
           "a file without merges is valid (vocab 257)");
    sm_tokenizer_free(t);
}

/* Merges that each double a token: a file of about 300 bytes would ask for 2^40-byte tokens. The
 * loader stops at the first token longer than SM_TOKENIZER_MAX_TOKEN_BYTES (512 = 2^9 bytes:
 * merge 10, id 265, on line 11), before allocating it. */
static void test_token_length_bound(void)
{
    char text[1024];
    size_t n = (size_t)snprintf(text, sizeof text, "starmoe-bpe 1 %d\n97 97\n", 256 + 40 + 1);
    for (int id = 256; id < 256 + 39; id++)
        n += (size_t)snprintf(text + n, sizeof text - n, "%d %d\n", id, id);
    expect_load_fail(text, "11: merge 10 (id 265) makes a token of 1024 bytes, more than the 512 "
                     "allowed", "merges growing a token past the bound");
}

/* Training never makes a token longer than the loader accepts: two documents of 2048 'a's
 * would otherwise merge up to one 2048-byte token. */
static void test_training_token_bound(void)
{
    static char run[2048];
    memset(run, 'a', sizeof run);
    const char *docs[] = {run, run};
    size_t lens[] = {sizeof run, sizeof run}, len;
    sm_error err = {{0}};
    sm_tokenizer *t = sm_tokenizer_train(docs, lens, 2, 300, &err), *back = NULL;
    int longest = 0, longest_id = 0;
    for (int32_t id = 0; t && id < sm_tokenizer_eot(t); id++)
        if (sm_tokenizer_token_bytes(t, id) > longest) {
            longest = sm_tokenizer_token_bytes(t, id);
            longest_id = id;
        }
    tap_ok(t && longest == SM_TOKENIZER_MAX_TOKEN_BYTES,
           "training stops growing a token at %d bytes (longest %d)",
           SM_TOKENIZER_MAX_TOKEN_BYTES, longest);
    if (t && sm_tokenizer_save(t, in_dir("long.bpe"), &err) == 0)
        back = sm_tokenizer_load(in_dir("long.bpe"), &err);
    char *text = back ? sm_tokenizer_decode(back, &longest_id, 1, &len, &err) : NULL;
    tap_ok(back && text && len == (size_t)longest, "and its file loads back: %s", err.msg);
    free(text);
    sm_tokenizer_free(back);
    sm_tokenizer_free(t);
}

static void test_training_rules(void)
{
    sm_error err = {{0}};
    const char *docs[] = {"ab ab cd cd"};
    size_t lens[] = {11};
    sm_tokenizer *t = sm_tokenizer_train(docs, lens, 1, 300, &err);
    size_t len;
    char *text = NULL;
    if (t && sm_tokenizer_save(t, in_dir("tie.bpe"), &err) == 0)
        text = sm_read_file(path, &len, &err);
    tap_ok(text && strncmp(text, "starmoe-bpe 1 ", 14) == 0 && strstr(text, "\n32 99\n") &&
               strstr(text, "\n32 99\n") == strchr(text, '\n'),
           "ties go to the smallest pair: first merge (32, 99) = \" c\"");
    tap_ok(t && sm_tokenizer_vocab_size(t) < 300 &&
               sm_tokenizer_eot(t) == sm_tokenizer_vocab_size(t) - 1,
           "training stops when no pair occurs twice (vocab %d)",
           t ? sm_tokenizer_vocab_size(t) : -1);
    free(text);
    sm_tokenizer_free(t);

    t = sm_tokenizer_train(docs, lens, 1, 256, &err);
    tap_ok(!t && strstr(err.msg, "vocab size 256"), "vocab 256 rejected: %s", err.msg);
    t = sm_tokenizer_train(NULL, NULL, 0, 1000, &err);
    tap_ok(t && sm_tokenizer_vocab_size(t) == 257, "no documents: vocab 257");
    if (t) round_trip(t, "abc", 3, "an untrained tokenizer");
    sm_tokenizer_free(t);
}

static void test_random_bytes(void)
{
    tu_rng rng;
    enum { NDOC = 40, LEN = 3000 };
    static char bytes[NDOC][LEN];
    const char *docs[NDOC];
    size_t lens[NDOC];
    sm_error err = {{0}};
    tu_seed(&rng, 7);
    for (int d = 0; d < NDOC; d++) {
        for (int i = 0; i < LEN; i++) bytes[d][i] = (char)(tu_uniform(&rng) * 256);
        docs[d] = bytes[d];
        lens[d] = LEN;
    }
    sm_tokenizer *t = sm_tokenizer_train(docs, lens, NDOC, 1024, &err);
    tap_ok(t != NULL, "train on random bytes (vocab %d) %s", t ? sm_tokenizer_vocab_size(t) : -1,
           err.msg);
    if (!t) return;
    round_trip(t, bytes[3], LEN, "random bytes from the training set");
    for (int i = 0; i < LEN; i++) bytes[0][i] = (char)(tu_uniform(&rng) * 256);
    round_trip(t, bytes[0], LEN, "fresh random bytes");
    sm_tokenizer_free(t);
}

int main(void)
{
    sm_error err = {{0}};
    if (!mkdtemp(dir)) return tap_ok(0, "mkdtemp"), tap_done();
    test_chunks();
    test_utf8();
    sm_tokenizer *t = train_sample(400, &err);
    tap_ok(t != NULL, "train vocab 400 on English and Chinese %s", err.msg);
    if (t) {
        test_vocab(t);
        test_round_trips(t);
        test_cjk_boundaries(t);
        test_save_load(t);
    }
    sm_tokenizer_free(t);
    test_malformed();
    test_token_length_bound();
    test_training_token_bound();
    test_training_rules();
    test_random_bytes();
    const char *names[] = {"a.bpe", "b.bpe", "bad.bpe", "ok.bpe", "tie.bpe", "long.bpe"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) unlink(in_dir(names[i]));
    rmdir(dir);
    return tap_done();
}
