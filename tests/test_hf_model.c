/* Tests of io/hf_model.c: the dsv3-tiny-a folder loads with every tensor at its shape; a
 * two-shard copy with model.safetensors.index.json gives identical values; FP8 E4M3 weights are
 * dequantised exactly with a block grid that has partial edge blocks; and each broken folder
 * (missing tensor, index naming a tensor its shard lacks, FP8 without or with a misshaped scale,
 * a shard path with "..") is an error naming the file and the tensor. */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fp8_quant.h"
#include "io/hf_model.h"
#include "tests/tap.h"
#include "tests/testutil.h"

static char dir[64];
static char fixture[512];

static const char *in_dir(const char *name)
{
    static char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

static int fresh_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/starmoe-hf-XXXXXX");
    return mkdtemp(dir) != NULL;
}

/* Deletes the files of the (flat) temp dir, then the dir. */
static void remove_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink(in_dir(e->d_name));
    if (d) closedir(d);
    rmdir(dir);
}

/* The fixture's config.json with `quant` (stolen, may be NULL) as quantization_config. */
static void write_config(json_t *quant)
{
    char src[600];
    snprintf(src, sizeof src, "%s/config.json", fixture);
    json_t *j = json_load_file(src, 0, NULL);
    if (quant) json_object_set_new(j, "quantization_config", quant);
    if (!j || json_dump_file(j, in_dir("config.json"), JSON_INDENT(1)))
        tap_diag("cannot write %s", in_dir("config.json"));
    json_decref(j);
}

static void open_fixture_file(sm_st_file *f)
{
    char p[600];
    sm_error err = {{0}};
    snprintf(p, sizeof p, "%s/model.safetensors", fixture);
    if (sm_st_open(f, p, &err)) tap_diag("%s", err.msg);
}

/* Every tensor of `ref` loads from m with its shape and identical values. */
static int same_tensors(const sm_hf_model *m, const sm_st_file *ref, sm_error *err)
{
    int bad = 0;
    for (int i = 0; i < ref->ntensors; i++) {
        const sm_st_tensor *t = &ref->tensors[i];
        size_t n = (size_t)sm_st_numel(t);
        float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        if (sm_hf_load_f32(m, t->name, t->ndim, t->shape, a, err) ||
            sm_st_read_f32(ref, t->name, t->ndim, t->shape, b, err) ||
            memcmp(a, b, n * sizeof *a) != 0)
            bad++;
        free(a);
        free(b);
    }
    return bad;
}

static void test_fixture(const sm_st_file *ref)
{
    sm_hf_model m;
    sm_error err = {{0}};
    int rc = sm_hf_open(&m, fixture, &err);
    tap_ok(rc == 0, "open %s %s", fixture, err.msg);
    if (rc) return;
    tap_ok(m.config.hidden_size == 64 && m.nfiles == 1 && m.nnames == 91,
           "config read, one file, 91 tensors (%d)", m.nnames);
    tap_ok(same_tensors(&m, ref, &err) == 0, "all 91 tensors load with their shapes %s", err.msg);
    float *emb = malloc(256 * 64 * sizeof *emb);
    tap_ok(sm_hf_load_f32(&m, "model.embed_tokens.weight", 2, (int64_t[]){256, 64}, emb, &err) ==
               0,
           "model.embed_tokens.weight is [256, 64]");
    tap_ok(sm_hf_load_f32(&m, "model.embed_tokens.weight", 2, (int64_t[]){64, 256}, emb, &err) ==
                   -1 &&
               strstr(err.msg, "shape [256, 64], expected [64, 256]") &&
               strstr(err.msg, "model.safetensors"),
           "transposed shape rejected: %s", err.msg);
    tap_ok(sm_hf_load_f32(&m, "model.layers.1.mlp.gate.weight", 2, (int64_t[]){8, 64}, emb,
                          &err) == 0 &&
               sm_hf_load_f32(&m, "model.layers.0.mlp.gate_proj.weight", 2,
                              (int64_t[]){128, 64}, emb, &err) == 0,
           "router [8, 64] and dense gate_proj [128, 64]");
    free(emb);
    tap_ok(sm_hf_has(&m, "lm_head.weight") && !sm_hf_has(&m, "model.layers.3.mlp.gate.weight"),
           "sm_hf_has");
    float x;
    tap_ok(sm_hf_load_f32(&m, "model.layers.9.ghost.weight", 1, (int64_t[]){1}, &x, &err) == -1 &&
               strstr(err.msg, fixture) && strstr(err.msg, "'model.layers.9.ghost.weight'") &&
               strstr(err.msg, "not found"),
           "missing tensor: %s", err.msg);
    sm_hf_close(&m);
}

