/* Tests of io/run_config.c: a full run config loads with its values, absent sections take the
 * defaults, "--set" overrides of every kind apply, each kind of bad file or override is an error
 * that starts with the file (or "--set") and names the key, and save + load round trips. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/run_config.h"
#include "tests/tap.h"

static char dir[] = "/tmp/starmoe-runcfg-XXXXXX";
static char path[512], saved[512];

static const char *const base_text =
    "{\"model\": {\"architectures\": [\"DeepseekV3ForCausalLM\"], \"model_type\": \"deepseek_v3\","
    " \"vocab_size\": 512, \"hidden_size\": 64, \"intermediate_size\": 128,"
    " \"moe_intermediate_size\": 32, \"num_hidden_layers\": 3, \"first_k_dense_replace\": 1,"
    " \"num_attention_heads\": 4, \"q_lora_rank\": 32, \"kv_lora_rank\": 32,"
    " \"qk_nope_head_dim\": 16, \"qk_rope_head_dim\": 8, \"v_head_dim\": 16,"
    " \"n_routed_experts\": 8, \"n_shared_experts\": 1, \"num_experts_per_tok\": 2,"
    " \"n_group\": 4, \"topk_group\": 2, \"routed_scaling_factor\": 2.5,"
    " \"rms_norm_eps\": 1e-06, \"rope_theta\": 10000.0, \"rope_scaling\": null,"
    " \"max_position_embeddings\": 128, \"torch_dtype\": \"float32\"},"
    " \"train\": {\"steps\": 700, \"batch_size\": 12, \"seq_len\": 96, \"micro_batches\": 3,"
    " \"lr\": 2e-3, \"min_lr\": 2e-4, \"warmup_steps\": 20, \"weight_decay\": 0.05,"
    " \"beta1\": 0.85, \"beta2\": 0.99, \"eps\": 1e-9, \"grad_clip\": 0.5,"
    " \"bias_update_speed\": 0.002, \"balance_alpha\": 0.0003, \"max_bad_steps\": 4,"
    " \"seed\": 77},"
    " \"data\": {\"path\": \"/corpus/fortunes.txt\", \"doc_separator\": \"%\","
    " \"val_fraction\": 0.05, \"vocab_size\": 512, \"tokenizer\": null},"
    " \"eval\": {\"every\": 25, \"batches\": 4},"
    " \"checkpoint\": {\"every\": 50, \"keep\": 2},"
    " \"log\": {\"every\": 5},"
    " \"engine\": {\"workers\": 8, \"sched\": \"eager\"},"
    " \"parallel\": {\"ep\": 2, \"dp\": 3, \"timeout_s\": 30}}";

static json_t *base(void)
{
    json_t *j = json_loads(base_text, 0, NULL);
    if (!j) tap_diag("base config does not parse");
    return j;
}

/* j["a.b"] = v (stolen); v NULL deletes. */
static void set_key(json_t *j, const char *dotted, json_t *v)
{
    char sec[64];
    const char *dot = strchr(dotted, '.');
    if (!dot) {
        v ? json_object_set_new(j, dotted, v) : json_object_del(j, dotted);
        return;
    }
    snprintf(sec, sizeof sec, "%.*s", (int)(dot - dotted), dotted);
    json_t *s = json_object_get(j, sec);
    v ? json_object_set_new(s, dot + 1, v) : json_object_del(s, dot + 1);
}

/* Writes j (stolen) to the temp file and loads it with the overrides. */
static int load(json_t *j, const char *const *ov, int n, sm_run_config *rc, sm_error *err)
{
    json_dump_file(j, path, JSON_INDENT(1));
    json_decref(j);
    return sm_run_config_load(rc, path, ov, n, err);
}

/* Loading must fail with a message that starts with `start` and contains w1 and w2. */
static void expect_fail(json_t *j, const char *const *ov, int n, const char *start,
                        const char *w1, const char *w2, const char *what)
{
    sm_run_config rc;
    sm_error err = {{0}};
    int r = load(j, ov, n, &rc, &err);
    tap_ok(r == -1 && strncmp(err.msg, start, strlen(start)) == 0 && strstr(err.msg, w1) &&
               (!w2 || strstr(err.msg, w2)),
           "%s -> %s", what, err.msg);
}

static void expect_file_fail(const char *key, json_t *v, const char *w1, const char *w2)
{
    json_t *j = base();
    char what[160];
    char *t = v ? json_dumps(v, JSON_ENCODE_ANY) : NULL;
    snprintf(what, sizeof what, "%s = %s", key, t ? t : "(deleted)");
    free(t);
    set_key(j, key, v);
    expect_fail(j, NULL, 0, path, w1, w2, what);
}

