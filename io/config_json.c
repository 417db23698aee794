/* config.json <-> sm_config, and the table-driven JSON machinery behind it (io/config_json.h).
 * One table per JSON object lists every known key with its kind, the member it fills and whether
 * it is required; parsing, the unknown-key check (with a did-you-mean) and emitting all walk the
 * same tables, and the run config and the checkpoint files reuse them with tables of their own.
 * sm_config_validate holds the ranges and the structural rules of a model config. */
#include "io/config_json.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/atomic_file.h"
#include "base/file.h"
#include "io/safetensors.h"

#define CF(n, kind, need) SM_FIELD(sm_config, n, kind, need)
#define RF(n, kind, need) SM_FIELD(sm_rope_scaling, n, kind, need)
#define CONSTF(n, need, must) {n, SM_F_CONST, need, 0, 0, must, NULL}
#define KNOWN(n) {n, SM_F_KNOWN, SM_OPTIONAL, 0, 0, NULL, NULL}

static int rope_check(const sm_scope *s, const json_t *obj, sm_error *err);
static int check_moe_required(const sm_scope *s, const json_t *obj, sm_error *err);

/* "type" or "rope_type" must be present (rope_check). */
static const sm_field rope_fields[] = {
    CONSTF("type", SM_OPTIONAL, "\"yarn\""),
    {"rope_type", SM_F_KNOWN, SM_OPTIONAL, 0, 0, "\"yarn\"", NULL},
    RF(factor, SM_F_NUM, SM_REQUIRED),
    RF(original_max_position_embeddings, SM_F_INT, SM_REQUIRED),
    RF(beta_fast, SM_F_NUM, SM_OPTIONAL),
    RF(beta_slow, SM_F_NUM, SM_OPTIONAL),
    RF(mscale, SM_F_NUM, SM_OPTIONAL),
    RF(mscale_all_dim, SM_F_NUM, SM_OPTIONAL),
};
static const sm_field_table rope_table = {rope_fields, SM_COUNT(rope_fields), rope_check};

/* Offsets are into sm_config, like config_fields. */
static const sm_field quant_fields[] = {
    CONSTF("quant_method", SM_REQUIRED, "\"fp8\""),
    CONSTF("fmt", SM_OPTIONAL, "\"e4m3\""),
    CONSTF("activation_scheme", SM_OPTIONAL, "\"dynamic\""),
    {"weight_block_size", SM_F_BLOCK, SM_OPTIONAL, offsetof(sm_config, fp8_block),
     sizeof(((sm_config *)0)->fp8_block), NULL, NULL},
};
static const sm_field_table quant_table = {quant_fields, SM_COUNT(quant_fields), NULL};