/* Writes the fixture tensors alternately into two shards and an index (plus `extra`, a name
 * listed for shard 1 that it does not hold, when not NULL; `shard1` names the first shard). */
static void write_sharded(const sm_st_file *ref, const char *extra, const char *shard1)
{
    const char *shards[2] = {shard1, "model-00002-of-00002.safetensors"};
    sm_st_writer *w[2] = {sm_st_writer_new(), sm_st_writer_new()};
    json_t *map = json_object();
    sm_error err;
    for (int i = 0; i < ref->ntensors; i++) {
        const sm_st_tensor *t = &ref->tensors[i];
        void *raw = sm_st_load_raw(ref, t, &err);
        sm_st_writer_add(w[i % 2], t->name, t->dtype, t->ndim, t->shape, raw, &err);
        free(raw);
        json_object_set_new(map, t->name, json_string(shards[i % 2]));
    }
    if (extra) json_object_set_new(map, extra, json_string(shards[0]));
    for (int s = 0; s < 2; s++) {
        if (strstr(shards[s], "..") == NULL && sm_st_writer_write(w[s], in_dir(shards[s]), &err))
            tap_diag("%s", err.msg);
        sm_st_writer_free(w[s]);
    }
    json_t *index =
        json_pack("{s:{s:i}, s:o}", "metadata", "total_size", 868928, "weight_map", map);
    json_dump_file(index, in_dir("model.safetensors.index.json"), JSON_INDENT(1));
    json_decref(index);
}

static void test_sharded(const sm_st_file *ref)
{
    sm_hf_model m;
    sm_error err = {{0}};
    if (!fresh_dir()) return;
    write_config(NULL);
    write_sharded(ref, NULL, "model-00001-of-00002.safetensors");
    int rc = sm_hf_open(&m, dir, &err);
    tap_ok(rc == 0 && m.nfiles == 2 && m.nnames == ref->ntensors, "open two shards %s", err.msg);
    if (rc == 0) {
        tap_ok(same_tensors(&m, ref, &err) == 0, "sharded copy loads identical values %s",
               err.msg);
        sm_hf_close(&m);
    }

    write_sharded(ref, "model.layers.7.ghost.weight", "model-00001-of-00002.safetensors");
    tap_ok(sm_hf_open(&m, dir, &err) == -1 && strstr(err.msg, "model.safetensors.index.json") &&
               strstr(err.msg, "'model.layers.7.ghost.weight'") &&
               strstr(err.msg, "model-00001-of-00002.safetensors"),
           "index naming a tensor its shard lacks: %s", err.msg);
    tap_ok(m.files == NULL && m.names == NULL, "failed open leaves the model cleared");

    write_sharded(ref, NULL, "../model-00001-of-00002.safetensors");
    tap_ok(sm_hf_open(&m, dir, &err) == -1 && strstr(err.msg, "plain file name") &&
               strstr(err.msg, "model.safetensors.index.json"),
           "shard path with '..' rejected: %s", err.msg);

    FILE *f = fopen(in_dir("model.safetensors.index.json"), "w");
    fputs("{\"metadata\": {}}", f);
    fclose(f);
    tap_ok(sm_hf_open(&m, dir, &err) == -1 && strstr(err.msg, "weight_map"),
           "index without weight_map: %s", err.msg);
    remove_dir();
}

/* Deterministic FP8 codes, NaN (0x7F/0xFF) excepted. */
static void fill_codes(uint8_t *q, size_t n, uint64_t seed)
{
    tu_rng r;
    tu_seed(&r, seed);
    for (size_t i = 0; i < n; i++) {
        q[i] = (uint8_t)(tu_uniform(&r) * 256);
        if ((q[i] & 0x7F) == 0x7F) q[i] ^= 1;
    }
}

/* A folder with block-32 FP8 weights: "w.weight" [40, 70] with scale [2, 3]; "nos.weight"
 * without a scale; "bad.weight" with a [2, 2] scale; "b.weight" BF16 with a scale; "i.weight"
 * I32 and "u.weight" U8 (integers, not weights). */
