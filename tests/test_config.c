/* Tests of io/config_json.c: the fixture and bench configs load with the right values; each kind
 * of bad config.json (unknown, missing, mistyped, inconsistent or absurd field) is an error that
 * starts with the path and names the field; accepted variants; save + load round trips. */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <starmoe/config.h>
#include "tests/tap.h"
#include "tests/testutil.h"

static char dir[] = "/tmp/starmoe-cfg-XXXXXX";
static char cfg_path[512], fixture[512];

/* Deletes the files of the (flat) temp dir, then the dir. */
static void remove_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[1024];
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    if (d) closedir(d);
    rmdir(dir);
}

static json_t *fixture_json(void)
{
    json_t *j = json_load_file(fixture, 0, NULL);
    if (!j) tap_diag("cannot read %s", fixture);
    return j;
}

/* Writes j (stolen) as the temp config.json and loads it. */
static int load_json(json_t *j, sm_config *c, sm_error *err)
{
    json_dump_file(j, cfg_path, JSON_INDENT(1));
    json_decref(j);
    return sm_config_load_json(c, cfg_path, err);
}

/* Loading must fail with a message that starts with the path and contains each of words. */
static void expect_fail(json_t *j, const char *what, const char *w1, const char *w2)
{
    sm_config c;
    sm_error err = {{0}};
    int rc = load_json(j, &c, &err);
    tap_ok(rc == -1 && strncmp(err.msg, cfg_path, strlen(cfg_path)) == 0 && strstr(err.msg, w1) &&
               (!w2 || strstr(err.msg, w2)),
           "%s -> %s", what, err.msg);
}

static void expect_set_fail(const char *key, json_t *value, const char *w1, const char *w2)
{
    json_t *j = fixture_json();
    char what[128];
    char *v = json_dumps(value, JSON_ENCODE_ANY);
    snprintf(what, sizeof what, "%s = %s", key, v);
    free(v);
    json_object_set_new(j, key, value);
    expect_fail(j, what, w1, w2);
}

static void expect_del_fail(const char *key, const char *w1)
{
    json_t *j = fixture_json();
    char what[128];
    snprintf(what, sizeof what, "without %s", key);
    json_object_del(j, key);
    expect_fail(j, what, w1, "missing");
}

static void expect_rope_fail(const char *key, json_t *value, const char *w1, const char *what)
{
    json_t *j = fixture_json();
    json_t *r = json_object_get(j, "rope_scaling");
    if (value)
        json_object_set_new(r, key, value);
    else
        json_object_del(r, key);
    expect_fail(j, what, w1, NULL);
}

static void test_fixture(void)
{
    sm_config c;
    sm_error err = {{0}};
    int rc = sm_config_load_json(&c, fixture, &err);
    tap_ok(rc == 0, "fixture config loads %s", err.msg);
    tap_ok(c.hidden_size == 64 && c.vocab_size == 256 && c.num_hidden_layers == 3,
           "hidden 64, vocab 256, 3 layers");
    tap_ok(c.n_routed_experts == 8 && c.num_experts_per_tok == 2 && c.n_group == 4 &&
               c.topk_group == 2 && c.n_shared_experts == 1,
           "E 8, K 2, G 4, Gk 2, Ns 1");
    tap_ok(c.q_lora_rank == 32 && c.kv_lora_rank == 32 && c.qk_nope_head_dim == 16 &&
               c.qk_rope_head_dim == 8 && c.v_head_dim == 16,
           "MLA sizes");
    tap_ok(c.routed_scaling_factor == 2.5 && c.rms_norm_eps == 1e-6 && c.rope_theta == 10000,
           "routed_scaling_factor, eps, theta");
    tap_ok(c.rope_scaling.present && c.rope_scaling.factor == 1.0 &&
               c.rope_scaling.original_max_position_embeddings == 64 &&
               c.rope_scaling.beta_fast == 32 && c.rope_scaling.mscale_all_dim == 1.0,
           "rope_scaling present, factor 1");
    tap_ok(!sm_config_yarn_active(&c), "YaRN inactive (factor 1, 64 = 64)");
    tap_ok(!c.fp8 && c.fp8_block[0] == 128 && !c.tie_word_embeddings && c.norm_topk_prob &&
               strcmp(c.scoring_func, "sigmoid") == 0 && strcmp(c.topk_method, "noaux_tc") == 0,
           "defaults: no fp8, block 128, untied, sigmoid, noaux_tc");
    tap_ok(!sm_config_layer_is_moe(&c, 0) && sm_config_layer_is_moe(&c, 1) &&
               sm_config_layer_is_moe(&c, 2),
           "layer 0 dense, layers 1-2 MoE");
    c.moe_layer_freq = 2;
    tap_ok(sm_config_layer_is_moe(&c, 1) && !sm_config_layer_is_moe(&c, 2) &&
               sm_config_layer_is_moe(&c, 3),
           "moe_layer_freq 2: every other layer after the dense ones");
    c.moe_layer_freq = 1;
    c.rope_scaling.factor = 4;
    c.rope_scaling.original_max_position_embeddings = 32;
    tap_ok(sm_config_yarn_active(&c), "YaRN active with factor 4 and 64 > 32");
    c.max_position_embeddings = 32;
    tap_ok(!sm_config_yarn_active(&c), "YaRN inactive when max_position_embeddings = original");
}

