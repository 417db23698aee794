/* Tests of io/safetensors.c and io/safetensors_writer.c: a write/read round trip (values, shapes,
 * dtypes, metadata, header order, no temporary left behind), one hand-made file per malformed
 * header case, every truncation of a valid file, and the shape/dtype checks of the readers. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "tests/tap.h"
#include "tests/testutil.h"

static char dir[] = "/tmp/starmoe-st-XXXXXX";
static char path[512];

static const char *in_dir(const char *name)
{
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

/* Files in the (flat) temp dir; with remove, deletes them and the dir. */
static int dir_entries(int remove)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            n++;
            if (remove) unlink(in_dir(e->d_name));
        }
    if (d) closedir(d);
    if (remove) rmdir(dir);
    return n;
}

static void write_bytes(const char *p, const void *buf, size_t n)
{
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(buf, 1, n, f) != n) tap_diag("cannot write %s", p);
    if (f) fclose(f);
}

/* A file made of an 8-byte length field `len`, the header text and `data` zero bytes. */
static void write_raw(const char *p, uint64_t len, const char *header, size_t data)
{
    size_t h = strlen(header), n = 8 + h + data;
    unsigned char *buf = calloc(1, n);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(len >> (8 * i));
    memcpy(buf + 8, header, h);
    write_bytes(p, buf, n);
    free(buf);
}

/* sm_st_open must fail on `p`, naming the file and saying `word`, and leave f cleared. */
static void expect_open_fail(const char *p, const char *word, const char *what)
{
    sm_st_file f;
    sm_error err = {{0}};
    const char *base = strrchr(p, '/') + 1;
    int rc = sm_st_open(&f, p, &err);
    tap_ok(rc == -1 && strstr(err.msg, base) && strstr(err.msg, word) && f.fd == -1 && !f.tensors,
           "rejects %s: %s", what, err.msg);
}

static void expect_header_fail(const char *header, size_t data, const char *word,
                               const char *what)
{
    const char *p = in_dir("bad.safetensors");
    write_raw(p, strlen(header), header, data);
    expect_open_fail(p, word, what);
}

static const float f32_vals[6] = {1.5f, -2.25f, 0.0f, 3e-8f, 1e20f, -7.0f};
static const uint16_t bf16_vals[4] = {0x3F80, 0xC000, 0x4049, 0x0000};
static const int64_t i64_vals[3] = {-5, 0, 2000000000};
static const uint8_t fp8_vals[4] = {0x38, 0xC5, 0x01, 0x7E};

static sm_st_writer *sample_writer(void)
{
    sm_st_writer *w = sm_st_writer_new();
    sm_error err;
    int64_t s23[2] = {2, 3}, s4[1] = {4}, s3[1] = {3}, s22[2] = {2, 2}, s0[1] = {0};
    float scalar = 42.0f;
    int rc = sm_st_writer_add(w, "zeta", SM_F32, 2, s23, f32_vals, &err) |
             sm_st_writer_add(w, "alpha", SM_BF16, 1, s4, bf16_vals, &err) |
             sm_st_writer_add(w, "ids", SM_I64, 1, s3, i64_vals, &err) |
             sm_st_writer_add(w, "empty", SM_F32, 1, s0, NULL, &err) |
             sm_st_writer_add(w, "scalar", SM_F32, 0, NULL, &scalar, &err) |
             sm_st_writer_add(w, "q", SM_F8_E4M3, 2, s22, fp8_vals, &err) |
             sm_st_writer_meta(w, "format", "pt", &err) |
             sm_st_writer_meta(w, "note", "round trip", &err);
    tap_ok(rc == 0, "writer accepts six tensors and two metadata pairs");
    return w;
}