static void expect_set_fail(const char *ov, const char *w1, const char *w2)
{
    char what[160];
    snprintf(what, sizeof what, "--set %s", ov);
    expect_fail(base(), &ov, 1, "--set", w1, w2, what);
}

static void test_full_file(void)
{
    sm_run_config rc;
    sm_error err = {{0}};
    int r = load(base(), NULL, 0, &rc, &err);
    tap_ok(r == 0, "full run config loads %s", err.msg);
    tap_ok(rc.model.hidden_size == 64 && rc.model.vocab_size == 512 &&
               rc.model.max_position_embeddings == 128 && rc.model.n_routed_experts == 8 &&
               !rc.model.rope_scaling.present,
           "model section: HF fields");
    tap_ok(rc.train.steps == 700 && rc.train.batch_size == 12 && rc.train.seq_len == 96 &&
               rc.train.micro_batches == 3 && rc.train.warmup_steps == 20 &&
               rc.train.max_bad_steps == 4 && rc.train.seed == 77,
           "train integers");
    tap_ok(rc.train.lr == 2e-3 && rc.train.min_lr == 2e-4 && rc.train.weight_decay == 0.05 &&
               rc.train.beta1 == 0.85 && rc.train.beta2 == 0.99 && rc.train.eps == 1e-9 &&
               rc.train.grad_clip == 0.5 && rc.train.bias_update_speed == 0.002 &&
               rc.train.balance_alpha == 0.0003,
           "train numbers");
    tap_ok(strcmp(rc.data.path, "/corpus/fortunes.txt") == 0 &&
               strcmp(rc.data.doc_separator, "%") == 0 && rc.data.val_fraction == 0.05 &&
               rc.data.vocab_size == 512 && rc.data.tokenizer[0] == '\0',
           "data section (tokenizer null -> \"\")");
    tap_ok(rc.eval.every == 25 && rc.eval.batches == 4 && rc.checkpoint.every == 50 &&
               rc.checkpoint.keep == 2 && rc.log.every == 5 && rc.engine.workers == 8 &&
               strcmp(rc.engine.sched, "eager") == 0 && rc.parallel.ep == 2 &&
               rc.parallel.dp == 3 && rc.parallel.timeout_s == 30,
           "eval, checkpoint, log, engine, parallel sections");
}

static void test_defaults(void)
{
    sm_run_config rc, d;
    sm_error err = {{0}};
    json_t *j = base();
    const char *sections[] = {"train", "data", "eval", "checkpoint", "log", "engine"};
    for (size_t i = 0; i < sizeof sections / sizeof *sections; i++) json_object_del(j, sections[i]);
    int r = load(j, NULL, 0, &rc, &err);
    sm_run_config_defaults(&d);
    tap_ok(r == 0, "model-only run config loads %s", err.msg);
    tap_ok(memcmp(&rc.train, &d.train, sizeof d.train) == 0 &&
               memcmp(&rc.data, &d.data, sizeof d.data) == 0 &&
               memcmp(&rc.eval, &d.eval, sizeof d.eval) == 0 &&
               memcmp(&rc.checkpoint, &d.checkpoint, sizeof d.checkpoint) == 0 &&
               memcmp(&rc.log, &d.log, sizeof d.log) == 0 &&
               memcmp(&rc.engine, &d.engine, sizeof d.engine) == 0,
           "absent sections equal sm_run_config_defaults");
    tap_ok(d.train.steps == 600 && d.train.batch_size == 16 && d.train.seq_len == 64 &&
               d.train.micro_batches == 2 && d.train.lr == 3e-3 && d.train.min_lr == 3e-4 &&
               d.train.warmup_steps == 30 && d.train.weight_decay == 0.1 &&
               d.train.beta1 == 0.9 && d.train.beta2 == 0.95 && d.train.eps == 1e-8 &&
               d.train.grad_clip == 1.0 && d.train.bias_update_speed == 0.001 &&
               d.train.balance_alpha == 0.0001 && d.train.max_bad_steps == 5 &&
               d.train.seed == 1234 && strcmp(d.train.precision, "f32") == 0 &&
               strcmp(d.train.optimizer_state_dtype, "auto") == 0,
           "train defaults");
    tap_ok(!d.data.path[0] && strcmp(d.data.doc_separator, "%") == 0 &&
               d.data.val_fraction == 0.02 && d.data.vocab_size == 512 && !d.data.tokenizer[0] &&
               d.eval.every == 50 && d.eval.batches == 8 && d.checkpoint.every == 100 &&
               d.checkpoint.keep == 3 && d.log.every == 1 && d.engine.workers == 2 &&
               strcmp(d.engine.sched, "lws") == 0 && d.parallel.ep == 1 && d.parallel.dp == 1 &&
               d.parallel.timeout_s == 120,
           "data, eval, checkpoint, log, engine, parallel defaults");
    j = base();
    json_object_set_new(j, "train", json_object());
    tap_ok(load(j, NULL, 0, &rc, &err) == 0 && rc.train.steps == 600,
           "an empty section takes the defaults %s", err.msg);
}