static const sm_field config_fields[] = {
    KNOWN("architectures"),
    CONSTF("model_type", SM_OPTIONAL, "\"deepseek_v3\""),
    CF(vocab_size, SM_F_INT, SM_REQUIRED),
    CF(hidden_size, SM_F_INT, SM_REQUIRED),
    CF(intermediate_size, SM_F_INT, SM_REQUIRED),
    CF(moe_intermediate_size, SM_F_INT, SM_REQUIRED_MOE),
    CF(num_hidden_layers, SM_F_INT, SM_REQUIRED),
    CF(first_k_dense_replace, SM_F_INT, SM_OPTIONAL),
    CF(moe_layer_freq, SM_F_INT, SM_OPTIONAL),
    CF(num_attention_heads, SM_F_INT, SM_REQUIRED),
    CF(q_lora_rank, SM_F_INT_OR_NULL, SM_OPTIONAL),
    CF(kv_lora_rank, SM_F_INT, SM_REQUIRED),
    CF(qk_nope_head_dim, SM_F_INT, SM_REQUIRED),
    CF(qk_rope_head_dim, SM_F_INT, SM_REQUIRED),
    CF(v_head_dim, SM_F_INT, SM_REQUIRED),
    CF(n_routed_experts, SM_F_INT, SM_REQUIRED_MOE),
    CF(n_shared_experts, SM_F_INT, SM_OPTIONAL),
    CF(num_experts_per_tok, SM_F_INT, SM_REQUIRED_MOE),
    CF(n_group, SM_F_INT, SM_REQUIRED_MOE),
    CF(topk_group, SM_F_INT, SM_REQUIRED_MOE),
    CF(routed_scaling_factor, SM_F_NUM, SM_REQUIRED_MOE),
    CF(scoring_func, SM_F_STR, SM_OPTIONAL),
    CF(topk_method, SM_F_STR, SM_OPTIONAL),
    CF(norm_topk_prob, SM_F_BOOL, SM_OPTIONAL),
    CONSTF("hidden_act", SM_OPTIONAL, "\"silu\""),
    CF(rms_norm_eps, SM_F_NUM, SM_REQUIRED),
    CF(rope_theta, SM_F_NUM, SM_REQUIRED),
    {"rope_scaling", SM_F_ROPE, SM_OPTIONAL, offsetof(sm_config, rope_scaling),
     sizeof(sm_rope_scaling), NULL, &rope_table},
    CF(max_position_embeddings, SM_F_INT, SM_REQUIRED),
    CONSTF("attention_bias", SM_OPTIONAL, "false"),
    CF(tie_word_embeddings, SM_F_BOOL, SM_OPTIONAL),
    CF(num_nextn_predict_layers, SM_F_INT, SM_OPTIONAL),
    CF(initializer_range, SM_F_NUM, SM_OPTIONAL),
    CF(bos_token_id, SM_F_INT, SM_OPTIONAL),
    CF(eos_token_id, SM_F_INT, SM_OPTIONAL),
    {"quantization_config", SM_F_QUANT, SM_OPTIONAL, 0, 0, NULL, &quant_table},
    KNOWN("auto_map"), KNOWN("torch_dtype"), KNOWN("transformers_version"), KNOWN("use_cache"),
    KNOWN("pretraining_tp"), KNOWN("attention_dropout"), KNOWN("num_key_value_heads"),
    KNOWN("ep_size"), KNOWN("aux_loss_alpha"), KNOWN("seq_aux"), KNOWN("pad_token_id"),
    KNOWN("rope_interleave"), KNOWN("_name_or_path"),
};
const sm_field_table sm_config_table = {config_fields, SM_COUNT(config_fields),
                                        check_moe_required};

void sm_config_defaults(sm_config *c)
{
    memset(c, 0, sizeof *c);
    c->moe_layer_freq = 1;
    c->norm_topk_prob = 1;
    snprintf(c->scoring_func, sizeof c->scoring_func, "sigmoid");
    snprintf(c->topk_method, sizeof c->topk_method, "noaux_tc");
    c->initializer_range = 0.02;
    c->eos_token_id = 1;
    c->fp8_block[0] = c->fp8_block[1] = 128;
    /* rope_scaling keys when absent. mscale_all_dim: 1.0, the official code's default (its
     * `mscale`); HF's modeling code would take 0, i.e. no softmax temperature. */
    c->rope_scaling.factor = 1.0;
    c->rope_scaling.beta_fast = 32;
    c->rope_scaling.beta_slow = 1;
    c->rope_scaling.mscale = 1;
    c->rope_scaling.mscale_all_dim = 1;
}

/* ---- parsing, for any table ---- */

static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int row[64];
    if (la >= 64 || lb >= 64) return INT_MAX;
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static const sm_field *find_field(const sm_field_table *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->fields[i].name, name) == 0) return &t->fields[i];
    return NULL;
}

