/* The run config (io/run_config.h): field tables for the train/data/eval/checkpoint/log/engine
 * sections, the model section nested as the Hugging Face config.json table, "--set" overrides
 * merged into the JSON before the single parse, and the range and cross-section rules. */
#include "io/run_config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/config_json.h"

#define TF(m, kind) SM_FIELD(sm_train_config, m, kind, SM_OPTIONAL)
static const sm_field train_fields[] = {
    TF(steps, SM_F_INT),         TF(batch_size, SM_F_INT),    TF(seq_len, SM_F_INT),
    TF(micro_batches, SM_F_INT), TF(lr, SM_F_NUM),            TF(min_lr, SM_F_NUM),
    TF(warmup_steps, SM_F_INT),  TF(weight_decay, SM_F_NUM),  TF(beta1, SM_F_NUM),
    TF(beta2, SM_F_NUM),         TF(eps, SM_F_NUM),           TF(grad_clip, SM_F_NUM),
    TF(bias_update_speed, SM_F_NUM), TF(balance_alpha, SM_F_NUM), TF(mtp_lambda, SM_F_NUM),
    TF(max_bad_steps, SM_F_INT), TF(seed, SM_F_I64),     TF(precision, SM_F_STR),
    TF(optimizer_state_dtype, SM_F_STR),
};

#define DF(m, kind) SM_FIELD(sm_data_config, m, kind, SM_OPTIONAL)
static const sm_field data_fields[] = {
    DF(path, SM_F_STR_OR_NULL), DF(doc_separator, SM_F_STR), DF(val_fraction, SM_F_NUM),
    DF(vocab_size, SM_F_INT),   DF(tokenizer, SM_F_STR_OR_NULL),
};

static const sm_field eval_fields[] = {
    SM_FIELD(sm_eval_config, every, SM_F_INT, SM_OPTIONAL),
    SM_FIELD(sm_eval_config, batches, SM_F_INT, SM_OPTIONAL),
};

static const sm_field checkpoint_fields[] = {
    SM_FIELD(sm_checkpoint_config, every, SM_F_INT, SM_OPTIONAL),
    SM_FIELD(sm_checkpoint_config, keep, SM_F_INT, SM_OPTIONAL),
};

static const sm_field log_fields[] = {
    SM_FIELD(sm_log_config, every, SM_F_INT, SM_OPTIONAL),
};

static const sm_field engine_fields[] = {
    SM_FIELD(sm_engine_config, workers, SM_F_INT, SM_OPTIONAL),
    SM_FIELD(sm_engine_config, sched, SM_F_STR, SM_OPTIONAL),
    SM_FIELD(sm_engine_config, sched_lib, SM_F_STR_OR_NULL, SM_OPTIONAL),
    SM_FIELD(sm_engine_config, pp, SM_F_INT, SM_OPTIONAL),
    SM_FIELD(sm_engine_config, deterministic, SM_F_BOOL, SM_OPTIONAL),
    SM_FIELD(sm_engine_config, fb_interleave, SM_F_BOOL, SM_OPTIONAL),
};

static const sm_field parallel_fields[] = {
    SM_FIELD(sm_parallel_config, ep, SM_F_INT, SM_OPTIONAL),
    SM_FIELD(sm_parallel_config, dp, SM_F_INT, SM_OPTIONAL),
    SM_FIELD(sm_parallel_config, pp, SM_F_INT, SM_OPTIONAL),
    SM_FIELD(sm_parallel_config, timeout_s, SM_F_NUM, SM_OPTIONAL),
};

#define TABLE(fields) {fields, SM_COUNT(fields), NULL}
static const sm_field_table train_table = TABLE(train_fields);
static const sm_field_table data_table = TABLE(data_fields);
static const sm_field_table eval_table = TABLE(eval_fields);
static const sm_field_table checkpoint_table = TABLE(checkpoint_fields);
static const sm_field_table log_table = TABLE(log_fields);
static const sm_field_table engine_table = TABLE(engine_fields);
static const sm_field_table parallel_table = TABLE(parallel_fields);

static const sm_field run_fields[] = {
    SM_SECTION(sm_run_config, model, SM_REQUIRED, sm_config_table),
    SM_SECTION(sm_run_config, train, SM_OPTIONAL, train_table),
    SM_SECTION(sm_run_config, data, SM_OPTIONAL, data_table),
    SM_SECTION(sm_run_config, eval, SM_OPTIONAL, eval_table),
    SM_SECTION(sm_run_config, checkpoint, SM_OPTIONAL, checkpoint_table),
    SM_SECTION(sm_run_config, log, SM_OPTIONAL, log_table),
    SM_SECTION(sm_run_config, engine, SM_OPTIONAL, engine_table),
    SM_SECTION(sm_run_config, parallel, SM_OPTIONAL, parallel_table),
};
static const sm_field_table run_table = TABLE(run_fields);