static void write_fp8_folder(const uint8_t *q, const float *scale)
{
    sm_st_writer *w = sm_st_writer_new();
    sm_error err;
    uint16_t bf[3] = {0x3F80, 0x3F80, 0x3F80};
    int32_t ints[3] = {1, 2, 3};
    int rc = sm_st_writer_add(w, "w.weight", SM_F8_E4M3, 2, (int64_t[]){40, 70}, q, &err) |
             sm_st_writer_add(w, "w.weight_scale_inv", SM_F32, 2, (int64_t[]){2, 3}, scale,
                              &err) |
             sm_st_writer_add(w, "nos.weight", SM_F8_E4M3, 2, (int64_t[]){4, 4}, q, &err) |
             sm_st_writer_add(w, "bad.weight", SM_F8_E4M3, 2, (int64_t[]){40, 70}, q, &err) |
             sm_st_writer_add(w, "bad.weight_scale_inv", SM_F32, 2, (int64_t[]){2, 2}, scale,
                              &err) |
             sm_st_writer_add(w, "b.weight", SM_BF16, 1, (int64_t[]){3}, bf, &err) |
             sm_st_writer_add(w, "b.weight_scale_inv", SM_F32, 1, (int64_t[]){1}, scale, &err) |
             sm_st_writer_add(w, "i.weight", SM_I32, 1, (int64_t[]){3}, ints, &err) |
             sm_st_writer_add(w, "u.weight", SM_U8, 1, (int64_t[]){3}, q, &err) |
             sm_st_writer_write(w, in_dir("model.safetensors"), &err);
    if (rc) tap_diag("%s", err.msg);
    sm_st_writer_free(w);
    write_config(json_pack("{s:s, s:s, s:s, s:[i,i]}", "quant_method", "fp8", "fmt", "e4m3",
                           "activation_scheme", "dynamic", "weight_block_size", 32, 32));
}

/* Dequantises exactly: q * scale[r / 32][c / 32], with partial blocks at the bottom/right. */
static void test_fp8_exact(const sm_hf_model *m, const uint8_t *q, const float *scale)
{
    sm_error err = {{0}};
    float *got = malloc(40 * 70 * sizeof *got);
    int bad = 0;
    tap_ok(sm_hf_load_f32(m, "w.weight", 2, (int64_t[]){40, 70}, got, &err) == 0,
           "FP8 weight [40, 70] with scale [2, 3] loads %s", err.msg);
    for (int r = 0; r < 40; r++)
        for (int c = 0; c < 70; c++) {
            float want = sm_fp8_e4m3_to_f32(q[r * 70 + c]) * scale[(r / 32) * 3 + c / 32];
            bad += got[r * 70 + c] != want;
        }
    tap_ok(bad == 0, "every element is q * scale_inv of its block (%d wrong)", bad);
    tap_ok(got[39 * 70 + 69] == sm_fp8_e4m3_to_f32(q[39 * 70 + 69]) * scale[5],
           "corner (39, 69) uses the partial edge block scale[1][2]");
    free(got);
}

/* Quantising a random matrix per docs/model.md §8.2 and dequantising gives it back within E4M3
 * error. */
static void test_fp8_quant_round_trip(void)
{
    enum { R = 40, C = 70, B = 32 };
    tu_rng rng;
    float w[R * C], back[R * C], scale[2 * 3] = {0};
    uint8_t q[R * C];
    tu_seed(&rng, 7);
    tu_fill(&rng, w, R * C, 0.02f);
    for (int i = 0; i < R * C; i++) {
        float *s = &scale[(i / C / B) * 3 + (i % C) / B];
        if (fabsf(w[i]) / 448 > *s) *s = fabsf(w[i]) / 448;
    }
    for (int i = 0; i < R * C; i++)
        q[i] = sm_fp8_e4m3_from_f32(w[i] / scale[(i / C / B) * 3 + (i % C) / B], 1);
    sm_fp8_dequant_blocks(back, q, scale, R, C, B, B);
    double worst = 0;
    for (int i = 0; i < R * C; i++) {
        float s = scale[(i / C / B) * 3 + (i % C) / B];
        double e = fabs(back[i] - w[i]) / (fabs(w[i]) + 0x1p-6 * s); /* subnormals: absolute */
        if (e > worst) worst = e;
    }
    tap_ok(worst <= 1.0 / 16, "quantise + sm_fp8_dequant_blocks within E4M3 rounding (%.3g)",
           worst);
}