static int unknown_field(const sm_scope *s, const char *key, sm_error *err)
{
    const char *best = NULL;
    int bestd = 3;
    for (size_t i = 0; i < s->table->n; i++) {
        int d = edit_distance(key, s->table->fields[i].name);
        if (d < bestd && 2 * d < (int)strlen(key)) best = s->table->fields[i].name, bestd = d;
    }
    if (best)
        return sm_fail(err, "%s: unknown field '%s%s' (did you mean '%s%s'?)", s->path, s->prefix,
                       key, s->prefix, best);
    return sm_fail(err, "%s: unknown field '%s%s'", s->path, s->prefix, key);
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a non-integer number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* v for a message: the JSON text of a scalar (cut at 40 characters), the kind of a container. */
static void describe(const json_t *v, char *buf, size_t cap)
{
    int container = json_is_object(v) || json_is_array(v);
    char *text = container ? NULL : sm_json_text(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!text)
        snprintf(buf, cap, "%s", json_kind(v));
    else if (strlen(text) > 40)
        snprintf(buf, cap, "%.37s...", text);
    else
        snprintf(buf, cap, "%s", text);
    free(text);
}

static int type_error(const sm_scope *s, const sm_field *f, const char *want, const json_t *v,
                      sm_error *err)
{
    char got[48];
    describe(v, got, sizeof got);
    return sm_fail(err, "%s: field '%s%s': expected %s, got %s", s->path, s->prefix, f->name,
                   want, got);
}

static int get_int(const sm_scope *s, const sm_field *f, const json_t *v, int *out, sm_error *err)
{
    if (!json_is_integer(v)) return type_error(s, f, "an integer", v, err);
    json_int_t x = json_integer_value(v);
    if (x < INT_MIN || x > INT_MAX)
        return sm_fail(err, "%s: field '%s%s': %lld is out of range", s->path, s->prefix,
                       f->name, (long long)x);
    *out = (int)x;
    return 0;
}

static int get_block(const sm_scope *s, const sm_field *f, const json_t *v, int *out,
                     sm_error *err)
{
    if (!json_is_array(v) || json_array_size(v) != 2)
        return type_error(s, f, "an array of 2 integers", v, err);
    for (size_t i = 0; i < 2; i++)
        if (get_int(s, f, json_array_get(v, i), &out[i], err)) return -1;
    return 0;
}

/* A uint64 from a decimal string or a non-negative integer; -1 when v is neither. */
static int get_u64(const json_t *v, uint64_t *out)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    const char *t = json_is_string(v) ? json_string_value(v) : "";
    char *end;
    if (*t < '0' || *t > '9') return -1;
    errno = 0;
    unsigned long long x = strtoull(t, &end, 10);
    if (errno || *end) return -1;
    *out = x;
    return 0;
}

static int parse_u64(const sm_scope *s, const sm_field *f, const json_t *v, uint64_t *out,
                     sm_error *err)
{
    size_t n = f->size / sizeof *out;
    char want[80];
    if (n == 1)
        return get_u64(v, out) ? type_error(s, f, "a decimal string (unsigned 64-bit)", v, err)
                               : 0;
    snprintf(want, sizeof want, "an array of %zu decimal strings (unsigned 64-bit)", n);
    if (!json_is_array(v) || json_array_size(v) != n) return type_error(s, f, want, v, err);
    for (size_t i = 0; i < n; i++)
        if (get_u64(json_array_get(v, i), &out[i])) return type_error(s, f, want, v, err);
    return 0;
}

static int parse_str(const sm_scope *s, const sm_field *f, const json_t *v, char *out,
                     sm_error *err)
{
    char want[64];
    if (f->kind == SM_F_STR_OR_NULL && json_is_null(v)) {
        memset(out, 0, f->size);
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) >= f->size ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        snprintf(want, sizeof want, "a string of at most %zu characters%s", f->size - 1,
                 f->kind == SM_F_STR_OR_NULL ? " or null" : "");
        return type_error(s, f, want, v, err);
    }
    memset(out, 0, f->size);
    memcpy(out, json_string_value(v), json_string_length(v));
    return 0;
}

static int check_const(const sm_scope *s, const sm_field *f, const json_t *v, sm_error *err)
{
    json_t *want = f->must ? json_loads(f->must, JSON_DECODE_ANY, NULL) : NULL;
    int same = !f->must || json_equal(want, (json_t *)v);
    json_decref(want);
    if (same) return 0;
    return sm_fail(err, "%s: field '%s%s': must be %s", s->path, s->prefix, f->name, f->must);
}