static void test_bench(void)
{
    char p[512];
    sm_config c;
    sm_error err = {{0}};
    snprintf(p, sizeof p, "%s/configs/bench-6m.json", tu_srcdir());
    tap_ok(sm_config_load_json(&c, p, &err) == 0 && c.hidden_size == 256 &&
               c.n_routed_experts == 16 && c.num_experts_per_tok == 4 && c.vocab_size == 1024,
           "bench-6m.json loads (d 256, E 16, K 4) %s", err.msg);
}

static void test_field_errors(void)
{
    expect_set_fail("hiden_size", json_integer(64), "unknown field 'hiden_size'",
                    "did you mean 'hidden_size'");
    expect_set_fail("frobnicate", json_true(), "unknown field 'frobnicate'", NULL);
    expect_del_fail("hidden_size", "'hidden_size'");
    expect_del_fail("rope_theta", "'rope_theta'");
    expect_del_fail("n_group", "'n_group'");
    expect_set_fail("hidden_size", json_string("64"), "field 'hidden_size'", "integer");
    expect_set_fail("hidden_size", json_real(64.5), "field 'hidden_size'", "integer");
    expect_set_fail("hidden_size", json_integer(-4), "field 'hidden_size'", "range");
    expect_set_fail("hidden_size", json_integer(1LL << 40), "field 'hidden_size'", "range");
    expect_set_fail("norm_topk_prob", json_string("yes"), "field 'norm_topk_prob'", NULL);
    expect_set_fail("rms_norm_eps", json_string("1e-6"), "field 'rms_norm_eps'", "number");
    expect_set_fail("n_group", json_integer(3), "field 'n_group': 3 does not divide "
                    "n_routed_experts 8", NULL);
    expect_set_fail("n_group", json_integer(8), "field 'n_group'", "at least 2");
    expect_set_fail("topk_group", json_integer(5), "field 'topk_group'", NULL);
    expect_set_fail("num_experts_per_tok", json_integer(5), "field 'num_experts_per_tok'", NULL);
    expect_set_fail("num_experts_per_tok", json_integer(0), "field 'num_experts_per_tok'", NULL);
    expect_set_fail("vocab_size", json_integer(1 << 23), "field 'vocab_size'", "range");
    expect_set_fail("num_hidden_layers", json_integer(5000), "field 'num_hidden_layers'", NULL);
    expect_set_fail("hidden_size", json_integer(1 << 25), "field 'hidden_size'", NULL);
    expect_set_fail("n_routed_experts", json_integer(8192), "field 'n_routed_experts'", NULL);
    expect_set_fail("num_attention_heads", json_integer(0), "field 'num_attention_heads'", NULL);
    expect_set_fail("qk_rope_head_dim", json_integer(7), "field 'qk_rope_head_dim'", "odd");
    expect_set_fail("first_k_dense_replace", json_integer(4), "field 'first_k_dense_replace'",
                    NULL);
    expect_set_fail("tie_word_embeddings", json_true(), "field 'tie_word_embeddings'", NULL);
    expect_set_fail("scoring_func", json_string("softmax"), "field 'scoring_func'", NULL);
    expect_set_fail("topk_method", json_string("greedy"), "field 'topk_method'", NULL);
    expect_set_fail("model_type", json_string("llama"), "field 'model_type'", NULL);
    expect_set_fail("hidden_act", json_string("gelu"), "field 'hidden_act'", NULL);
    expect_set_fail("attention_bias", json_true(), "field 'attention_bias'", NULL);
    expect_set_fail("eos_token_id", json_integer(256), "field 'eos_token_id'", NULL);
    expect_set_fail("quantization_config",
                    json_pack("{s:s, s:i}", "quant_method", "gptq", "bits", 4),
                    "field 'quantization_config.quant_method'", "fp8");
    expect_set_fail("quantization_config",
                    json_pack("{s:s, s:[i]}", "quant_method", "fp8", "weight_block_size", 128),
                    "field 'quantization_config.weight_block_size'", NULL);
    expect_set_fail("rope_scaling", json_integer(1), "field 'rope_scaling'", NULL);
}