static void test_overrides(void)
{
    sm_run_config rc;
    sm_error err = {{0}};
    const char *ov[] = {"train.steps=10",
                        "train.lr=1e-3",
                        "train.grad_clip=0",
                        "train.seed=9007199254740993",
                        "engine.sched=dmda",
                        "data.path=\"/a b/corpus.txt\"",
                        "data.doc_separator=<|doc|>",
                        "data.tokenizer=/tok/bpe.json",
                        "data.vocab_size=1000",
                        "model.norm_topk_prob=false",
                        "model.hidden_size=96",
                        "model.rope_scaling={\"type\": \"yarn\", \"factor\": 2.0, "
                        "\"original_max_position_embeddings\": 64}",
                        "eval.every=0",
                        "train.steps=12"};
    int r = load(base(), ov, (int)(sizeof ov / sizeof *ov), &rc, &err);
    tap_ok(r == 0, "14 overrides apply %s", err.msg);
    tap_ok(rc.train.steps == 12 && rc.eval.every == 0, "integers; the last override wins");
    tap_ok(rc.train.lr == 1e-3 && rc.train.grad_clip == 0.0, "numbers (an integer into a double)");
    tap_ok(rc.train.seed == 9007199254740993LL, "a 64-bit seed is exact");
    tap_ok(strcmp(rc.engine.sched, "dmda") == 0 &&
               strcmp(rc.data.doc_separator, "<|doc|>") == 0,
           "bare text is a string");
    tap_ok(strcmp(rc.data.path, "/a b/corpus.txt") == 0, "a quoted JSON string");
    tap_ok(strcmp(rc.data.tokenizer, "/tok/bpe.json") == 0 && rc.data.vocab_size == 1000,
           "with a tokenizer, data.vocab_size need not match the model's");
    tap_ok(!rc.model.norm_topk_prob && rc.model.hidden_size == 96, "model booleans and integers");
    tap_ok(rc.model.rope_scaling.present && rc.model.rope_scaling.factor == 2.0 &&
               rc.model.rope_scaling.original_max_position_embeddings == 64,
           "a JSON object for model.rope_scaling");

    const char *nul[] = {"data.path=null"};
    r = load(base(), nul, 1, &rc, &err);
    tap_ok(r == 0 && rc.data.path[0] == '\0', "null clears a string %s", err.msg);

    json_t *j = base();
    set_key(j, "train.micro_batches", json_integer(5));
    const char *fix[] = {"train.micro_batches=4"};
    tap_ok(load(j, fix, 1, &rc, &err) == 0 && rc.train.micro_batches == 4,
           "validation runs after the overrides %s", err.msg);

    j = base();
    json_object_del(j, "engine");
    const char *add[] = {"engine.workers=3"};
    tap_ok(load(j, add, 1, &rc, &err) == 0 && rc.engine.workers == 3 &&
               strcmp(rc.engine.sched, "lws") == 0,
           "an override creates an absent section %s", err.msg);

    const char *fp8[] = {"train.precision=fp8", "train.optimizer_state_dtype=bf16"};
    tap_ok(load(base(), fp8, 2, &rc, &err) == 0 && strcmp(rc.train.precision, "fp8") == 0 &&
               strcmp(rc.train.optimizer_state_dtype, "bf16") == 0,
           "train.precision and train.optimizer_state_dtype take their choices %s", err.msg);
}