static void test_fp8(void)
{
    static uint8_t q[40 * 70];
    float scale[6] = {0.5f, 0.25f, 2.0f, 1.0f / 448, 3.0f, 0.125f};
    sm_hf_model m;
    sm_error err = {{0}};
    if (!fresh_dir()) return;
    fill_codes(q, sizeof q, 11);
    write_fp8_folder(q, scale);
    int rc = sm_hf_open(&m, dir, &err);
    tap_ok(rc == 0 && m.config.fp8 && m.config.fp8_block[0] == 32, "open FP8 folder %s", err.msg);
    if (rc) {
        remove_dir();
        return;
    }
    test_fp8_exact(&m, q, scale);
    float out[40 * 70];
    tap_ok(sm_hf_load_f32(&m, "nos.weight", 2, (int64_t[]){4, 4}, out, &err) == -1 &&
               strstr(err.msg, "'nos.weight'") && strstr(err.msg, "nos.weight_scale_inv") &&
               strstr(err.msg, "model.safetensors"),
           "FP8 weight without scale_inv: %s", err.msg);
    tap_ok(sm_hf_load_f32(&m, "bad.weight", 2, (int64_t[]){40, 70}, out, &err) == -1 &&
               strstr(err.msg, "'bad.weight_scale_inv'") && strstr(err.msg, "expected [2, 3]"),
           "misshaped scale_inv: %s", err.msg);
    tap_ok(sm_hf_load_f32(&m, "b.weight", 1, (int64_t[]){3}, out, &err) == -1 &&
               strstr(err.msg, "'b.weight'") && strstr(err.msg, "BF16"),
           "a scale beside a BF16 weight: %s", err.msg);
    tap_ok(sm_hf_load_f32(&m, "i.weight", 1, (int64_t[]){3}, out, &err) == -1 &&
               strstr(err.msg, "model.safetensors: tensor 'i.weight': dtype I32 is not a weight "
                               "type (expected F32, BF16, F16, or F8_E4M3 with its scale)"),
           "an integer weight is refused, not converted: %s", err.msg);
    tap_ok(sm_hf_load_f32(&m, "u.weight", 1, (int64_t[]){3}, out, &err) == -1 &&
               strstr(err.msg, "'u.weight': dtype U8 is not a weight type"),
           "a U8 weight is refused: %s", err.msg);
    sm_hf_close(&m);
    remove_dir();
}

static void test_missing_config(void)
{
    sm_hf_model m;
    sm_error err = {{0}};
    if (!fresh_dir()) return;
    tap_ok(sm_hf_open(&m, dir, &err) == -1 && strstr(err.msg, "config.json"),
           "folder without config.json: %s", err.msg);
    write_config(NULL);
    tap_ok(sm_hf_open(&m, dir, &err) == -1 && strstr(err.msg, "model.safetensors"),
           "folder without weights: %s", err.msg);
    mkfifo(in_dir("model.safetensors"), 0600);
    alarm(10);   /* a regression that blocks on the FIFO fails instead of hanging */
    tap_ok(sm_hf_open(&m, dir, &err) == -1 &&
               strstr(err.msg, "model.safetensors: cannot open: not a regular file (a FIFO)"),
           "weights that are a FIFO, without blocking: %s", err.msg);
    alarm(0);
    symlink("model.safetensors.index.json", in_dir("model.safetensors.index.json"));
    tap_ok(sm_hf_open(&m, dir, &err) == -1 &&
               strstr(err.msg, "index.json: cannot open: a symbolic link loop"),
           "an index that is a symbolic link loop is reported as such: %s", err.msg);
    remove_dir();
}

int main(void)
{
    sm_st_file ref;
    snprintf(fixture, sizeof fixture, "%s/tests/fixtures/dsv3-tiny-a", tu_srcdir());
    open_fixture_file(&ref);
    test_fixture(&ref);
    test_sharded(&ref);
    test_fp8_quant_round_trip();
    test_fp8();
    test_missing_config();
    sm_st_close(&ref);
    return tap_done();
}