/* Member by member (no compound literals) so that padding stays zero and configs compare with
 * memcmp. */
static void train_defaults(sm_train_config *t)
{
    t->steps = 600;
    t->batch_size = 16;
    t->seq_len = 64;
    t->micro_batches = 2;
    t->lr = 3e-3;
    t->min_lr = 3e-4;
    t->warmup_steps = 30;
    t->weight_decay = 0.1;
    t->beta1 = 0.9;
    t->beta2 = 0.95;
    t->eps = 1e-8;
    t->grad_clip = 1.0;
    t->bias_update_speed = 0.001;
    t->balance_alpha = 0.0001;
    t->mtp_lambda = 0.3;
    t->max_bad_steps = 5;
    t->seed = 1234;
    snprintf(t->precision, sizeof t->precision, "f32");
    snprintf(t->optimizer_state_dtype, sizeof t->optimizer_state_dtype, "auto");
}

void sm_run_config_defaults(sm_run_config *rc)
{
    memset(rc, 0, sizeof *rc);
    sm_config_defaults(&rc->model);
    train_defaults(&rc->train);
    snprintf(rc->data.doc_separator, sizeof rc->data.doc_separator, "%%");
    rc->data.val_fraction = 0.02;
    rc->data.vocab_size = 512;
    rc->eval.every = 50;
    rc->eval.batches = 8;
    rc->checkpoint.every = 100;
    rc->checkpoint.keep = 3;
    rc->log.every = 1;
    rc->engine.workers = 2;
    rc->engine.pp = 1;
    rc->engine.fb_interleave = 1;
    snprintf(rc->engine.sched, sizeof rc->engine.sched, "lws");
    rc->parallel.ep = 1;
    rc->parallel.dp = 1;
    rc->parallel.pp = 1;
    rc->parallel.timeout_s = 120;
}

/* ---- validation ---- */

typedef struct range_rule {
    const char *key;
    size_t off;
    int is_int;
    double lo, hi;
    int lo_open, hi_open;
} range_rule;

#define RI(m, lo, hi) {#m, offsetof(sm_run_config, m), 1, lo, hi, 0, 0}
#define RD(m, lo, lo_open, hi, hi_open) \
    {#m, offsetof(sm_run_config, m), 0, lo, hi, lo_open, hi_open}
#define ANY HUGE_VAL

static const range_rule range_rules[] = {
    RI(train.steps, 1, ANY),           RI(train.batch_size, 1, ANY),
    RI(train.seq_len, 2, ANY),         RI(train.micro_batches, 1, ANY),
    RD(train.lr, 0, 1, ANY, 0),        RD(train.min_lr, 0, 0, ANY, 0),
    RI(train.warmup_steps, 0, ANY),    RD(train.weight_decay, 0, 0, ANY, 0),
    RD(train.beta1, 0, 0, 1, 1),       RD(train.beta2, 0, 0, 1, 1),
    RD(train.eps, 0, 1, ANY, 0),       RD(train.grad_clip, 0, 0, ANY, 0),
    RD(train.bias_update_speed, 0, 0, ANY, 0), RD(train.balance_alpha, 0, 0, ANY, 0),
    RD(train.mtp_lambda, 0, 0, ANY, 0),
    RI(train.max_bad_steps, 1, ANY),   RD(data.val_fraction, 0, 0, 0.5, 0),
    RI(data.vocab_size, 1, 1 << 22),   RI(eval.every, 0, ANY),
    RI(eval.batches, 1, ANY),          RI(checkpoint.every, 0, ANY),
    RI(checkpoint.keep, 1, ANY),       RI(log.every, 1, ANY),
    RI(engine.workers, 1, 64),         RI(engine.pp, 1, 64),
    RI(parallel.ep, 1, 4096),          RI(parallel.dp, 1, 4096),
    RI(parallel.pp, 1, 4096),
    RD(parallel.timeout_s, 0, 1, ANY, 0),
};

/* A string field that takes one of a few values. */
typedef struct choice_rule {
    const char *key;
    size_t off;
    const char *const *allowed;  /* NULL-terminated */
} choice_rule;

static const char *const precisions[] = {"f32", "fp8", NULL};
static const char *const state_dtypes[] = {"auto", "f32", "bf16", NULL};
#define RC(m, allowed) {#m, offsetof(sm_run_config, m), allowed}
static const choice_rule choice_rules[] = {
    RC(train.precision, precisions), RC(train.optimizer_state_dtype, state_dtypes),
};

static int check_choice(const choice_rule *r, const sm_run_config *rc, const char *where,
                        sm_error *err)
{
    const char *v = (const char *)rc + r->off;
    char want[128] = "";
    for (const char *const *a = r->allowed; *a; a++) {
        if (strcmp(v, *a) == 0) return 0;
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s\"%s\"",
                 a == r->allowed ? "" : a[1] ? ", " : " or ", *a);
    }
    return sm_fail(err, "%s: field '%s': expected %s, got \"%s\"", where, r->key, want, v);
}