static void test_rope_errors(void)
{
    expect_rope_fail("type", json_string("linear"), "field 'rope_scaling.type'", "type linear");
    expect_rope_fail("type", NULL, "field 'rope_scaling.type'", "rope_scaling without type");
    expect_rope_fail("factr", json_real(2), "did you mean 'rope_scaling.factor'",
                     "rope_scaling.factr");
    expect_rope_fail("factor", NULL, "'rope_scaling.factor'", "rope_scaling without factor");
    expect_rope_fail("factor", json_real(0.5), "field 'rope_scaling.factor'", "factor 0.5");
}

static void test_file_errors(void)
{
    sm_config c;
    sm_error err;
    FILE *f = fopen(cfg_path, "w");
    fputs("{\"hidden_size\": 64, \"hidden_size\": 65}", f);
    fclose(f);
    tap_ok(sm_config_load_json(&c, cfg_path, &err) == -1 && strstr(err.msg, "duplicate") &&
               strstr(err.msg, cfg_path),
           "duplicate key -> %s", err.msg);
    f = fopen(cfg_path, "w");
    fputs("[1, 2]", f);
    fclose(f);
    tap_ok(sm_config_load_json(&c, cfg_path, &err) == -1 && strstr(err.msg, "object"),
           "not an object -> %s", err.msg);
    tap_ok(sm_config_load_json(&c, "/nonexistent-starmoe/config.json", &err) == -1 &&
               strstr(err.msg, "/nonexistent-starmoe/config.json: cannot open: not found"),
           "missing file -> %s", err.msg);
    tap_ok(sm_config_load_json(&c, dir, &err) == -1 &&
               strstr(err.msg, "cannot open: is a folder, expected a file"),
           "a folder is reported as a folder, not as unparsable -> %s", err.msg);
    char fifo[sizeof dir + 16];
    snprintf(fifo, sizeof fifo, "%s/fifo.json", dir);
    mkfifo(fifo, 0600);
    alarm(10);   /* a regression that blocks on the FIFO fails instead of hanging */
    tap_ok(sm_config_load_json(&c, fifo, &err) == -1 &&
               strstr(err.msg, "fifo.json: cannot open: not a regular file (a FIFO)"),
           "a FIFO, without blocking -> %s", err.msg);
    alarm(0);
    unlink(fifo);
    symlink("fifo.json", fifo);
    tap_ok(sm_config_load_json(&c, fifo, &err) == -1 &&
               strstr(err.msg, "fifo.json: cannot open: a symbolic link loop"),
           "a symbolic link loop is not reported as missing -> %s", err.msg);
    unlink(fifo);
}