static void test_writer_errors(sm_st_writer *w)
{
    sm_error err;
    int64_t s1[1] = {1}, neg[1] = {-1}, big[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    float x = 0;
    tap_ok(sm_st_writer_add(w, "zeta", SM_F32, 1, s1, &x, &err) == -1 &&
               strstr(err.msg, "duplicate"),
           "writer rejects a duplicate name: %s", err.msg);
    tap_ok(sm_st_writer_add(w, "__metadata__", SM_F32, 1, s1, &x, &err) == -1,
           "writer rejects the reserved name __metadata__");
    tap_ok(sm_st_writer_add(w, "n", SM_F32, 1, neg, &x, &err) == -1 && strstr(err.msg, "'n'"),
           "writer rejects a negative dim: %s", err.msg);
    tap_ok(sm_st_writer_add(w, "nine", SM_F32, 9, big, &x, &err) == -1 &&
               strstr(err.msg, "dims"),
           "writer rejects 9 dims: %s", err.msg);
    tap_ok(sm_st_writer_write(w, "/nonexistent-starmoe/x.safetensors", &err) == -1 &&
               strstr(err.msg, "/nonexistent-starmoe/x.safetensors") &&
               strstr(err.msg, "No such file"),
           "write into a missing folder reports path and strerror: %s", err.msg);
}

static void check_header_layout(const char *p)
{
    FILE *f = fopen(p, "rb");
    unsigned char len[8];
    char header[4096] = {0};
    uint64_t n = 0;
    if (!f || fread(len, 1, 8, f) != 8) {
        tap_ok(0, "cannot reread %s", p);
        if (f) fclose(f);
        return;
    }
    for (int i = 7; i >= 0; i--) n = n << 8 | len[i];
    size_t got = fread(header, 1, n < sizeof header - 1 ? n : sizeof header - 1, f);
    fclose(f);
    tap_ok(got == n && n % 8 == 0, "header length %llu is a multiple of 8",
           (unsigned long long)n);
    char *z = strstr(header, "\"zeta\""), *a = strstr(header, "\"alpha\"");
    tap_ok(z && a && z < a, "header keys keep insertion order (zeta before alpha)");
}

static void test_round_trip(void)
{
    sm_st_writer *w = sample_writer();
    sm_error err = {{0}};
    test_writer_errors(w);
    const char *p = in_dir("rt.safetensors");
    tap_ok(sm_st_writer_write(w, p, &err) == 0, "writer writes %s %s", p, err.msg);
    sm_st_writer_free(w);
    tap_ok(dir_entries(0) == 1, "no temporary file left beside the output");
    check_header_layout(p);

    sm_st_file f;
    tap_ok(sm_st_open(&f, p, &err) == 0, "reopen the written file %s", err.msg);
    if (f.fd < 0) return;
    tap_ok(f.ntensors == 6 && strcmp(f.tensors[0].name, "alpha") == 0 &&
               strcmp(f.tensors[5].name, "zeta") == 0,
           "six tensors, sorted by name");
    const sm_st_tensor *z = sm_st_find(&f, "zeta"), *s = sm_st_find(&f, "scalar");
    tap_ok(z && z->dtype == SM_F32 && z->ndim == 2 && z->shape[0] == 2 && z->shape[1] == 3,
           "zeta: F32 [2, 3]");
    tap_ok(s && s->ndim == 0 && sm_st_numel(s) == 1, "scalar: 0-dim, one element");
    tap_ok(sm_st_find(&f, "nope") == NULL, "absent name -> NULL");
    int misaligned = 0;
    for (int i = 0; i < f.ntensors; i++) misaligned += f.tensors[i].begin % 8 != 0;
    tap_ok(misaligned == 0 && f.data_start % 8 == 0, "data section and tensors 8-byte aligned");

    float out[6];
    int64_t s23[2] = {2, 3}, s4[1] = {4}, s3[1] = {3}, s22[2] = {2, 2};
    tap_ok(sm_st_read_f32(&f, "zeta", 2, s23, out, &err) == 0 &&
               memcmp(out, f32_vals, sizeof f32_vals) == 0,
           "F32 values identical");
    tap_ok(sm_st_read_f32(&f, "alpha", 1, s4, out, &err) == 0 && out[0] == 1 && out[1] == -2 &&
               out[2] == 3.140625f && out[3] == 0,
           "BF16 converted");
    tap_ok(sm_st_read_f32(&f, "q", 2, s22, out, &err) == 0 && out[0] == 1 && out[1] == -3.25f &&
               out[2] == 0x1p-9f && out[3] == 448,
           "F8_E4M3 converted");
    tap_ok(sm_st_read_f32(&f, "scalar", 0, NULL, out, &err) == 0 && out[0] == 42, "scalar read");
    int32_t ids[3];
    tap_ok(sm_st_read_i32(&f, "ids", 1, s3, ids, &err) == 0 && ids[0] == -5 && ids[1] == 0 &&
               ids[2] == 2000000000,
           "I64 read as int32");
    tap_ok(sm_st_read_f32(&f, "ids", 1, s3, out, &err) == 0 && out[0] == -5, "I64 read as f32");
    tap_ok(sm_st_meta(&f, "format") && strcmp(sm_st_meta(&f, "format"), "pt") == 0 &&
               sm_st_meta(&f, "note") && strcmp(sm_st_meta(&f, "note"), "round trip") == 0 &&
               sm_st_meta(&f, "missing") == NULL,
           "metadata read back");
    sm_st_close(&f);
}

static void test_read_errors(void)
{
    sm_st_file f;
    sm_error err;
    const char *p = in_dir("rt.safetensors");
    char want[600];
    int64_t s24[2] = {2, 4}, s6[1] = {6}, s3[1] = {3};
    float out[8];
    int32_t ids[8];
    if (sm_st_open(&f, p, &err)) {
        tap_ok(0, "reopen: %s", err.msg);
        return;
    }
    snprintf(want, sizeof want, "%s: tensor 'zeta': shape [2, 3], expected [2, 4]", p);
    tap_ok(sm_st_read_f32(&f, "zeta", 2, s24, out, &err) == -1 && strcmp(err.msg, want) == 0,
           "wrong shape: %s", err.msg);
    tap_ok(sm_st_read_f32(&f, "zeta", 1, s6, out, &err) == -1 && strstr(err.msg, "[6]"),
           "wrong rank: %s", err.msg);
    tap_ok(sm_st_read_f32(&f, "ghost", 1, s6, out, &err) == -1 && strstr(err.msg, "'ghost'") &&
               strstr(err.msg, "not found") && strstr(err.msg, p),
           "missing tensor: %s", err.msg);
    tap_ok(sm_st_read_i32(&f, "alpha", 1, (int64_t[]){4}, ids, &err) == -1 &&
               strstr(err.msg, "BF16") && strstr(err.msg, "'alpha'"),
           "i32 reader rejects BF16: %s", err.msg);
    sm_st_close(&f);

    sm_st_writer *w = sm_st_writer_new();
    int64_t wide[3] = {1, (int64_t)1 << 40, -3};
    sm_st_writer_add(w, "wide", SM_I64, 1, s3, wide, &err);
    sm_st_writer_write(w, in_dir("wide.safetensors"), &err);
    sm_st_writer_free(w);
    if (sm_st_open(&f, in_dir("wide.safetensors"), &err)) {
        tap_ok(0, "%s", err.msg);
        return;
    }
    tap_ok(sm_st_read_i32(&f, "wide", 1, s3, ids, &err) == -1 && strstr(err.msg, "int32") &&
               strstr(err.msg, "'wide'"),
           "I64 value beyond int32 rejected: %s", err.msg);
    sm_st_close(&f);
}

static void test_malformed(void)
{
    const char *p = in_dir("short.safetensors");
    write_bytes(p, "\x10\0\0\0\0", 5);
    expect_open_fail(p, "shorter", "a 5-byte file");
    p = in_dir("long.safetensors");
    write_raw(p, 1000, "{}", 10);
    expect_open_fail(p, "beyond", "a header length beyond the file");
    p = in_dir("huge.safetensors");
    write_raw(p, (uint64_t)1 << 40, "{}", 10);
    expect_open_fail(p, "absurd", "an absurd header length");
    expect_open_fail(in_dir("absent.safetensors"), "not found", "a missing file");
    mkdir(in_dir("folder.safetensors"), 0700);
    expect_open_fail(in_dir("folder.safetensors"), "is a folder", "a folder");
    rmdir(in_dir("folder.safetensors"));

    expect_header_fail("{\"x\": {\"dtype\": \"F32\"", 0, "JSON", "truncated JSON");
    expect_header_fail("[1, 2]", 0, "object", "a header that is an array");
    expect_header_fail("{\"x\": 5}", 0, "'x': entry is not an object", "an entry that is a number");
    expect_header_fail("{\"x\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "dtype",
                       "a missing dtype");
    expect_header_fail("{\"x\": {\"dtype\": \"F33\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
                       4, "F33", "an unknown dtype");
    expect_header_fail("{\"x\": {\"dtype\": 7, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
                       "dtype", "a numeric dtype");
    expect_header_fail("{\"x\": {\"dtype\": \"F32\", \"shape\": 4, \"data_offsets\": [0, 16]}}",
                       16, "shape", "a shape that is not an array");
    expect_header_fail("{\"x\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}",
                       4, "non-negative", "a negative dim");
    expect_header_fail("{\"x\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}",
                       4, "shape", "a fractional dim");
    expect_header_fail("{\"x\": {\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,1], "
                       "\"data_offsets\": [0, 1]}}", 1, "dims", "nine dims");
    expect_header_fail("{\"x\": {\"dtype\": \"U8\", \"shape\": [4294967296, 4294967296], "
                       "\"data_offsets\": [0, 0]}}", 0, "overflow", "an element count overflow");
    expect_header_fail("{\"x\": {\"dtype\": \"F64\", \"shape\": [2305843009213693952], "
                       "\"data_offsets\": [0, 0]}}", 0, "overflow", "a byte size overflow");
    expect_header_fail("{\"x\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, "data_offsets",
                       "missing data_offsets");
    expect_header_fail("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}",
                       8, "data_offsets", "three data_offsets");
    expect_header_fail("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}",
                       8, "data_offsets", "a negative offset");
    expect_header_fail("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}",
                       8, "begin 8 > end 4", "begin > end");
    expect_header_fail("{\"x\": {\"dtype\": \"F32\", \"shape\": [100], "
                       "\"data_offsets\": [0, 400]}}", 16, "beyond the data section",
                       "an end beyond the data");
    expect_header_fail("{\"x\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 12]}}",
                       16, "needs 8", "a byte size not matching the shape");
    expect_header_fail("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                       " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
                       16, "overlap", "overlapping tensors");
    expect_header_fail("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                       " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
                       8, "duplicate", "a duplicate name");
    expect_header_fail("{\"__metadata__\": 5}", 0, "__metadata__", "__metadata__ not an object");
    expect_header_fail("{\"__metadata__\": {\"k\": 1}}", 0, "__metadata__ 'k'",
                       "a non-string __metadata__ value");
}

/* Every strict prefix of a valid file must be rejected without a crash. */
static void test_truncations(void)
{
    const char *src = in_dir("rt.safetensors");
    FILE *f = fopen(src, "rb");
    static unsigned char buf[8192];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    int accepted = 0;
    sm_error err;
    char last[1024] = "";
    for (size_t cut = 0; cut < n; cut++) {
        sm_st_file st;
        write_bytes(in_dir("cut.safetensors"), buf, cut);
        if (sm_st_open(&st, in_dir("cut.safetensors"), &err) == 0) {
            accepted++;
            sm_st_close(&st);
        } else if (cut == n - 1) {
            snprintf(last, sizeof last, "%s", err.msg);
        }
    }
    tap_ok(n > 100 && accepted == 0, "all %zu truncations of a valid file rejected (%d accepted)",
           n, accepted);
    tap_ok(strstr(last, "cut.safetensors") && strstr(last, "beyond"),
           "cut of the last byte: %s", last);
}

/* A FIFO, a device and a symbolic link loop are refused at open, each in its own words; the FIFO
 * case runs under an alarm so that a regression that blocks fails instead of hanging. */
static void test_unusual_files(void)
{
    const char *p = in_dir("fifo.safetensors");
    mkfifo(p, 0600);
    alarm(10);
    expect_open_fail(p, "not a regular file (a FIFO)", "a FIFO, without blocking");
    alarm(0);
    unlink(p);
    sm_st_file f;
    sm_error err = {{0}};
    tap_ok(sm_st_open(&f, "/dev/null", &err) == -1 &&
               strstr(err.msg, "not a regular file (a device)"),
           "rejects a device: %s", err.msg);
    symlink("loop-b.safetensors", in_dir("loop-a.safetensors"));
    symlink("loop-a.safetensors", in_dir("loop-b.safetensors"));
    expect_open_fail(in_dir("loop-a.safetensors"), "symbolic link loop", "a symbolic link loop");
    unlink(in_dir("loop-a.safetensors"));
    unlink(in_dir("loop-b.safetensors"));
}

/* A file cut short after it was opened and checked (what mmap turned into a SIGBUS): reading a
 * tensor past the new end is an error naming the tensor; what is still there reads fine. */
static void test_truncated_while_open(void)
{
    const char *p = in_dir("shrink.safetensors");
    sm_st_writer *w = sample_writer();
    sm_st_file f;
    sm_error err = {{0}};
    float out[8];
    int64_t s23[2] = {2, 3}, s4[1] = {4};
    sm_st_writer_write(w, p, &err);
    sm_st_writer_free(w);
    if (sm_st_open(&f, p, &err)) {
        tap_ok(0, "open the file to shrink: %s", err.msg);
        return;
    }
    const sm_st_tensor *zeta = sm_st_find(&f, "zeta"), *alpha = sm_st_find(&f, "alpha");
    uint64_t keep = f.data_start + zeta->begin + 2;
    tap_ok(truncate(p, (off_t)keep) == 0, "file truncated to %llu bytes after open",
           (unsigned long long)keep);
    int first_ok = alpha->end <= zeta->begin
                       ? sm_st_read_f32(&f, "alpha", 1, s4, out, &err) == 0 : 1;
    tap_ok(first_ok && sm_st_read_f32(&f, "zeta", 2, s23, out, &err) == -1 &&
               strstr(err.msg, "shrink.safetensors: tensor 'zeta': the file ends after") &&
               strstr(err.msg, "truncated"),
           "reading past the new end is an error, not a SIGBUS: %s", err.msg);
    sm_st_close(&f);
    unlink(p);
}

int main(void)
{
    if (!mkdtemp(dir)) return tap_ok(0, "mkdtemp"), tap_done();
    test_round_trip();
    test_read_errors();
    test_malformed();
    test_truncations();
    test_unusual_files();
    test_truncated_while_open();
    dir_entries(1);
    return tap_done();
}