static int in_range(const range_rule *r, double v)
{
    return (r->lo_open ? v > r->lo : v >= r->lo) && (r->hi_open ? v < r->hi : v <= r->hi);
}

/* "an integer >= 1", "a number > 0", "a number in [0, 1)" */
static void describe_range(const range_rule *r, char *buf, size_t cap)
{
    const char *what = r->is_int ? "an integer" : "a number";
    if (r->hi == ANY)
        snprintf(buf, cap, "%s %s %g", what, r->lo_open ? ">" : ">=", r->lo);
    else
        snprintf(buf, cap, "%s in %c%g, %g%c", what, r->lo_open ? '(' : '[', r->lo, r->hi,
                 r->hi_open ? ')' : ']');
}

static int check_rule(const range_rule *r, const sm_run_config *rc, const char *where,
                      sm_error *err)
{
    char want[64];
    const char *p = (const char *)rc + r->off;
    double v = r->is_int ? *(const int *)p : *(const double *)p;
    if (in_range(r, v)) return 0;
    describe_range(r, want, sizeof want);
    return sm_fail(err, "%s: field '%s': expected %s, got %.10g", where, r->key, want, v);
}

static int check_ranges(const sm_run_config *rc, const char *where, sm_error *err)
{
    for (size_t i = 0; i < SM_COUNT(range_rules); i++)
        if (check_rule(&range_rules[i], rc, where, err)) return -1;
    for (size_t i = 0; i < SM_COUNT(choice_rules); i++)
        if (check_choice(&choice_rules[i], rc, where, err)) return -1;
    return 0;
}

/* Whether rule key `full` is "section.key". */
static int names_key(const char *full, const char *section, const char *key)
{
    size_t n = strlen(section);
    return strncmp(full, section, n) == 0 && full[n] == '.' && strcmp(full + n + 1, key) == 0;
}

/* The range rule of "section.key", NULL when it has none. */
static const range_rule *find_rule(const char *section, const char *key)
{
    for (size_t i = 0; i < SM_COUNT(range_rules); i++)
        if (names_key(range_rules[i].key, section, key)) return &range_rules[i];
    return NULL;
}

/* The choice rule of "section.key", NULL when it has none. */
static const choice_rule *find_choice(const char *section, const char *key)
{
    for (size_t i = 0; i < SM_COUNT(choice_rules); i++)
        if (names_key(choice_rules[i].key, section, key)) return &choice_rules[i];
    return NULL;
}

/* ---- overrides ---- */

/* Parses {section: {key: value}} alone against the tables and the key's range or choice rule,
 * so that an unknown key, a value of the wrong type, out of range or not among the choices is
 * reported as coming from --set. */
static int check_override(const char *section, const char *key, json_t *value, sm_error *err)
{
    sm_run_config scratch;
    sm_scope s = {&run_table, &scratch, "", "--set", 1};
    json_t *obj = json_pack("{s:{s:O}}", section, key, value);
    sm_run_config_defaults(&scratch);
    if (!obj) return sm_fail(err, "--set: %s.%s: key not UTF-8, or out of memory", section, key);
    const range_rule *r = find_rule(section, key);
    const choice_rule *c = find_choice(section, key);
    int rc = sm_fields_parse(&s, obj, err) || (r && check_rule(r, &scratch, "--set", err)) ||
             (c && check_choice(c, &scratch, "--set", err));
    json_decref(obj);
    return rc ? -1 : 0;
}

/* root[section][key] = value. A section of the wrong type in the file is left for the parse,
 * which reports it with the file's name. */
static int merge_override(json_t *root, const char *section, const char *key, json_t *value,
                          sm_error *err)
{
    json_t *sec = json_object_get(root, section);
    if (!sec && json_object_set_new(root, section, json_object()) == 0)
        sec = json_object_get(root, section);
    if (!sec) return sm_fail(err, "--set: %s.%s: out of memory", section, key);
    if (json_is_object(sec) && json_object_set(sec, key, value))
        return sm_fail(err, "--set: %s.%s: out of memory", section, key);
    return 0;
}

/* The value of an override: its JSON reading when it parses, else the text as a string. */
static json_t *override_value(const char *text)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    return v ? v : json_string(text);
}