static void test_accepted_variants(void)
{
    sm_config c;
    sm_error err = {{0}};
    json_t *j = fixture_json();
    json_object_set_new(j, "q_lora_rank", json_null());
    json_object_set_new(j, "transformers_version", json_string("4.46.3"));
    json_object_set_new(j, "use_cache", json_true());
    json_object_set_new(j, "aux_loss_alpha", json_real(0.001));
    json_object_set_new(j, "pad_token_id", json_null());
    tap_ok(load_json(j, &c, &err) == 0 && c.q_lora_rank == 0,
           "q_lora_rank null -> 0; known HF fields ignored %s", err.msg);

    j = fixture_json();
    json_object_set_new(j, "quantization_config",
                        json_pack("{s:s, s:s, s:s, s:[i,i]}", "quant_method", "fp8", "fmt", "e4m3",
                                  "activation_scheme", "dynamic", "weight_block_size", 32, 64));
    tap_ok(load_json(j, &c, &err) == 0 && c.fp8 && c.fp8_block[0] == 32 && c.fp8_block[1] == 64,
           "quantization_config fp8 with block [32, 64] %s", err.msg);

    j = fixture_json();
    json_object_set_new(j, "rope_scaling", json_null());
    tap_ok(load_json(j, &c, &err) == 0 && !c.rope_scaling.present, "rope_scaling null %s",
           err.msg);

    j = fixture_json();
    json_object_set_new(j, "rope_scaling",
                        json_pack("{s:s, s:f, s:i}", "rope_type", "yarn", "factor", 4.0,
                                  "original_max_position_embeddings", 16));
    tap_ok(load_json(j, &c, &err) == 0 && c.rope_scaling.present && sm_config_yarn_active(&c) &&
               c.rope_scaling.beta_fast == 32 && c.rope_scaling.mscale_all_dim == 1,
           "rope_type yarn, factor 4: YaRN active, absent keys take defaults %s", err.msg);

    j = fixture_json();
    json_object_set_new(j, "first_k_dense_replace", json_integer(3));
    const char *moe[] = {"moe_intermediate_size", "n_routed_experts", "num_experts_per_tok",
                         "n_group", "topk_group", "routed_scaling_factor"};
    for (size_t i = 0; i < sizeof moe / sizeof moe[0]; i++) json_object_del(j, moe[i]);
    tap_ok(load_json(j, &c, &err) == 0 && !sm_config_layer_is_moe(&c, 2),
           "all-dense config needs no MoE fields %s", err.msg);
}

static void test_validate(void)
{
    sm_config c;
    sm_error err;
    sm_config_load_json(&c, fixture, &err);
    c.n_group = 3;
    tap_ok(sm_config_validate(&c, "mem", &err) == -1 &&
               strcmp(err.msg, "mem: field 'n_group': 3 does not divide n_routed_experts 8") == 0,
           "validate names its source: %s", err.msg);
    tap_ok(sm_config_save_json(&c, cfg_path, &err) == -1 && strstr(err.msg, "n_group"),
           "an invalid config is not saved");
}

static void round_trip(sm_config *a, const char *what)
{
    sm_config b;
    sm_error err = {{0}};
    int rc = sm_config_save_json(a, cfg_path, &err);
    if (rc == 0) rc = sm_config_load_json(&b, cfg_path, &err);
    tap_ok(rc == 0 && memcmp(a, &b, sizeof b) == 0, "save + load round trip: %s %s", what,
           err.msg);
}

static void test_round_trips(void)
{
    sm_config c;
    sm_error err;
    sm_config_load_json(&c, fixture, &err);
    round_trip(&c, "fixture");
    c.fp8 = 1;
    c.fp8_block[0] = 32;
    c.q_lora_rank = 0;
    c.rope_scaling.factor = 40;
    c.rope_scaling.original_max_position_embeddings = 16;
    c.rms_norm_eps = 1e-5 / 3;
    c.num_nextn_predict_layers = 1;
    round_trip(&c, "fp8, q_lora 0, YaRN, an inexact eps");
    sm_config d;
    sm_config_defaults(&d);
    c.rope_scaling = d.rope_scaling; /* absent: the defaults, as a load of null gives */
    c.first_k_dense_replace = 3;
    round_trip(&c, "no rope_scaling, all dense");
}

int main(void)
{
    snprintf(fixture, sizeof fixture, "%s/tests/fixtures/dsv3-tiny-a/config.json", tu_srcdir());
    if (!mkdtemp(dir)) return tap_ok(0, "mkdtemp"), tap_done();
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    test_fixture();
    test_bench();
    test_field_errors();
    test_rope_errors();
    test_file_errors();
    test_accepted_variants();
    test_validate();
    test_round_trips();
    remove_dir();
    return tap_done();
}