/* The scope of the object nested under field f; prefix is the caller's buffer. */
static sm_scope nested(const sm_scope *s, const sm_field *f, void *base, char *prefix,
                       size_t cap)
{
    snprintf(prefix, cap, "%s%s.", s->prefix, f->name);
    return (sm_scope){f->sub, base, prefix, s->path, s->partial};
}

static int parse_section(const sm_scope *s, const sm_field *f, const json_t *v, void *base,
                         sm_error *err)
{
    char prefix[160];
    sm_scope sub = nested(s, f, base, prefix, sizeof prefix);
    if (!json_is_object(v)) return type_error(s, f, "an object", v, err);
    return sm_fields_parse(&sub, v, err);
}

static int parse_rope(const sm_scope *s, const sm_field *f, const json_t *v, sm_rope_scaling *r,
                      sm_error *err)
{
    char prefix[160];
    sm_scope sub = nested(s, f, r, prefix, sizeof prefix);
    r->present = 0;
    if (json_is_null(v)) return 0;
    if (!json_is_object(v)) return type_error(s, f, "an object or null", v, err);
    if (sm_fields_parse(&sub, v, err)) return -1;
    r->present = 1;
    return 0;
}

static int parse_quant(const sm_scope *s, const sm_field *f, const json_t *v, sm_config *c,
                       sm_error *err)
{
    char prefix[160];
    sm_scope sub = nested(s, f, c, prefix, sizeof prefix);
    json_t *method;
    if (json_is_null(v)) return 0;
    if (!json_is_object(v)) return type_error(s, f, "an object or null", v, err);
    /* the method first: another method's own keys would otherwise be reported as unknown */
    method = json_object_get(v, "quant_method");
    if (method && check_const(&sub, &quant_fields[0], method, err)) return -1;
    if (sm_fields_parse(&sub, v, err)) return -1;
    c->fp8 = 1;
    return 0;
}

static int parse_value(const sm_scope *s, const sm_field *f, const json_t *v, sm_error *err)
{
    char *p = (char *)s->base + f->off;
    switch (f->kind) {
    case SM_F_INT_OR_NULL:
        if (json_is_null(v)) {
            *(int *)p = 0;
            return 0;
        }
        return get_int(s, f, v, (int *)p, err);
    case SM_F_INT: return get_int(s, f, v, (int *)p, err);
    case SM_F_I64:
        if (!json_is_integer(v)) return type_error(s, f, "an integer", v, err);
        *(int64_t *)p = json_integer_value(v);
        return 0;
    case SM_F_U64: return parse_u64(s, f, v, (uint64_t *)p, err);
    case SM_F_NUM:
        if (!json_is_number(v)) return type_error(s, f, "a number", v, err);
        *(double *)p = json_number_value(v);
        return 0;
    case SM_F_BOOL:
        if (!json_is_boolean(v)) return type_error(s, f, "true or false", v, err);
        *(int *)p = json_is_true(v);
        return 0;
    case SM_F_STR: case SM_F_STR_OR_NULL: return parse_str(s, f, v, p, err);
    case SM_F_OBJECT: return parse_section(s, f, v, p, err);
    case SM_F_BLOCK: return get_block(s, f, v, (int *)p, err);
    case SM_F_ROPE: return parse_rope(s, f, v, (sm_rope_scaling *)p, err);
    case SM_F_QUANT: return parse_quant(s, f, v, (sm_config *)s->base, err);
    case SM_F_CONST: case SM_F_KNOWN: return check_const(s, f, v, err);
    }
    return -1;
}

int sm_fields_parse(const sm_scope *s, const json_t *obj, sm_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        const sm_field *f = find_field(s->table, key);
        if (!f) return unknown_field(s, key, err);
        if (parse_value(s, f, v, err)) return -1;
    }
    if (s->partial) return 0;
    for (size_t i = 0; i < s->table->n; i++)
        if (s->table->fields[i].need == SM_REQUIRED &&
            !json_object_get(obj, s->table->fields[i].name))
            return sm_fail(err, "%s: missing required field '%s%s'", s->path, s->prefix,
                           s->table->fields[i].name);
    return s->table->check ? s->table->check(s, obj, err) : 0;
}