static int apply_override(json_t *root, const char *text, sm_error *err)
{
    const char *eq = strchr(text, '='), *dot = strchr(text, '.');
    char section[64], key[128];
    if (!eq || !dot || dot > eq || dot == text || dot + 1 == eq)
        return sm_fail(err, "--set: '%s': expected section.key=value (e.g. train.lr=1e-3)", text);
    if ((size_t)(dot - text) >= sizeof section || (size_t)(eq - dot - 1) >= sizeof key)
        return sm_fail(err, "--set: '%s': key too long", text);
    snprintf(section, sizeof section, "%.*s", (int)(dot - text), text);
    snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
    json_t *v = override_value(eq + 1);
    if (!v) return sm_fail(err, "--set: %s.%s: value is not valid UTF-8", section, key);
    int rc = check_override(section, key, v, err) || merge_override(root, section, key, v, err);
    json_decref(v);
    return rc ? -1 : 0;
}

/* Applies the overrides to root, parses it and validates. Takes root. */
static int load_root(sm_run_config *rc, json_t *root, const char *where,
                     const char *const *overrides, int noverrides, sm_error *err)
{
    sm_scope s = {&run_table, rc, "", where, 0};
    int r = 0;
    sm_run_config_defaults(rc);
    for (int i = 0; i < noverrides && r == 0; i++) r = apply_override(root, overrides[i], err);
    if (r == 0) r = sm_fields_parse(&s, root, err);
    if (r == 0) r = sm_run_config_validate(rc, where, err);
    json_decref(root);
    return r;
}

int sm_run_config_load(sm_run_config *rc, const char *path, const char *const *overrides,
                       int noverrides, sm_error *err)
{
    json_t *root = sm_json_load_object(path, err);
    if (!root) return -1;
    return load_root(rc, root, path, overrides, noverrides, err);
}

int sm_run_config_load_text(sm_run_config *rc, const char *text, const char *where,
                            const char *const *overrides, int noverrides, sm_error *err)
{
    json_t *root = sm_json_parse_object(text, where, err);
    if (!root) return -1;
    return load_root(rc, root, where, overrides, noverrides, err);
}

/* ---- rules across keys ---- */

static int check_across(const sm_run_config *rc, const char *where, sm_error *err)
{
    const sm_train_config *t = &rc->train;
    if (t->batch_size % t->micro_batches)
        return sm_fail(err, "%s: field 'train.micro_batches': %d does not divide "
                       "train.batch_size %d", where, t->micro_batches, t->batch_size);
    if (t->min_lr > t->lr)
        return sm_fail(err, "%s: field 'train.min_lr': %g exceeds train.lr %g", where, t->min_lr,
                       t->lr);
    if (t->seq_len > rc->model.max_position_embeddings)
        return sm_fail(err, "%s: field 'train.seq_len': %d exceeds "
                       "model.max_position_embeddings %d", where, t->seq_len,
                       rc->model.max_position_embeddings);
    if (!rc->data.tokenizer[0] && rc->data.vocab_size != rc->model.vocab_size)
        return sm_fail(err, "%s: field 'data.vocab_size': %d differs from model.vocab_size %d "
                       "(they must match when data.tokenizer is null)", where,
                       rc->data.vocab_size, rc->model.vocab_size);
    if (!rc->engine.sched[0])
        return sm_fail(err, "%s: field 'engine.sched': empty (name a StarPU policy such as "
                       "lws or eager)", where);
    if (rc->engine.pp > rc->engine.workers)
        return sm_fail(err, "%s: field 'engine.pp': %d pipeline ranks need at least as many "
                       "engine.workers (%d)", where, rc->engine.pp, rc->engine.workers);
    return 0;
}

int sm_run_config_validate(const sm_run_config *rc, const char *where, sm_error *err)
{
    if (sm_config_validate_at(&rc->model, where, "model.", err) ||
        check_ranges(rc, where, err) || check_across(rc, where, err))
        return -1;
    return 0;
}

/* ---- saving ---- */

static json_t *to_json(const sm_run_config *rc, const char *where, sm_error *err)
{
    if (sm_run_config_validate(rc, where, err)) return NULL;
    json_t *root = sm_fields_emit(&run_table, rc);
    if (!root) sm_fail(err, "%s: out of memory", where);
    return root;
}

char *sm_run_config_to_text(const sm_run_config *rc, sm_error *err)
{
    json_t *root = to_json(rc, "run config", err);
    char *text = root ? sm_json_text(root, JSON_INDENT(2)) : NULL;
    if (root && !text) sm_fail(err, "run config: out of memory");
    json_decref(root);
    return text;
}

int sm_run_config_save(const sm_run_config *rc, const char *path, sm_error *err)
{
    json_t *root = to_json(rc, path, err);
    if (!root) return -1;
    int r = sm_json_save(root, path, err);
    json_decref(root);
    return r;
}