static void test_key_errors(void)
{
    json_t *j = base();
    json_object_set_new(j, "trian", json_object());
    expect_fail(j, NULL, 0, path, "unknown field 'trian'", "did you mean 'train'", "section typo");
    expect_file_fail("train.stpes", json_integer(5), "unknown field 'train.stpes'",
                     "did you mean 'train.steps'");
    expect_file_fail("engine.frobnicate", json_true(), "unknown field 'engine.frobnicate'", NULL);
    expect_file_fail("model.hiden_size", json_integer(64), "unknown field 'model.hiden_size'",
                     "did you mean 'model.hidden_size'");
    expect_file_fail("model.hidden_size", NULL, "missing required field 'model.hidden_size'",
                     NULL);
    expect_file_fail("model", NULL, "missing required field 'model'", NULL);
    expect_set_fail("train.lrr=1", "unknown field 'train.lrr'", "did you mean 'train.lr'");
    expect_set_fail("trian.lr=1", "unknown field 'trian'", "did you mean 'train'");
    expect_set_fail("model.hiden_size=64", "unknown field 'model.hiden_size'",
                    "did you mean 'model.hidden_size'");
    expect_set_fail("lr=1", "section.key=value", NULL);
    expect_set_fail("train.lr", "section.key=value", NULL);
    expect_set_fail(".lr=1", "section.key=value", NULL);
}

static void test_type_errors(void)
{
    expect_file_fail("train.lr", json_string("fast"), "field 'train.lr': expected a number",
                     "got \"fast\"");
    expect_file_fail("train.steps", json_real(10.5), "field 'train.steps': expected an integer",
                     "10.5");
    expect_file_fail("train", json_integer(5), "field 'train': expected an object", NULL);
    expect_file_fail("data.path", json_integer(3), "field 'data.path'", "or null");
    expect_file_fail("engine.sched", json_string("a-policy-name-that-is-far-too-long-for-it"),
                     "field 'engine.sched'", "at most 31 characters");
    expect_file_fail("model.hidden_size", json_string("64"), "field 'model.hidden_size'",
                     "integer");
    expect_file_fail("train.seed", json_string("1"), "field 'train.seed'", "integer");
    expect_set_fail("train.steps=abc", "field 'train.steps': expected an integer", "\"abc\"");
    expect_set_fail("train.lr=true", "field 'train.lr': expected a number", "true");
    expect_set_fail("model.norm_topk_prob=1", "field 'model.norm_topk_prob'", "true or false");

    FILE *f = fopen(path, "w");
    fputs("{\"model\": {}, \"model\": {}}", f);
    fclose(f);
    sm_run_config rc;
    sm_error err;
    tap_ok(sm_run_config_load(&rc, path, NULL, 0, &err) == -1 && strstr(err.msg, path) &&
               strstr(err.msg, "duplicate"),
           "duplicate section -> %s", err.msg);
    tap_ok(sm_run_config_load(&rc, "/nonexistent-starmoe/run.json", NULL, 0, &err) == -1 &&
               strstr(err.msg, "/nonexistent-starmoe/run.json"),
           "missing file -> %s", err.msg);
}