/* ---- sm_config ---- */

static int rope_check(const sm_scope *s, const json_t *obj, sm_error *err)
{
    if (json_object_get(obj, "type") || json_object_get(obj, "rope_type")) return 0;
    return sm_fail(err, "%s: field '%stype': missing (must be \"yarn\")", s->path, s->prefix);
}

/* Whether the MoE fields are needed: some layer comes after the dense ones (which layers are
 * MoE is the model's rule, model/config.c). */
static int has_moe_layers(const sm_config *c)
{
    return c->first_k_dense_replace < c->num_hidden_layers;
}

/* MoE fields are required as soon as one layer is MoE. */
static int check_moe_required(const sm_scope *s, const json_t *obj, sm_error *err)
{
    const sm_config *c = s->base;
    for (size_t i = 0; i < s->table->n && has_moe_layers(c); i++)
        if (s->table->fields[i].need == SM_REQUIRED_MOE &&
            !json_object_get(obj, s->table->fields[i].name))
            return sm_fail(err, "%s: missing required field '%s%s' (layers %d and up are MoE)",
                           s->path, s->prefix, s->table->fields[i].name,
                           c->first_k_dense_replace);
    return 0;
}

int sm_config_parse_json(sm_config *c, const json_t *obj, const char *where, sm_error *err)
{
    sm_scope s = {&sm_config_table, c, "", where, 0};
    sm_config_defaults(c);
    if (!json_is_object(obj)) return sm_fail(err, "%s: not a JSON object", where);
    if (sm_fields_parse(&s, obj, err)) return -1;
    return sm_config_validate(c, where, err);
}

int sm_config_load_json(sm_config *c, const char *path, sm_error *err)
{
    json_t *root = sm_json_load_object(path, err);
    if (!root) return -1;
    int rc = sm_config_parse_json(c, root, path, err);
    json_decref(root);
    return rc;
}

/* ---- validation ---- */

typedef struct int_rule {
    const char *name;
    size_t off;
    int lo, hi, moe_only;
} int_rule;

#define WIDTH_MAX (1 << 24)
#define IR(n, lo, hi, moe) {#n, offsetof(sm_config, n), lo, hi, moe}

static const int_rule int_rules[] = {
    IR(vocab_size, 1, 1 << 22, 0),          IR(hidden_size, 1, WIDTH_MAX, 0),
    IR(intermediate_size, 1, WIDTH_MAX, 0), IR(num_hidden_layers, 1, 1024, 0),
    IR(first_k_dense_replace, 0, 1024, 0),  IR(moe_layer_freq, 1, 1024, 0),
    IR(num_attention_heads, 1, 1 << 16, 0), IR(q_lora_rank, 0, WIDTH_MAX, 0),
    IR(kv_lora_rank, 1, WIDTH_MAX, 0),      IR(qk_nope_head_dim, 1, WIDTH_MAX, 0),
    IR(qk_rope_head_dim, 2, WIDTH_MAX, 0),  IR(v_head_dim, 1, WIDTH_MAX, 0),
    IR(n_shared_experts, 0, 4096, 0),       IR(max_position_embeddings, 1, 1 << 26, 0),
    IR(num_nextn_predict_layers, 0, 64, 0), IR(bos_token_id, 0, (1 << 22) - 1, 0),
    IR(eos_token_id, 0, (1 << 22) - 1, 0),  IR(moe_intermediate_size, 1, WIDTH_MAX, 1),
    IR(n_routed_experts, 1, 4096, 1),       IR(num_experts_per_tok, 1, 4096, 1),
    IR(n_group, 1, 4096, 1),                IR(topk_group, 1, 4096, 1),
};

/* Where a message comes from: the source and the prefix of every field name. */
typedef struct origin {
    const char *where, *pre;
} origin;

