/* Tests of io/checkpoint.c: CRC-32C; save + load round trips bitwise (tensors, state, tokenizer,
 * run config) and the folder opens as a Hugging Face model; keep, replacement and later-step
 * pruning; a flipped byte, a truncated file or a missing manifest fail verification naming the
 * file and sm_ckpt_latest falls back; a step that disagrees with the folder's name is refused
 * even when the CRCs match; stale .tmp folders; and SIGKILL at many points of a large save never
 * loses the previous checkpoint. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <jansson.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/hf_model.h"
#include "io/run_config.h"
#include "tests/tap.h"
#include "tests/testutil.h"

static char root[] = "/tmp/starmoe-ckpt-XXXXXX";
static char tok_path[512];
static const char tok_text[] = "{\"model\": {\"type\": \"BPE\"}}\n";
static const sm_ckpt_file tok = {"tok.json", tok_text, sizeof tok_text - 1};
static sm_config cfg;
static sm_run_config run;

static const char *const model_json =
    "{\"vocab_size\": 64, \"hidden_size\": 16, \"intermediate_size\": 32,"
    " \"moe_intermediate_size\": 8, \"num_hidden_layers\": 2, \"first_k_dense_replace\": 1,"
    " \"num_attention_heads\": 2, \"q_lora_rank\": 8, \"kv_lora_rank\": 8,"
    " \"qk_nope_head_dim\": 8, \"qk_rope_head_dim\": 4, \"v_head_dim\": 8,"
    " \"n_routed_experts\": 4, \"num_experts_per_tok\": 2, \"n_group\": 2, \"topk_group\": 1,"
    " \"routed_scaling_factor\": 2.5, \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000.0,"
    " \"max_position_embeddings\": 32}";

/* ---- helpers ---- */

static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    char sub[1024];
    struct stat sb;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        if (lstat(sub, &sb) == 0 && S_ISDIR(sb.st_mode))
            remove_tree(sub);
        else
            unlink(sub);
    }
    if (d) closedir(d);
    rmdir(path);
}

/* The entries of dir (without . and ..), sorted, joined by spaces. */
static void listing(const char *dir, char *out, size_t cap)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i]->d_name, ".") && strcmp(names[i]->d_name, ".."))
            snprintf(out + strlen(out), cap - strlen(out), "%s%s", *out ? " " : "",
                     names[i]->d_name);
        free(names[i]);
    }
    if (n >= 0) free(names);
}

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

/* The first line of a file, "" when unreadable. */
static void read_line(const char *path, char *buf, int cap)
{
    FILE *f = fopen(path, "r");
    buf[0] = '\0';
    if (f && !fgets(buf, cap, f)) buf[0] = '\0';
    if (f) fclose(f);
}

/* A set of tensors with deterministic contents that include -0, denormals, inf and a NaN with a
 * payload, so that a round trip must be bitwise. */
typedef struct tset {
    int n;
    sm_ckpt_tensor t[3];
    char names[3][64];
    float *data[3];
} tset;

static float pattern(uint64_t seed, size_t i)
{
    uint64_t x = (seed + i) * 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    float f = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5);
    uint32_t nan_bits = 0x7fc01234u;
    switch (i % 997) {
    case 1: return -0.0f;
    case 2: return 1e-40f;
    case 3: return INFINITY;
    case 4: memcpy(&f, &nan_bits, sizeof f); return f;
    default: return f;
    }
}

static void tset_init(tset *s, const char *prefix, uint64_t seed, int64_t rows, int64_t cols)
{
    static const char *const names[] = {"model.embed_tokens.weight",
                                        "model.layers.0.self_attn.kv_a_proj_with_mqa.weight",
                                        "model.norm.weight"};
    memset(s, 0, sizeof *s);
    s->n = 3;
    for (int k = 0; k < 3; k++) {
        size_t n = (size_t)(k == 2 ? cols : rows * cols);
        snprintf(s->names[k], sizeof s->names[k], "%s%s", prefix, names[k]);
        s->data[k] = malloc(n * sizeof(float));
        for (size_t i = 0; s->data[k] && i < n; i++) s->data[k][i] = pattern(seed + 7 * k, i);
        s->t[k] = (sm_ckpt_tensor){s->names[k], k == 2 ? 1 : 2, {k == 2 ? cols : rows, cols},
                                   s->data[k]};
    }
}

/* An empty copy of s (same names and shapes) to load into. */
static void tset_like(tset *d, const tset *s)
{
    *d = *s;
    for (int k = 0; k < s->n; k++) {
        size_t n = (size_t)s->t[k].shape[0] * (size_t)(s->t[k].ndim == 2 ? s->t[k].shape[1] : 1);
        d->data[k] = calloc(n, sizeof(float));
        d->t[k].name = d->names[k];
        d->t[k].data = d->data[k];
    }
}