static void test_range_errors(void)
{
    struct {
        const char *key;
        json_t *v;
        const char *want;
    } bad[] = {
        {"train.steps", json_integer(0), "expected an integer >= 1, got 0"},
        {"train.batch_size", json_integer(-2), ">= 1"},
        {"train.seq_len", json_integer(1), ">= 2"},
        {"train.seq_len", json_integer(129), "exceeds model.max_position_embeddings 128"},
        {"train.micro_batches", json_integer(0), ">= 1"},
        {"train.micro_batches", json_integer(5), "5 does not divide train.batch_size 12"},
        {"train.lr", json_real(0), "expected a number > 0, got 0"},
        {"train.min_lr", json_real(-1e-4), ">= 0"},
        {"train.min_lr", json_real(0.01), "exceeds train.lr"},
        {"train.warmup_steps", json_integer(-1), ">= 0"},
        {"train.weight_decay", json_real(-0.1), ">= 0"},
        {"train.beta1", json_real(1.0), "in [0, 1)"},
        {"train.beta2", json_real(-0.5), "in [0, 1)"},
        {"train.eps", json_real(0), "> 0"},
        {"train.grad_clip", json_real(-1), ">= 0"},
        {"train.bias_update_speed", json_real(-0.001), ">= 0"},
        {"train.balance_alpha", json_real(-1), ">= 0"},
        {"train.max_bad_steps", json_integer(0), ">= 1"},
        {"train.precision", json_string("bf16"), "expected \"f32\" or \"fp8\", got \"bf16\""},
        {"train.optimizer_state_dtype", json_string("fp8"),
         "expected \"auto\", \"f32\" or \"bf16\", got \"fp8\""},
        {"data.val_fraction", json_real(0.6), "in [0, 0.5]"},
        {"data.vocab_size", json_integer(300), "differs from model.vocab_size 512"},
        {"eval.every", json_integer(-1), ">= 0"},
        {"eval.batches", json_integer(0), ">= 1"},
        {"checkpoint.every", json_integer(-5), ">= 0"},
        {"checkpoint.keep", json_integer(0), ">= 1"},
        {"log.every", json_integer(0), ">= 1"},
        {"engine.workers", json_integer(0), "in [1, 64]"},
        {"engine.workers", json_integer(65), "in [1, 64]"},
        {"engine.sched", json_string(""), "empty"},
        {"parallel.ep", json_integer(0), "in [1, 4096]"},
        {"parallel.dp", json_integer(4097), "in [1, 4096]"},
        {"parallel.timeout_s", json_real(0), "> 0"},
        {"model.n_group", json_integer(3), "3 does not divide n_routed_experts 8"},
        {"model.vocab_size", json_integer(256), "differs from model.vocab_size 256"},
    };
    char field[96];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(field, sizeof field, "field '%s'",
                 strcmp(bad[i].key, "model.vocab_size") ? bad[i].key : "data.vocab_size");
        expect_file_fail(bad[i].key, bad[i].v, field, bad[i].want);
    }
    expect_set_fail("train.lr=-1", "field 'train.lr'", "> 0");
    expect_set_fail("parallel.dp=0", "field 'parallel.dp'", "in [1, 4096]");
    expect_set_fail("train.precision=FP8", "field 'train.precision'", "got \"FP8\"");
    expect_set_fail("train.optimizer_state_dtype=", "field 'train.optimizer_state_dtype'",
                    "expected \"auto\", \"f32\" or \"bf16\"");
}

static void test_round_trip(void)
{
    sm_run_config a, b;
    sm_error err = {{0}};
    const char *ov[] = {"data.path=/x", "train.lr=0.0011", "train.eps=3.3333333333333335e-9",
                        "model.rope_scaling={\"type\": \"yarn\", \"factor\": 4.0, "
                        "\"original_max_position_embeddings\": 32}"};
    int r = load(base(), ov, 4, &a, &err);
    if (r == 0) r = sm_run_config_save(&a, saved, &err);
    if (r == 0) r = sm_run_config_load(&b, saved, NULL, 0, &err);
    tap_ok(r == 0 && memcmp(&a, &b, sizeof a) == 0, "save + load round trip is exact %s",
           err.msg);
    json_t *j = json_load_file(saved, 0, NULL);
    const char *first = j ? json_object_iter_key(json_object_iter(j)) : NULL;
    tap_ok(first && strcmp(first, "model") == 0 && json_object_size(j) == 8 &&
               json_is_null(json_object_get(json_object_get(j, "data"), "tokenizer")) &&
               json_object_get(json_object_get(j, "model"), "model_type"),
           "saved: 8 sections, model first as HF fields, empty strings as null");
    json_decref(j);

    char *text = sm_run_config_to_text(&a, &err);
    r = text ? sm_run_config_load_text(&b, text, "checkpoint", NULL, 0, &err) : -1;
    tap_ok(r == 0 && memcmp(&a, &b, sizeof a) == 0, "to_text + load_text round trip %s",
           err.msg);
    free(text);
    tap_ok(sm_run_config_load_text(&b, "{\"model\": 3}", "state.json", NULL, 0, &err) == -1 &&
               strncmp(err.msg, "state.json: field 'model'", 25) == 0,
           "load_text names its source: %s", err.msg);

    a.train.micro_batches = 5;
    tap_ok(sm_run_config_save(&a, saved, &err) == -1 && strstr(err.msg, "train.micro_batches"),
           "an invalid config is not saved: %s", err.msg);
    tap_ok(sm_run_config_to_text(&a, &err) == NULL && strstr(err.msg, "train.micro_batches"),
           "nor turned into text");
}

int main(void)
{
    if (!mkdtemp(dir)) return tap_ok(0, "mkdtemp"), tap_done();
    snprintf(path, sizeof path, "%s/run.json", dir);
    snprintf(saved, sizeof saved, "%s/saved.json", dir);
    test_full_file();
    test_defaults();
    test_overrides();
    test_key_errors();
    test_type_errors();
    test_range_errors();
    test_round_trip();
    unlink(path);
    unlink(saved);
    rmdir(dir);
    return tap_done();
}