static int check_range(origin o, const char *name, double v, double lo, double hi, sm_error *err)
{
    if (v >= lo && v <= hi) return 0;
    return sm_fail(err, "%s: field '%s%s': %g is out of range [%g, %g]", o.where, o.pre, name, v,
                   lo, hi);
}

static int check_int(origin o, const char *name, int v, int lo, int hi, sm_error *err)
{
    if (v >= lo && v <= hi) return 0;
    return sm_fail(err, "%s: field '%s%s': %d is out of range [%d, %d]", o.where, o.pre, name, v,
                   lo, hi);
}

static int check_int_rules(const sm_config *c, origin o, sm_error *err)
{
    for (size_t i = 0; i < SM_COUNT(int_rules); i++) {
        const int_rule *r = &int_rules[i];
        int v = *(const int *)((const char *)c + r->off);
        if ((!r->moe_only || has_moe_layers(c)) && check_int(o, r->name, v, r->lo, r->hi, err))
            return -1;
    }
    return 0;
}

static int check_numbers(const sm_config *c, origin o, sm_error *err)
{
    const sm_rope_scaling *r = &c->rope_scaling;
    if (check_range(o, "rms_norm_eps", c->rms_norm_eps, 1e-12, 0.1, err) ||
        check_range(o, "rope_theta", c->rope_theta, 1, 1e12, err) ||
        check_range(o, "initializer_range", c->initializer_range, 0, 10, err) ||
        (has_moe_layers(c) &&
         check_range(o, "routed_scaling_factor", c->routed_scaling_factor, 1e-6, 1e6, err)))
        return -1;
    if (!r->present) return 0;
    if (check_int(o, "rope_scaling.original_max_position_embeddings",
                  r->original_max_position_embeddings, 1, 1 << 26, err) ||
        check_range(o, "rope_scaling.factor", r->factor, 1, 1e6, err) ||
        check_range(o, "rope_scaling.beta_fast", r->beta_fast, 0, 1e6, err) ||
        check_range(o, "rope_scaling.beta_slow", r->beta_slow, 0, 1e6, err) ||
        check_range(o, "rope_scaling.mscale", r->mscale, 0, 1e6, err) ||
        check_range(o, "rope_scaling.mscale_all_dim", r->mscale_all_dim, 0, 1e6, err))
        return -1;
    return 0;
}

static int check_choices(const sm_config *c, origin o, sm_error *err)
{
    if (strcmp(c->scoring_func, "sigmoid") != 0)
        return sm_fail(err, "%s: field '%sscoring_func': '%s' is not supported (only "
                       "\"sigmoid\")", o.where, o.pre, c->scoring_func);
    if (strcmp(c->topk_method, "noaux_tc") != 0)
        return sm_fail(err, "%s: field '%stopk_method': '%s' is not supported (only "
                       "\"noaux_tc\")", o.where, o.pre, c->topk_method);
    if (c->tie_word_embeddings)
        return sm_fail(err, "%s: field '%stie_word_embeddings': true is not supported "
                       "(DeepSeek-V3 never ties the embedding and the head)", o.where, o.pre);
    for (int i = 0; i < 2 && c->fp8; i++)
        if (c->fp8_block[i] < 1 || c->fp8_block[i] > 4096)
            return sm_fail(err, "%s: field '%squantization_config.weight_block_size': %d is out "
                           "of range [1, 4096]", o.where, o.pre, c->fp8_block[i]);
    return 0;
}

static int check_token_id(const sm_config *c, origin o, const char *name, int id, sm_error *err)
{
    if (id < c->vocab_size) return 0;
    return sm_fail(err, "%s: field '%s%s': %d is not below vocab_size %d", o.where, o.pre, name,
                   id, c->vocab_size);
}