static int tset_equal(const tset *a, const tset *b)
{
    for (int k = 0; k < a->n; k++) {
        size_t n = (size_t)a->t[k].shape[0] * (size_t)(a->t[k].ndim == 2 ? a->t[k].shape[1] : 1);
        if (memcmp(a->data[k], b->data[k], n * sizeof(float))) return 0;
    }
    return 1;
}

static void tset_free(tset *s)
{
    for (int k = 0; k < s->n; k++) free(s->data[k]);
}

static sm_ckpt_state state_for(int64_t step)
{
    sm_ckpt_state st = {0};
    st.step = -99; /* save records its step argument instead */
    st.rng[0] = 0xFFFFFFFFFFFFFFFFull;
    st.rng[1] = 0x8000000000000001ull;
    st.rng[2] = (uint64_t)step * 0x0123456789ABCDEFull;
    st.rng[3] = 42;
    st.epoch = 3;
    st.cursor = 0xFEDCBA9876543210ull;
    st.tokens = step * 1024;
    st.loss_ema = 2.718281828459045 / 3.0 + (double)step;
    st.bad_steps = 2;
    return st;
}

typedef struct ckpt {
    tset w, o;
} ckpt;

static void ckpt_init(ckpt *c, uint64_t seed, int64_t rows, int64_t cols)
{
    tset_init(&c->w, "", seed, rows, cols);
    tset_init(&c->o, "exp_avg.", seed + 1000, rows, cols);
}

static void ckpt_free(ckpt *c)
{
    tset_free(&c->w);
    tset_free(&c->o);
}

static int save(const char *run_dir, int64_t step, const ckpt *c, int keep, char *saved,
                sm_error *err)
{
    sm_ckpt_state st = state_for(step);
    sm_error_clear(err);
    char *rc_text = sm_run_config_to_text(&run, err);
    int r = rc_text ? sm_ckpt_save(run_dir, step, &cfg, rc_text, c->w.t, c->w.n, c->o.t, c->o.n,
                                   &st, &tok, keep, saved, 1024, err)
                    : -1;
    free(rc_text);
    return r;
}

/* 1 when the checkpoint at dir loads back exactly as c and state_for(step). */
static int loads_back(const char *dir, const ckpt *c, int64_t step, sm_error *err)
{
    tset w, o;
    sm_ckpt_state st, want = state_for(step);
    tset_like(&w, &c->w);
    tset_like(&o, &c->o);
    sm_error_clear(err);
    int ok = sm_ckpt_verify(dir, err) == 0 && sm_ckpt_load_state(dir, &st, err) == 0 &&
             sm_ckpt_load_tensors(dir, "model", w.t, w.n, err) == 0 &&
             sm_ckpt_load_tensors(dir, "optimizer", o.t, o.n, err) == 0 &&
             tset_equal(&w, &c->w) && tset_equal(&o, &c->o) && st.step == step &&
             memcmp(st.rng, want.rng, sizeof st.rng) == 0 && st.epoch == want.epoch &&
             st.cursor == want.cursor && st.tokens == want.tokens &&
             memcmp(&st.loss_ema, &want.loss_ema, sizeof st.loss_ema) == 0 &&
             st.bad_steps == want.bad_steps && strcmp(st.tokenizer, "tok.json") == 0;
    tset_free(&w);
    tset_free(&o);
    return ok;
}

static void flip_byte(const char *path, long from_end)
{
    FILE *f = fopen(path, "r+b");
    if (!f) return;
    fseek(f, -from_end, SEEK_END);
    int c = fgetc(f);
    fseek(f, -from_end, SEEK_END);
    fputc(c ^ 0x40, f);
    fclose(f);
}

static void file_path(char *out, const char *run_dir, const char *step_dir, const char *file)
{
    snprintf(out, 1024, "%s/%s/%s", run_dir, step_dir, file);
}

/* ---- tests ---- */

