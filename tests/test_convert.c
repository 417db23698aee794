/* Tests of io/convert.c below the CLI: which names are FP8 linear weights, and a folder with a
 * [130, 257] expert weight (partial 128x128 blocks), a router, a BF16 norm and an integer
 * tensor converted to fp8 (the weight's codes and scales bitwise sm_fp8_quantize_blocks', the
 * rest unchanged) and back to f32 (bitwise the dequantised codes, BF16 widened). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/atomic_file.h"
#include "base/file.h"
#include "base/fp8_quant.h"
#include "io/convert.h"
#include "io/safetensors.h"
#include "tests/tap.h"
#include "tests/testutil.h"

enum { R = 130, C = 257 };
#define UP "model.layers.1.mlp.experts.0.up_proj.weight"

static void test_names(void)
{
    static const struct { const char *name; int linear; } cases[] = {
        {"model.layers.0.self_attn.q_a_proj.weight", 1},
        {"model.layers.0.self_attn.kv_a_proj_with_mqa.weight", 1},
        {"model.layers.0.self_attn.o_proj.weight", 1}, {"model.layers.0.mlp.down_proj.weight", 1},
        {"model.layers.3.mlp.shared_experts.gate_proj.weight", 1},
        {"model.layers.3.mlp.gate.weight", 0},
        {"model.layers.3.mlp.gate.e_score_correction_bias", 0},
        {"model.layers.0.self_attn.o_proj.weight_scale_inv", 0},
        {"model.layers.0.self_attn.q_a_layernorm.weight", 0}, {"model.embed_tokens.weight", 0},
        {"lm_head.weight", 0}, {"model.layers.61.eh_proj.weight", 0}, {"xo_proj.weight", 0},
        {"up_proj.weight", 0},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (sm_hf_is_fp8_linear(cases[i].name) != cases[i].linear) {
            bad++;
            tap_diag("%s: expected %d", cases[i].name, cases[i].linear);
        }
    tap_ok(bad == 0, "the MLA projections and FFN/expert gate/up/down are the FP8 linear weights "
           "(%d wrong)", bad);
}

/* Reads tensor name of dir/model.safetensors raw into a malloc'd buffer; checks the dtype. */
static void *read_tensor(const char *dir, const char *name, sm_dtype want)
{
    char path[512];
    sm_st_file f;
    sm_error err = {{0}};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (sm_st_open(&f, path, &err)) {
        tap_diag("%s", err.msg);
        return NULL;
    }
    const sm_st_tensor *t = sm_st_find(&f, name);
    void *raw = t && t->dtype == want ? sm_st_load_raw(&f, t, &err) : NULL;
    sm_st_close(&f);
    return raw;
}

static int write_source(const char *dir, const float *w, const float *router,
                        const uint16_t *norm, const int32_t *ids)
{
    char path[512], cfg[512];
    sm_error err = {{0}};
    size_t n;
    snprintf(cfg, sizeof cfg, "%s/tests/fixtures/dsv3-tiny-a/config.json", tu_srcdir());
    char *text = sm_read_file(cfg, &n, &err);
    snprintf(path, sizeof path, "%s/config.json", dir);
    int rc = text ? sm_atomic_write_file(path, text, n, &err) : -1;
    free(text);
    sm_st_writer *wr = sm_st_writer_new();
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    rc = rc || sm_st_writer_add(wr, UP, SM_F32, 2, (int64_t[]){R, C}, w, &err) ||
         sm_st_writer_add(wr, "model.layers.1.mlp.gate.weight", SM_F32, 2, (int64_t[]){2, 3},
                          router, &err) ||
         sm_st_writer_add(wr, "model.norm.weight", SM_BF16, 1, (int64_t[]){3}, norm, &err) ||
         sm_st_writer_add(wr, "ids", SM_I32, 1, (int64_t[]){2}, ids, &err) ||
         sm_st_writer_write(wr, path, &err);
    sm_st_writer_free(wr);
    if (rc) tap_diag("%s", err.msg);
    return rc;
}

static void test_round_trip(void)
{
    char src[] = "/tmp/test_convert.XXXXXX", fp8[64], f32[64];
    if (!mkdtemp(src)) return;
    snprintf(fp8, sizeof fp8, "%s/fp8", src);
    snprintf(f32, sizeof f32, "%s/f32", src);
    tu_rng rng;
    tu_seed(&rng, 5);
    float *w = tu_alloc_randn(&rng, R * C, 0.02f), router[6] = {1, 2, 3, 4, 5, 6}, back[R * C];
    float *want_s = malloc(2 * 3 * sizeof *want_s);
    uint16_t norm[3] = {0x3F80, 0xC000, 0x4049};
    int32_t ids[2] = {7, -1};
    static uint8_t want_q[R * C];
    sm_error err = {{0}};
    sm_fp8_quantize_blocks(w, R, C, want_q, want_s);
    int rc = write_source(src, w, router, norm, ids) || sm_hf_convert(src, "fp8", fp8, &err);
    tap_ok(rc == 0, "a folder with a [130, 257] expert weight converts to fp8 %s", err.msg);
    uint8_t *q = read_tensor(fp8, UP, SM_F8_E4M3);
    float *s = read_tensor(fp8, UP "_scale_inv", SM_F32), *rt = read_tensor(fp8,
                                                   "model.layers.1.mlp.gate.weight", SM_F32);
    uint16_t *nm = read_tensor(fp8, "model.norm.weight", SM_BF16);
    int32_t *id = read_tensor(fp8, "ids", SM_I32);
    tap_ok(q && s && !memcmp(q, want_q, sizeof want_q) && !memcmp(s, want_s, 6 * sizeof *s),
           "its codes and 2x3 scales are bitwise sm_fp8_quantize_blocks'");
    tap_ok(rt && nm && id && !memcmp(rt, router, sizeof router) && !memcmp(nm, norm, sizeof norm)
               && !memcmp(id, ids, sizeof ids),
           "the router (F32), the norm (BF16) and the I32 tensor are kept as they are");
    rc = sm_hf_convert(fp8, "f32", f32, &err);
    tap_ok(rc == 0, "and back to f32 %s", err.msg);
    float *wf = read_tensor(f32, UP, SM_F32), *nf = read_tensor(f32, "model.norm.weight", SM_F32);
    sm_fp8_dequantize_blocks(back, want_q, want_s, R, C);
    tap_ok(wf && !memcmp(wf, back, sizeof back) && nf && nf[0] == 1 && nf[1] == -2 &&
               nf[2] == 3.140625f,
           "f32: the weight is bitwise the dequantised codes, the BF16 norm widened");
    tap_ok(sm_hf_convert(src, "fp8", fp8, &err) == -1 && strstr(err.msg, "not empty"),
           "an existing non-empty output is refused: %s", err.msg);
    free(w), free(want_s), free(q), free(s), free(rt), free(nm), free(id), free(wf), free(nf);
    sm_remove_tree(src, NULL);
}

int main(void)
{
    alarm(60);
    test_names();
    test_round_trip();
    return tap_done();
}