static int check_shapes(const sm_config *c, origin o, sm_error *err)
{
    long long qk = (long long)c->num_attention_heads * (c->qk_nope_head_dim + c->qk_rope_head_dim);
    long long kv = (long long)c->num_attention_heads * (c->qk_nope_head_dim + c->v_head_dim);
    if (c->qk_rope_head_dim % 2)
        return sm_fail(err, "%s: field '%sqk_rope_head_dim': %d is odd (RoPE rotates pairs)",
                       o.where, o.pre, c->qk_rope_head_dim);
    if (qk > WIDTH_MAX || kv > WIDTH_MAX)
        return sm_fail(err, "%s: field '%snum_attention_heads': %d heads make a projection "
                       "wider than %d", o.where, o.pre, c->num_attention_heads, WIDTH_MAX);
    if (c->first_k_dense_replace > c->num_hidden_layers)
        return sm_fail(err, "%s: field '%sfirst_k_dense_replace': %d exceeds num_hidden_layers "
                       "%d", o.where, o.pre, c->first_k_dense_replace, c->num_hidden_layers);
    if (check_token_id(c, o, "bos_token_id", c->bos_token_id, err) ||
        check_token_id(c, o, "eos_token_id", c->eos_token_id, err))
        return -1;
    return 0;
}

static int check_routing(const sm_config *c, origin o, sm_error *err)
{
    int E = c->n_routed_experts, G = c->n_group, Gk = c->topk_group, K = c->num_experts_per_tok;
    if (!has_moe_layers(c)) return 0;
    if (E % G)
        return sm_fail(err, "%s: field '%sn_group': %d does not divide n_routed_experts %d",
                       o.where, o.pre, G, E);
    if (E / G < 2)
        return sm_fail(err, "%s: field '%sn_group': %d groups of %d expert(s); a group needs at "
                       "least 2 (its score is the sum of its top 2)", o.where, o.pre, G, E / G);
    if (Gk > G)
        return sm_fail(err, "%s: field '%stopk_group': %d exceeds n_group %d", o.where, o.pre,
                       Gk, G);
    if (K > Gk * (E / G))
        return sm_fail(err, "%s: field '%snum_experts_per_tok': %d exceeds the %d experts of the "
                       "topk_group %d kept groups", o.where, o.pre, K, Gk * (E / G), Gk);
    return 0;
}

int sm_config_validate_at(const sm_config *c, const char *where, const char *prefix,
                          sm_error *err)
{
    origin o = {where ? where : "config", prefix ? prefix : ""};
    if (check_int_rules(c, o, err) || check_numbers(c, o, err) || check_choices(c, o, err) ||
        check_shapes(c, o, err) || check_routing(c, o, err))
        return -1;
    return 0;
}

int sm_config_validate(const sm_config *c, const char *where, sm_error *err)
{
    return sm_config_validate_at(c, where, "", err);
}

/* ---- emitting, for any table ---- */

/* 0 when field f is left out of the JSON of base. */
static int emitted(const sm_field *f, const void *base)
{
    if (f->kind == SM_F_KNOWN) return 0;
    if (f->kind == SM_F_QUANT) return ((const sm_config *)base)->fp8;
    return 1;
}

static json_t *emit_u64(const uint64_t *p, size_t n)
{
    char buf[24];
    json_t *a = n == 1 ? NULL : json_array();
    for (size_t i = 0; i < n; i++) {
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)p[i]);
        if (n == 1) return json_string(buf);
        if (!a || json_array_append_new(a, json_string(buf))) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *emit_value(const sm_field *f, const void *base)
{
    const char *p = (const char *)base + f->off;
    switch (f->kind) {
    case SM_F_INT_OR_NULL:
        if (*(const int *)p == 0) return json_null();
        /* fall through */
    case SM_F_INT: return json_integer(*(const int *)p);
    case SM_F_I64: return json_integer(*(const int64_t *)p);
    case SM_F_U64: return emit_u64((const uint64_t *)p, f->size / sizeof(uint64_t));
    case SM_F_NUM: return json_real(*(const double *)p);
    case SM_F_BOOL: return json_boolean(*(const int *)p);
    case SM_F_STR_OR_NULL:
        if (!*p) return json_null();
        /* fall through */
    case SM_F_STR: return json_string(p);
    case SM_F_OBJECT: return sm_fields_emit(f->sub, p);
    case SM_F_BLOCK: return json_pack("[i,i]", ((const int *)p)[0], ((const int *)p)[1]);
    case SM_F_ROPE:
        return ((const sm_rope_scaling *)p)->present ? sm_fields_emit(f->sub, p) : json_null();
    case SM_F_QUANT: return sm_fields_emit(f->sub, base);
    case SM_F_CONST: return json_loads(f->must, JSON_DECODE_ANY, NULL);
    case SM_F_KNOWN: return NULL;
    }
    return NULL;
}