static void test_crc(void)
{
    tap_ok(sm_crc32c(0, "123456789", 9) == 0xE3069283u, "CRC-32C check value 0xE3069283");
    tap_ok(sm_crc32c(sm_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u, "CRC-32C chains");
    tap_ok(sm_crc32c(0, "", 0) == 0, "CRC-32C of nothing is 0");
}

/* Elements of tensor k of a set. */
static size_t tset_numel(const tset *s, int k)
{
    return (size_t)s->t[k].shape[0] * (size_t)(s->t[k].ndim == 2 ? s->t[k].shape[1] : 1);
}

/* An empty copy of s to load into as BF16 (bits in its float buffers). */
static void tset_like_bf16(tset *d, const tset *s)
{
    tset_like(d, s);
    for (int k = 0; k < s->n; k++) d->t[k].dtype = SM_BF16;
}

/* BF16 moments: saved as BF16 tensors, loaded back bit for bit into BF16 and widened exactly
 * into F32; F32 moments load into BF16 rounded to nearest even. */
static void test_bf16_moments(void)
{
    char run_dir[512], saved16[1024], saved32[1024];
    sm_error err = {{0}};
    ckpt c, b;
    tset d16, d32, r16;
    sm_dtype od = SM_F32, wd = SM_BF16;
    int same16 = 1, wide = 1, rounded = 1;
    ckpt_init(&c, 31, 8, 16);
    b.w = c.w;
    tset_like_bf16(&b.o, &c.o);
    for (int k = 0; k < c.o.n; k++)
        for (size_t i = 0; i < tset_numel(&c.o, k); i++)
            ((uint16_t *)b.o.data[k])[i] = sm_f32_to_bf16(c.o.data[k][i]);
    snprintf(run_dir, sizeof run_dir, "%s/run-bf16", root);
    tap_ok(save(run_dir, 2, &b, 1, saved16, &err) == 0 &&
               sm_ckpt_tensor_dtype(saved16, "optimizer", b.o.names[0], &od, &err) == 0 &&
               sm_ckpt_tensor_dtype(saved16, "model", b.w.names[0], &wd, &err) == 0 &&
               od == SM_BF16 && wd == SM_F32,
           "BF16 moments are saved as BF16 tensors beside F32 weights %s", err.msg);
    snprintf(run_dir, sizeof run_dir, "%s/run-f32", root);
    tap_ok(save(run_dir, 2, &c, 1, saved32, &err) == 0, "the same moments saved as F32 %s",
           err.msg);
    tset_like_bf16(&d16, &b.o);
    tset_like(&d32, &c.o);
    tset_like_bf16(&r16, &b.o);
    tap_ok(sm_ckpt_load_tensors(saved16, "optimizer", d16.t, d16.n, &err) == 0 &&
               sm_ckpt_load_tensors(saved16, "optimizer", d32.t, d32.n, &err) == 0 &&
               sm_ckpt_load_tensors(saved32, "optimizer", r16.t, r16.n, &err) == 0,
           "BF16 and F32 moments load into either dtype %s", err.msg);
    for (int k = 0; k < c.o.n; k++)
        for (size_t i = 0; i < tset_numel(&c.o, k); i++) {
            uint16_t h = ((uint16_t *)b.o.data[k])[i];
            float x = sm_bf16_to_f32(h);
            same16 &= ((uint16_t *)d16.data[k])[i] == h;
            wide &= memcmp(&d32.data[k][i], &x, sizeof x) == 0;
            rounded &= ((uint16_t *)r16.data[k])[i] == h;
        }
    tap_ok(same16, "BF16 moments load back into BF16 bit for bit");
    tap_ok(wide, "BF16 moments load into F32 widened exactly");
    tap_ok(rounded, "F32 moments load into BF16 rounded to nearest even");
    tset_free(&d16);
    tset_free(&d32);
    tset_free(&r16);
    tset_free(&b.o);
    ckpt_free(&c);
}

static void test_round_trip(void)
{
    char run_dir[512], saved[1024], list[1024], p[1024];
    sm_error err = {{0}};
    ckpt a, b;
    ckpt_init(&a, 1, 64, 16);
    ckpt_init(&b, 2, 64, 16);
    snprintf(run_dir, sizeof run_dir, "%s/run-n/nested", root);
    tap_ok(save(run_dir, 1, &a, 1, saved, &err) == 0 && sm_ckpt_verify(saved, &err) == 0,
           "a run folder whose parents are missing is created %s", err.msg);
    snprintf(run_dir, sizeof run_dir, "%s/run-a", root);
    int r = save(run_dir, 1, &a, 1, saved, &err);
    if (r == 0) r = save(run_dir, 2, &b, 1, saved, &err);
    listing(run_dir, list, sizeof list);
    tap_ok(r == 0 && strcmp(list, "step-000002") == 0, "keep=1: only step-000002 remains (%s) %s",
           list, err.msg);
    snprintf(p, sizeof p, "%s/step-000002", run_dir);
    tap_ok(strcmp(saved, p) == 0, "saved_path is %s", saved);
    listing(p, list, sizeof list);
    tap_ok(strcmp(list, "config.json manifest.json model.safetensors optimizer.safetensors "
                        "state.json tok.json") == 0,
           "checkpoint files: %s", list);
    tap_ok(loads_back(saved, &b, 2, &err), "tensors bitwise (NaN payload, -0, denormal, inf), "
           "state (u64 RNG words, cursor, exact loss_ema) load back %s", err.msg);

    char found[1024];
    tap_ok(sm_ckpt_latest(run_dir, found, sizeof found, &err) == 0 && strcmp(found, saved) == 0 &&
               err.msg[0] == '\0',
           "latest -> %s, nothing skipped", found);

    char *text = sm_ckpt_load_run_config(saved, &err);
    sm_run_config back;
    r = text ? sm_run_config_load_text(&back, text, "state.json", NULL, 0, &err) : -1;
    tap_ok(r == 0 && memcmp(&back, &run, sizeof run) == 0, "run config round trips %s", err.msg);
    free(text);

    char want[64], got[64];
    snprintf(p, sizeof p, "%.1000s/tok.json", saved);
    read_line(tok_path, want, sizeof want);
    read_line(p, got, sizeof got);
    tap_ok(want[0] && strcmp(want, got) == 0, "the tokenizer's bytes are written");

    sm_hf_model m;
    tset w;
    tset_like(&w, &b.w);
    r = sm_hf_open(&m, saved, &err);
    if (r == 0) {
        r = sm_hf_load_f32(&m, w.t[0].name, 2, w.t[0].shape, w.data[0], &err);
        sm_hf_close(&m);
    }
    tap_ok(r == 0 && memcmp(w.data[0], b.w.data[0], 64 * 16 * sizeof(float)) == 0,
           "the folder opens as a Hugging Face model (eval --model) %s", err.msg);
    tset_free(&w);

    tset_like(&w, &b.w);
    w.t[1].shape[0] = 32;
    tap_ok(sm_ckpt_load_tensors(saved, "model", w.t, w.n, &err) == -1 &&
               strstr(err.msg, "model.safetensors") && strstr(err.msg, w.t[1].name),
           "a shape mismatch names file and tensor: %s", err.msg);
    w.t[1].shape[0] = 64;
    w.t[2].name = "model.nonexistent.weight";
    tap_ok(sm_ckpt_load_tensors(saved, "model", w.t, w.n, &err) == -1 &&
               strstr(err.msg, "model.nonexistent.weight"),
           "a missing tensor is named: %s", err.msg);
    tap_ok(sm_ckpt_load_tensors(saved, "../x", w.t, w.n, &err) == -1, "file must be a plain name");
    tset_free(&w);

    /* saving the same step again replaces the folder */
    r = save(run_dir, 2, &a, 3, saved, &err);
    listing(run_dir, list, sizeof list);
    tap_ok(r == 0 && strcmp(list, "step-000002") == 0 && loads_back(saved, &a, 2, &err),
           "re-saving a step replaces it (%s) %s", list, err.msg);
    ckpt_free(&a);
    ckpt_free(&b);
}

static void test_corruption(void)
{
    char run_dir[512], saved[1024], found[1024], p[1024];
    sm_error err = {{0}};
    ckpt a;
    ckpt_init(&a, 3, 32, 16);
    snprintf(run_dir, sizeof run_dir, "%s/run-b", root);
    int r = save(run_dir, 10, &a, 2, saved, &err);
    if (r == 0) r = save(run_dir, 20, &a, 2, saved, &err);
    tap_ok(r == 0, "two checkpoints with keep=2 %s", err.msg);

    file_path(p, run_dir, "step-000020", "model.safetensors");
    flip_byte(p, 100);
    snprintf(found, sizeof found, "%s/step-000020", run_dir);
    tap_ok(sm_ckpt_verify(found, &err) == -1 && strstr(err.msg, "model.safetensors") &&
               strstr(err.msg, "CRC-32C mismatch: the manifest expects ") &&
               strstr(err.msg, ", the file has "),
           "a flipped byte fails verification, with the expected and found CRC: %s", err.msg);
    tap_ok(sm_ckpt_latest(run_dir, found, sizeof found, &err) == 0 &&
               strstr(found, "step-000010") && strstr(err.msg, "step-000020") &&
               strstr(err.msg, "model.safetensors"),
           "latest falls back to step-000010 and reports: %s", err.msg);
    flip_byte(p, 100);
    snprintf(found, sizeof found, "%s/step-000020", run_dir);
    tap_ok(sm_ckpt_verify(found, &err) == 0, "the byte flipped back verifies %s", err.msg);

    file_path(p, run_dir, "step-000020", "optimizer.safetensors");
    struct stat sb;
    stat(p, &sb);
    tap_ok(truncate(p, sb.st_size - 4) == 0 && sm_ckpt_verify(found, &err) == -1 &&
               strstr(err.msg, "optimizer.safetensors") && strstr(err.msg, "bytes"),
           "a truncated file fails verification: %s", err.msg);
    tap_ok(sm_ckpt_latest(run_dir, found, sizeof found, &err) == 0 &&
               strstr(found, "step-000010"),
           "latest falls back to step-000010");

    file_path(p, run_dir, "step-000020", "manifest.json");
    unlink(p);
    snprintf(found, sizeof found, "%s/step-000020", run_dir);
    tap_ok(sm_ckpt_verify(found, &err) == -1 && strstr(err.msg, "manifest.json"),
           "a missing manifest fails verification: %s", err.msg);
    tap_ok(sm_ckpt_latest(run_dir, found, sizeof found, &err) == 0 &&
               strstr(found, "step-000010"),
           "latest skips the folder without a manifest");

    file_path(p, run_dir, "step-000010", "state.json");
    write_text(p, "{}");
    int lr = sm_ckpt_latest(run_dir, found, sizeof found, &err);
    tap_ok(lr == 1 && strstr(err.msg, "no complete checkpoint") &&
               strstr(err.msg, "state.json"),
           "no complete checkpoint left: %s", err.msg);
    snprintf(p, sizeof p, "%s/never-made", root);
    tap_ok(sm_ckpt_latest(p, found, sizeof found, &err) == 1, "a missing run folder has none");

    file_path(p, run_dir, "step-000010", "manifest.json");
    write_text(p, "{\"format\": \"starmoe-checkpoint\", \"version\": 1, \"step\": 10, "
                  "\"files\": {\"model.safetensors\": {\"size\": 1, \"crc32c\": \"0\"}}}");
    snprintf(found, sizeof found, "%s/step-000010", run_dir);
    tap_ok(sm_ckpt_verify(found, &err) == -1 && strstr(err.msg, "manifest.json") &&
               strstr(err.msg, "neither optimizer.safetensors nor"),
           "a manifest that leaves a core file out: %s", err.msg);
    write_text(p, "{\"format\": \"starmoe-checkpoint\", \"version\": 1, \"step\": 10, "
                  "\"files\": {\"../../etc/passwd\": {\"size\": 1, \"crc32c\": \"0\"}, "
                  "\"model.safetensors\": 1, \"optimizer.safetensors\": 1, \"config.json\": 1, "
                  "\"state.json\": 1}}");
    tap_ok(sm_ckpt_verify(found, &err) == -1 && strstr(err.msg, "not a plain file name"),
           "a manifest naming a path outside: %s", err.msg);
    write_text(p, "{\"format\": \"starmoe-checkpoint\", \"version\": 2, \"step\": 10, "
                  "\"files\": {}}");
    tap_ok(sm_ckpt_verify(found, &err) == -1 && strstr(err.msg, "field 'version'"),
           "another manifest version: %s", err.msg);
    ckpt_free(&a);
}

/* The whole file, malloc'd (NULL when unreadable), its size in *n. */
static char *read_all(const char *path, long *n)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    if (f && fseek(f, 0, SEEK_END) == 0 && (*n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = calloc((size_t)*n + 1, 1)) && fread(buf, 1, (size_t)*n, f) != (size_t)*n) {
        free(buf);
        buf = NULL;
    }
    if (f) fclose(f);
    return buf;
}

/* Checkpoints whose CRCs match but whose parts disagree are refused, naming what disagrees. */
static void test_inconsistent(void)
{
    char run_dir[512], saved[1024], moved[1024], p[1024], found[1024];
    sm_error err = {{0}};
    sm_ckpt_state st;
    ckpt a;
    ckpt_init(&a, 7, 16, 8);
    snprintf(run_dir, sizeof run_dir, "%s/run-e", root);
    int r = save(run_dir, 4, &a, 3, saved, &err);
    snprintf(moved, sizeof moved, "%s/step-000005", run_dir);
    tap_ok(r == 0 && rename(saved, moved) == 0 && sm_ckpt_verify(moved, &err) == -1 &&
               strstr(err.msg, "manifest.json: field 'step' is 4") &&
               strstr(err.msg, "checkpoint of step 5"),
           "a folder renamed to another step fails verification: %s", err.msg);
    tap_ok(sm_ckpt_latest(run_dir, found, sizeof found, &err) == 1 &&
               strstr(err.msg, "no complete checkpoint") && strstr(err.msg, "inconsistent"),
           "and is no complete checkpoint: %s", err.msg);
    rename(moved, saved);

    long n = 0;
    snprintf(p, sizeof p, "%.1000s/state.json", saved);
    char *text = read_all(p, &n), *at = text ? strstr(text, "\"step\": 4,") : NULL;
    if (at) at[8] = '5';
    if (at) write_text(p, text);
    free(text);
    sm_error_clear(&err);
    tap_ok(at && tu_ckpt_reseal(saved, 4) == 0 && sm_ckpt_verify(saved, &err) == 0,
           "a forged state.json with a resealed manifest verifies %s", err.msg);
    tap_ok(sm_ckpt_load_state(saved, &st, &err) == -1 && strstr(err.msg, "state.json") &&
               strstr(err.msg, "field 'step' is 5") && strstr(err.msg, "checkpoint of step 4"),
           "but its state's step is refused: %s", err.msg);
    ckpt_free(&a);
}