json_t *sm_fields_emit(const sm_field_table *t, const void *base)
{
    json_t *o = json_object();
    for (size_t i = 0; i < t->n && o; i++) {
        if (!emitted(&t->fields[i], base)) continue;
        json_t *v = emit_value(&t->fields[i], base);
        if (!v || json_object_set_new(o, t->fields[i].name, v)) {
            json_decref(o);
            o = NULL;
        }
    }
    return o;
}

json_t *sm_config_to_json(const sm_config *c)
{
    return sm_fields_emit(&sm_config_table, c);
}

int sm_config_save_json(const sm_config *c, const char *path, sm_error *err)
{
    if (sm_config_validate(c, path, err)) return -1;
    json_t *root = sm_config_to_json(c);
    if (!root) return sm_fail(err, "%s: out of memory", path);
    int rc = sm_json_save(root, path, err);
    json_decref(root);
    return rc;
}

/* ---- JSON files ---- */

/* root when it is an object, else NULL with an error naming `where` (and the position). */
static json_t *checked_object(json_t *root, const json_error_t *je, const char *where,
                              sm_error *err)
{
    if (!root && je->line < 0)
        sm_fail(err, "%s: cannot read: %s", where, je->text);
    else if (!root)
        sm_fail(err, "%s: cannot parse: %s (line %d, column %d)", where, je->text, je->line,
                je->column);
    else if (!json_is_object(root)) {
        sm_fail(err, "%s: not a JSON object", where);
        json_decref(root);
        root = NULL;
    }
    return root;
}

json_t *sm_json_load_object(const char *path, sm_error *err)
{
    json_error_t je;
    size_t len;
    char *text = sm_read_file(path, &len, err);
    if (!text) return NULL;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    return checked_object(root, &je, path, err);
}

json_t *sm_json_parse_object(const char *text, const char *where, sm_error *err)
{
    json_error_t je;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    return checked_object(root, &je, where, err);
}

/* The fewest significant digits (1..17) that print v so that it reads back exactly. */
static int shortest_digits(double v)
{
    char buf[40];
    for (int p = 1; p < 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, v);
        if (strtod(buf, NULL) == v) return p;
    }
    return 17;
}

/* The precision that the reals of v need (jansson prints them all with one precision). */
static int real_digits(const json_t *v)
{
    int d = 1, e;
    const char *key;
    json_t *x;
    size_t i;
    if (json_is_real(v)) return shortest_digits(json_real_value(v));
    if (json_is_object(v))
        json_object_foreach((json_t *)v, key, x) {
            if ((e = real_digits(x)) > d) d = e;
        }
    if (json_is_array(v))
        json_array_foreach(v, i, x) {
            if ((e = real_digits(x)) > d) d = e;
        }
    return d;
}

char *sm_json_text(const json_t *v, size_t flags)
{
    return json_dumps(v, flags | JSON_REAL_PRECISION(real_digits(v)));
}

int sm_json_save(const json_t *v, const char *path, sm_error *err)
{
    char *text = sm_json_text(v, JSON_INDENT(2));
    if (!text) return sm_fail(err, "%s: out of memory", path);
    size_t n = strlen(text);
    char *nl = realloc(text, n + 2);
    if (!nl) {
        free(text);
        return sm_fail(err, "%s: out of memory", path);
    }
    memcpy(nl + n, "\n", 2);
    int rc = sm_atomic_write_file(path, nl, n + 1, err);
    free(nl);
    return rc;
}