static pid_t dead_pid(void)
{
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    waitpid(pid, NULL, 0);
    return pid;
}

static void test_stale_and_pruning(void)
{
    char run_dir[512], saved[1024], found[1024], p[1024], live[1024], list[1024];
    sm_error err = {{0}};
    ckpt a;
    ckpt_init(&a, 4, 16, 8);
    snprintf(run_dir, sizeof run_dir, "%s/run-c", root);
    int r = save(run_dir, 5, &a, 3, saved, &err);
    snprintf(p, sizeof p, "%s/.tmp-step-000006-%ld", run_dir, (long)dead_pid());
    mkdir(p, 0755);
    snprintf(found, sizeof found, "%.1000s/model.safetensors", p);
    write_text(found, "partial");
    snprintf(live, sizeof live, "%s/.tmp-step-000006-%ld", run_dir, (long)getppid());
    mkdir(live, 0755);
    tap_ok(r == 0 && sm_ckpt_latest(run_dir, found, sizeof found, &err) == 0 &&
               strstr(found, "step-000005"),
           "latest ignores .tmp folders");
    r = save(run_dir, 7, &a, 3, saved, &err);
    struct stat sb;
    tap_ok(r == 0 && stat(p, &sb) != 0 && errno == ENOENT,
           "the next save removes a stale .tmp folder (dead owner) %s", err.msg);
    tap_ok(stat(live, &sb) != 0 && errno == ENOENT,
           "and one named after a live process (pids are reused: the saver owns the folder)");

    r = save(run_dir, 9, &a, 3, saved, &err);
    if (r == 0) r = save(run_dir, 11, &a, 3, saved, &err);
    listing(run_dir, list, sizeof list);
    tap_ok(r == 0 && strcmp(list, "step-000007 step-000009 step-000011") == 0,
           "keep=3 keeps the three newest: %s", list);
    r = save(run_dir, 8, &a, 3, saved, &err);
    listing(run_dir, list, sizeof list);
    tap_ok(r == 0 && strcmp(list, "step-000007 step-000008") == 0,
           "saving step 8 after a resume removes the later steps: %s", list);
    snprintf(p, sizeof p, "%s/step-99", run_dir);
    mkdir(p, 0755);
    tap_ok(sm_ckpt_latest(run_dir, found, sizeof found, &err) == 0 &&
               strstr(found, "step-000008"),
           "a folder not named like a checkpoint (step-99) is ignored");
    rmdir(p);
    r = save(run_dir, 1000000, &a, 1, saved, &err);
    listing(run_dir, list, sizeof list);
    tap_ok(r == 0 && strcmp(list, "step-1000000") == 0 &&
               sm_ckpt_latest(run_dir, found, sizeof found, &err) == 0 &&
               strstr(found, "step-1000000"),
           "steps beyond 6 digits sort by value: %s", list);

    sm_ckpt_state st = state_for(1);
    sm_ckpt_file bad_tok = {"state.json", "{}", 2};
    tap_ok(sm_ckpt_save(run_dir, 2, &cfg, NULL, a.w.t, a.w.n, NULL, 0, &st, &bad_tok, 1, NULL, 0,
                        &err) == -1 && strstr(err.msg, "clashes"),
           "a tokenizer named like a checkpoint file: %s", err.msg);
    bad_tok.name = "../tok.json";
    tap_ok(sm_ckpt_save(run_dir, 2, &cfg, NULL, a.w.t, a.w.n, NULL, 0, &st, &bad_tok, 1, NULL, 0,
                        &err) == -1 && strstr(err.msg, "unusable tokenizer file name"),
           "a tokenizer name with a folder: %s", err.msg);
    st.loss_ema = NAN;
    tap_ok(sm_ckpt_save(run_dir, 2, &cfg, NULL, a.w.t, a.w.n, NULL, 0, &st, NULL, 1, NULL, 0,
                        &err) == -1 && strstr(err.msg, "state.json") && strstr(err.msg, "loss_ema"),
           "a NaN loss_ema: %s", err.msg);
    a.w.t[0].ndim = 5;
    tap_ok(sm_ckpt_save(run_dir, 2, &cfg, NULL, a.w.t, a.w.n, NULL, 0, &st, NULL, 1, NULL, 0,
                        &err) == -1 && strstr(err.msg, "5 dims"),
           "a 5-dim tensor: %s", err.msg);
    a.w.t[0].ndim = 2;
    listing(run_dir, list, sizeof list);
    tap_ok(strcmp(list, "step-1000000") == 0, "failed saves leave nothing behind: %s", list);
    st.loss_ema = 1;
    r = sm_ckpt_save(run_dir, 3, &cfg, NULL, a.w.t, a.w.n, NULL, 0, &st, NULL, 1, saved,
                     sizeof saved, &err);
    tap_ok(r == 0 && sm_ckpt_load_run_config(saved, &err) == NULL &&
               strstr(err.msg, "run_config"),
           "no optimizer, no tokenizer, no run config: %s", err.msg);
    ckpt_free(&a);
}

/* 1 when dir/step-<step> exists. */
static int has_step(const char *run_dir, const char *name)
{
    char p[1024];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", run_dir, name);
    return stat(p, &sb) == 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* One trial: a small step-100, then a child saving a large step-200 killed after delay_us
 * (never when negative); the survivor must verify and load, and the next save cleans up. */
static void kill_trial(int trial, int delay_us, const ckpt *small, const ckpt *big)
{
    char run_dir[512], found[1024], list[1024];
    sm_error err = {{0}};
    snprintf(run_dir, sizeof run_dir, "%s/kill-%d", root, trial);
    if (save(run_dir, 100, small, 1, NULL, &err)) {
        tap_ok(0, "kill trial %d: first save %s", trial, err.msg);
        return;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) _exit(save(run_dir, 200, big, 1, NULL, NULL) == 0 ? 0 : 1);
    if (delay_us >= 0) {
        usleep((useconds_t)delay_us);
        kill(pid, SIGKILL);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    int completed = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    int lr = sm_ckpt_latest(run_dir, found, sizeof found, &err);
    int at200 = lr == 0 && strstr(found, "step-000200") != NULL;
    int ok = lr == 0 && (at200 ? loads_back(found, big, 200, &err)
                               : strstr(found, "step-000100") && !completed &&
                                     loads_back(found, small, 100, &err));
    int new_ok = !has_step(run_dir, "step-000200") || at200;
    tap_ok(ok && new_ok, "kill after %d us (%s): latest is %s and loads %s", delay_us,
           completed ? "save completed" : "killed", at200 ? "step-000200" : "step-000100",
           err.msg);
    int r = save(run_dir, 300, small, 1, NULL, &err);
    listing(run_dir, list, sizeof list);
    tap_ok(r == 0 && strcmp(list, "step-000300") == 0,
           "kill after %d us: the next save leaves only step-000300 (%s)", delay_us, list);
}

static void test_kill(void)
{
    ckpt small, big;
    char run_dir[512];
    sm_error err = {{0}};
    ckpt_init(&small, 5, 16, 8);
    ckpt_init(&big, 6, 3072, 1024); /* 24 MiB of weights, 24 MiB of moments */
    snprintf(run_dir, sizeof run_dir, "%s/kill-timing", root);
    double t0 = now_ms();
    int r = save(run_dir, 1, &big, 1, NULL, &err);
    double ms = now_ms() - t0;
    tap_ok(r == 0, "a large save (48 MiB) takes %.0f ms %s", ms, err.msg);
    int delays[] = {0, 1000, 5000, 20000, -2, -3, -5, -7, -9, -1};
    for (int i = 0; i < (int)(sizeof delays / sizeof *delays); i++) {
        /* negative k < -1: k-th fraction of the measured save time, to land inside it */
        int d = delays[i] < -1 ? (int)(ms * 1000 * (-delays[i] - 1) / 10) : delays[i];
        kill_trial(i, d, &small, &big);
    }
    ckpt_free(&small);
    ckpt_free(&big);
}

/* Saving in shards, as the ranks of expert parallelism do: the tensors split over three
 * writers (one of them writing nothing but its share of the moments), one folder with
 * Hugging Face's shard names and indexes, every tensor loading back by name, the folder opening
 * as a Hugging Face model; a tensor written by two shards is refused. */
static void test_shards(void)
{
    sm_error err = {{0}};
    char run_dir[600], tmp[1024], saved[1024], list[1024], p[1200];
    ckpt a, back;
    ckpt_init(&a, 11, 64, 16);
    sm_ckpt_state st = state_for(3);
    char *rc_text = sm_run_config_to_text(&run, &err);
    snprintf(run_dir, sizeof run_dir, "%s/run-shards", root);
    int r = sm_ckpt_save_begin(run_dir, 3, "ranks3", tmp, sizeof tmp, &err);
    /* shard 0: tensor 0 and its moment; 1: tensors 1, 2; 2: the moments of 1 and 2 */
    if (r == 0) r = sm_ckpt_save_shard(tmp, 0, 3, a.w.t, 1, a.o.t, 1, &err);
    if (r == 0) r = sm_ckpt_save_shard(tmp, 1, 3, a.w.t + 1, 2, a.o.t, 0, &err);
    if (r == 0) r = sm_ckpt_save_shard(tmp, 2, 3, a.w.t, 0, a.o.t + 1, 2, &err);
    if (r == 0)
        r = sm_ckpt_save_finish(run_dir, tmp, 3, 3, &cfg, rc_text, &st, &tok, 2, saved,
                                sizeof saved, &err);
    listing(saved, list, sizeof list);
    tap_ok(r == 0 && strstr(list, "model-00001-of-00003.safetensors model-00002-of-00003."
                                  "safetensors model-00003-of-00003.safetensors model.safetensors"
                                  ".index.json optimizer-00001-of-00003") &&
               strstr(list, "optimizer.safetensors.index.json") && sm_ckpt_verify(saved, &err) == 0,
           "three shards: %s %s", list, err.msg);
    tset_like(&back.w, &a.w);
    tset_like(&back.o, &a.o);
    r = sm_ckpt_load_tensors(saved, "model", back.w.t, back.w.n, &err) ||
        sm_ckpt_load_tensors(saved, "optimizer", back.o.t, back.o.n, &err);
    tap_ok(r == 0 && tset_equal(&a.w, &back.w) && tset_equal(&a.o, &back.o),
           "every tensor loads back by name, bit for bit %s", err.msg);
    sm_hf_model m;
    r = sm_hf_open(&m, saved, &err);
    tap_ok(r == 0 && m.nfiles == 2 && m.nnames == a.w.n,
           "the folder opens as a Hugging Face model (%d shards with weights, %d tensors) %s",
           r ? 0 : m.nfiles, r ? 0 : m.nnames, err.msg);
    if (r == 0) sm_hf_close(&m);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", saved);
    json_error_t jerr;
    json_t *index = json_load_file(p, 0, &jerr);
    json_int_t total = json_integer_value(json_object_get(json_object_get(index, "metadata"),
                                                          "total_size"));
    tap_ok(total == (64 * 16 + 64 * 16 + 16) * 4 &&
               json_object_size(json_object_get(index, "weight_map")) == 3,
           "the index records every tensor and the total size (%lld bytes)", (long long)total);
    json_decref(index);

    r = sm_ckpt_save_begin(run_dir, 4, "ranks2", tmp, sizeof tmp, &err);
    if (r == 0) r = sm_ckpt_save_shard(tmp, 0, 2, a.w.t, 2, a.o.t, 3, &err);
    if (r == 0) r = sm_ckpt_save_shard(tmp, 1, 2, a.w.t + 1, 2, a.o.t, 0, &err);
    if (r == 0)
        r = sm_ckpt_save_finish(run_dir, tmp, 4, 2, &cfg, rc_text, &st, &tok, 2, saved,
                                sizeof saved, &err);
    if (r) sm_ckpt_save_abandon(tmp);
    tap_ok(r == -1 && strstr(err.msg, a.w.t[1].name) && strstr(err.msg, "also in"),
           "a tensor in two shards is refused: %s", err.msg);
    tap_ok(sm_ckpt_latest(run_dir, p, sizeof p, &err) == 0 && strstr(p, "step-000003"),
           "the earlier checkpoint stays the latest: %s", p);
    free(rc_text);
    tset_free(&back.w);
    tset_free(&back.o);
    ckpt_free(&a);
}

int main(void)
{
    sm_error err = {{0}};
    char p[1024];
    if (!mkdtemp(root)) return tap_ok(0, "mkdtemp"), tap_done();
    snprintf(p, sizeof p, "%s/model.json", root);
    snprintf(tok_path, sizeof tok_path, "%s/tok.json", root);
    write_text(p, model_json);
    write_text(tok_path, tok_text);
    sm_run_config_defaults(&run);
    if (sm_config_load_json(&cfg, p, &err))
        return tap_ok(0, "model config: %s", err.msg), tap_done();
    memcpy(&run.model, &cfg, sizeof cfg);
    run.data.vocab_size = cfg.vocab_size;
    run.train.seq_len = 32;
    snprintf(run.data.tokenizer, sizeof run.data.tokenizer, "%s", tok_path);
    test_crc();
    test_round_trip();
    test_bf16_moments();
    test_shards();
    test_corruption();
    test_inconsistent();
    test_stale_and_pruning();
    test_kill();
    remove_tree(root);
    return tap_done();
}
