/* config.json <-> sm_config. One table per JSON object lists every known field with its type and
 * whether it is required; parsing, the unknown-field check (with a did-you-mean) and saving all
 * walk the same tables. sm_config_validate holds the ranges and the structural rules. */
#include <starmoe/config.h>

#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

typedef enum field_kind {
    F_INT,         /* int */
    F_INT_OR_NULL, /* int, JSON null = 0 */
    F_NUM,         /* double */
    F_BOOL,        /* int 0/1 */
    F_STR,         /* char[16] */
    F_BLOCK,       /* int[2] */
    F_ROPE,        /* sm_rope_scaling from an object or null */
    F_QUANT,       /* fp8 settings from quantization_config */
    F_CONST,       /* not stored; must equal `must`, which save writes back */
    F_KNOWN,       /* not stored; must equal `must` when given, not saved */
} field_kind;

typedef enum field_need { OPTIONAL, REQUIRED, REQUIRED_MOE } field_need;

typedef struct field {
    const char *name;
    field_kind kind;
    field_need need;
    size_t off;        /* into the struct the table describes */
    const char *must;  /* JSON text, F_CONST / F_KNOWN only */
} field;

#define CF(n, kind, need) {#n, kind, need, offsetof(sm_config, n), NULL}
#define RF(n, kind, need) {#n, kind, need, offsetof(sm_rope_scaling, n), NULL}
#define KNOWN(n) {n, F_KNOWN, OPTIONAL, 0, NULL}

static const field config_fields[] = {
    KNOWN("architectures"),
    {"model_type", F_CONST, OPTIONAL, 0, "\"deepseek_v3\""},
    CF(vocab_size, F_INT, REQUIRED),
    CF(hidden_size, F_INT, REQUIRED),
    CF(intermediate_size, F_INT, REQUIRED),
    CF(moe_intermediate_size, F_INT, REQUIRED_MOE),
    CF(num_hidden_layers, F_INT, REQUIRED),
    CF(first_k_dense_replace, F_INT, OPTIONAL),
    CF(moe_layer_freq, F_INT, OPTIONAL),
    CF(num_attention_heads, F_INT, REQUIRED),
    CF(q_lora_rank, F_INT_OR_NULL, OPTIONAL),
    CF(kv_lora_rank, F_INT, REQUIRED),
    CF(qk_nope_head_dim, F_INT, REQUIRED),
    CF(qk_rope_head_dim, F_INT, REQUIRED),
    CF(v_head_dim, F_INT, REQUIRED),
    CF(n_routed_experts, F_INT, REQUIRED_MOE),
    CF(n_shared_experts, F_INT, OPTIONAL),
    CF(num_experts_per_tok, F_INT, REQUIRED_MOE),
    CF(n_group, F_INT, REQUIRED_MOE),
    CF(topk_group, F_INT, REQUIRED_MOE),
    CF(routed_scaling_factor, F_NUM, REQUIRED_MOE),
    CF(scoring_func, F_STR, OPTIONAL),
    CF(topk_method, F_STR, OPTIONAL),
    CF(norm_topk_prob, F_BOOL, OPTIONAL),
    {"hidden_act", F_CONST, OPTIONAL, 0, "\"silu\""},
    CF(rms_norm_eps, F_NUM, REQUIRED),
    CF(rope_theta, F_NUM, REQUIRED),
    CF(rope_scaling, F_ROPE, OPTIONAL),
    CF(max_position_embeddings, F_INT, REQUIRED),
    {"attention_bias", F_CONST, OPTIONAL, 0, "false"},
    CF(tie_word_embeddings, F_BOOL, OPTIONAL),
    CF(num_nextn_predict_layers, F_INT, OPTIONAL),
    CF(initializer_range, F_NUM, OPTIONAL),
    CF(bos_token_id, F_INT, OPTIONAL),
    CF(eos_token_id, F_INT, OPTIONAL),
    {"quantization_config", F_QUANT, OPTIONAL, 0, NULL},
    KNOWN("auto_map"), KNOWN("torch_dtype"), KNOWN("transformers_version"), KNOWN("use_cache"),
    KNOWN("pretraining_tp"), KNOWN("attention_dropout"), KNOWN("num_key_value_heads"),
    KNOWN("ep_size"), KNOWN("aux_loss_alpha"), KNOWN("seq_aux"), KNOWN("pad_token_id"),
    KNOWN("rope_interleave"), KNOWN("_name_or_path"),
};

/* "type" or "rope_type" must be present (checked by parse_rope). */
static const field rope_fields[] = {
    {"type", F_CONST, OPTIONAL, 0, "\"yarn\""},
    {"rope_type", F_KNOWN, OPTIONAL, 0, "\"yarn\""},
    RF(factor, F_NUM, REQUIRED),
    RF(original_max_position_embeddings, F_INT, REQUIRED),
    RF(beta_fast, F_NUM, OPTIONAL),
    RF(beta_slow, F_NUM, OPTIONAL),
    RF(mscale, F_NUM, OPTIONAL),
    RF(mscale_all_dim, F_NUM, OPTIONAL),
};

/* Offsets are into sm_config, like config_fields. */
static const field quant_fields[] = {
    {"quant_method", F_CONST, REQUIRED, 0, "\"fp8\""},
    {"fmt", F_CONST, OPTIONAL, 0, "\"e4m3\""},
    {"activation_scheme", F_CONST, OPTIONAL, 0, "\"dynamic\""},
    {"weight_block_size", F_BLOCK, OPTIONAL, offsetof(sm_config, fp8_block), NULL},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* A JSON object being parsed: its field table, the struct it fills, and names for messages. */
typedef struct scope {
    const field *tab;
    size_t n;
    void *base;
    const char *prefix;          /* "" or "rope_scaling." */
    const char *path;
} scope;

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

static const field *find_field(const scope *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->tab[i].name, name) == 0) return &s->tab[i];
    return NULL;
}

static int unknown_field(const scope *s, const char *key, sm_error *err)
{
    const char *best = NULL;
    int bestd = 3;
    for (size_t i = 0; i < s->n; i++) {
        int d = edit_distance(key, s->tab[i].name);
        if (d < bestd && 2 * d < (int)strlen(key)) best = s->tab[i].name, bestd = d;
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

static int type_error(const scope *s, const field *f, const char *want, const json_t *v,
                      sm_error *err)
{
    return sm_fail(err, "%s: field '%s%s': expected %s, got %s", s->path, s->prefix, f->name,
                   want, json_kind(v));
}

static int get_int(const scope *s, const field *f, const json_t *v, int *out, sm_error *err)
{
    if (!json_is_integer(v)) return type_error(s, f, "an integer", v, err);
    json_int_t x = json_integer_value(v);
    if (x < INT_MIN || x > INT_MAX)
        return sm_fail(err, "%s: field '%s%s': %lld is out of range", s->path, s->prefix,
                       f->name, (long long)x);
    *out = (int)x;
    return 0;
}

static int get_block(const scope *s, const field *f, const json_t *v, int *out, sm_error *err)
{
    if (!json_is_array(v) || json_array_size(v) != 2)
        return type_error(s, f, "an array of 2 integers", v, err);
    for (size_t i = 0; i < 2; i++)
        if (get_int(s, f, json_array_get(v, i), &out[i], err)) return -1;
    return 0;
}

static int check_const(const scope *s, const field *f, const json_t *v, sm_error *err)
{
    json_t *want = f->must ? json_loads(f->must, JSON_DECODE_ANY, NULL) : NULL;
    int same = !f->must || json_equal(want, (json_t *)v);
    json_decref(want);
    if (same) return 0;
    return sm_fail(err, "%s: field '%s%s': must be %s", s->path, s->prefix, f->name, f->must);
}

static int parse_object(const scope *s, const json_t *obj, sm_error *err);

static int parse_rope(const scope *s, const field *f, const json_t *v, sm_rope_scaling *r,
                      sm_error *err)
{
    scope sub = {rope_fields, COUNT(rope_fields), r, "rope_scaling.", s->path};
    if (json_is_null(v)) return 0;
    if (!json_is_object(v)) return type_error(s, f, "an object or null", v, err);
    if (parse_object(&sub, v, err)) return -1;
    if (!json_object_get(v, "type") && !json_object_get(v, "rope_type"))
        return sm_fail(err, "%s: field 'rope_scaling.type': missing (must be \"yarn\")", s->path);
    r->present = 1;
    return 0;
}

static int parse_quant(const scope *s, const field *f, const json_t *v, sm_config *c,
                       sm_error *err)
{
    scope sub = {quant_fields, COUNT(quant_fields), c, "quantization_config.", s->path};
    json_t *method;
    if (json_is_null(v)) return 0;
    if (!json_is_object(v)) return type_error(s, f, "an object or null", v, err);
    /* the method first: another method's own keys would otherwise be reported as unknown */
    method = json_object_get(v, "quant_method");
    if (method && check_const(&sub, &quant_fields[0], method, err)) return -1;
    if (parse_object(&sub, v, err)) return -1;
    c->fp8 = 1;
    return 0;
}

static int parse_value(const scope *s, const field *f, const json_t *v, sm_error *err)
{
    char *p = (char *)s->base + f->off;
    switch (f->kind) {
    case F_INT_OR_NULL:
        if (json_is_null(v)) {
            *(int *)p = 0;
            return 0;
        }
        return get_int(s, f, v, (int *)p, err);
    case F_INT: return get_int(s, f, v, (int *)p, err);
    case F_NUM:
        if (!json_is_number(v)) return type_error(s, f, "a number", v, err);
        *(double *)p = json_number_value(v);
        return 0;
    case F_BOOL:
        if (!json_is_boolean(v)) return type_error(s, f, "true or false", v, err);
        *(int *)p = json_is_true(v);
        return 0;
    case F_STR:
        if (!json_is_string(v) || json_string_length(v) >= 16)
            return type_error(s, f, "a string of at most 15 characters", v, err);
        memcpy(p, json_string_value(v), json_string_length(v) + 1);
        return 0;
    case F_BLOCK: return get_block(s, f, v, (int *)p, err);
    case F_ROPE: return parse_rope(s, f, v, (sm_rope_scaling *)p, err);
    case F_QUANT: return parse_quant(s, f, v, (sm_config *)s->base, err);
    case F_CONST: case F_KNOWN: return check_const(s, f, v, err);
    }
    return -1;
}

/* Parses every key of obj (unknown keys are errors) and checks the REQUIRED fields. */
static int parse_object(const scope *s, const json_t *obj, sm_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        const field *f = find_field(s, key);
        if (!f) return unknown_field(s, key, err);
        if (parse_value(s, f, v, err)) return -1;
    }
    for (size_t i = 0; i < s->n; i++)
        if (s->tab[i].need == REQUIRED && !json_object_get(obj, s->tab[i].name))
            return sm_fail(err, "%s: missing required field '%s%s'", s->path, s->prefix,
                           s->tab[i].name);
    return 0;
}

static int has_moe_layers(const sm_config *c)
{
    return c->first_k_dense_replace < c->num_hidden_layers;
}

/* MoE fields are required as soon as one layer is MoE. */
static int check_moe_required(const scope *s, const json_t *root, const sm_config *c,
                              sm_error *err)
{
    for (size_t i = 0; i < s->n && has_moe_layers(c); i++)
        if (s->tab[i].need == REQUIRED_MOE && !json_object_get(root, s->tab[i].name))
            return sm_fail(err, "%s: missing required field '%s' (layers %d and up are MoE)",
                           s->path, s->tab[i].name, c->first_k_dense_replace);
    return 0;
}

int sm_config_load_json(sm_config *c, const char *path, sm_error *err)
{
    json_error_t je;
    scope s = {config_fields, COUNT(config_fields), c, "", path};
    sm_config_defaults(c);
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root && je.line < 0) return sm_fail(err, "%s: cannot read: %s", path, je.text);
    if (!root)
        return sm_fail(err, "%s: cannot parse: %s (line %d, column %d)", path, je.text, je.line,
                       je.column);
    int rc = -1;
    if (!json_is_object(root))
        sm_fail(err, "%s: not a JSON object", path);
    else if (parse_object(&s, root, err) == 0 && check_moe_required(&s, root, c, err) == 0)
        rc = sm_config_validate(c, path, err);
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

static int check_range(const char *where, const char *name, double v, double lo, double hi,
                       sm_error *err)
{
    if (v >= lo && v <= hi) return 0;
    return sm_fail(err, "%s: field '%s': %g is out of range [%g, %g]", where, name, v, lo, hi);
}

static int check_int_rules(const sm_config *c, const char *where, sm_error *err)
{
    for (size_t i = 0; i < COUNT(int_rules); i++) {
        const int_rule *r = &int_rules[i];
        int v = *(const int *)((const char *)c + r->off);
        if (r->moe_only && !has_moe_layers(c)) continue;
        if (v < r->lo || v > r->hi)
            return sm_fail(err, "%s: field '%s': %d is out of range [%d, %d]", where, r->name, v,
                           r->lo, r->hi);
    }
    return 0;
}

static int check_numbers(const sm_config *c, const char *where, sm_error *err)
{
    const sm_rope_scaling *r = &c->rope_scaling;
    if (check_range(where, "rms_norm_eps", c->rms_norm_eps, 1e-12, 0.1, err) ||
        check_range(where, "rope_theta", c->rope_theta, 1, 1e12, err) ||
        check_range(where, "initializer_range", c->initializer_range, 0, 10, err) ||
        (has_moe_layers(c) &&
         check_range(where, "routed_scaling_factor", c->routed_scaling_factor, 1e-6, 1e6, err)))
        return -1;
    if (r->present && (r->original_max_position_embeddings < 1 ||
                       r->original_max_position_embeddings > 1 << 26))
        return sm_fail(err, "%s: field 'rope_scaling.original_max_position_embeddings': %d is out "
                       "of range [1, %d]", where, r->original_max_position_embeddings, 1 << 26);
    if (r->present &&
        (check_range(where, "rope_scaling.factor", r->factor, 1, 1e6, err) ||
         check_range(where, "rope_scaling.beta_fast", r->beta_fast, 0, 1e6, err) ||
         check_range(where, "rope_scaling.beta_slow", r->beta_slow, 0, 1e6, err) ||
         check_range(where, "rope_scaling.mscale", r->mscale, 0, 1e6, err) ||
         check_range(where, "rope_scaling.mscale_all_dim", r->mscale_all_dim, 0, 1e6, err)))
        return -1;
    return 0;
}

static int check_choices(const sm_config *c, const char *where, sm_error *err)
{
    if (strcmp(c->scoring_func, "sigmoid") != 0)
        return sm_fail(err, "%s: field 'scoring_func': '%s' is not supported (only \"sigmoid\")",
                       where, c->scoring_func);
    if (strcmp(c->topk_method, "noaux_tc") != 0)
        return sm_fail(err, "%s: field 'topk_method': '%s' is not supported (only \"noaux_tc\")",
                       where, c->topk_method);
    if (c->tie_word_embeddings)
        return sm_fail(err, "%s: field 'tie_word_embeddings': true is not supported "
                       "(DeepSeek-V3 never ties the embedding and the head)", where);
    for (int i = 0; i < 2 && c->fp8; i++)
        if (c->fp8_block[i] < 1 || c->fp8_block[i] > 4096)
            return sm_fail(err, "%s: field 'quantization_config.weight_block_size': %d is out of "
                           "range [1, 4096]", where, c->fp8_block[i]);
    return 0;
}

static int check_shapes(const sm_config *c, const char *where, sm_error *err)
{
    long long qk = (long long)c->num_attention_heads * (c->qk_nope_head_dim + c->qk_rope_head_dim);
    long long kv = (long long)c->num_attention_heads * (c->qk_nope_head_dim + c->v_head_dim);
    if (c->qk_rope_head_dim % 2)
        return sm_fail(err, "%s: field 'qk_rope_head_dim': %d is odd (RoPE rotates pairs)", where,
                       c->qk_rope_head_dim);
    if (qk > WIDTH_MAX || kv > WIDTH_MAX)
        return sm_fail(err, "%s: field 'num_attention_heads': %d heads make a projection wider "
                       "than %d", where, c->num_attention_heads, WIDTH_MAX);
    if (c->first_k_dense_replace > c->num_hidden_layers)
        return sm_fail(err, "%s: field 'first_k_dense_replace': %d exceeds num_hidden_layers %d",
                       where, c->first_k_dense_replace, c->num_hidden_layers);
    if (c->bos_token_id >= c->vocab_size)
        return sm_fail(err, "%s: field 'bos_token_id': %d is not below vocab_size %d", where,
                       c->bos_token_id, c->vocab_size);
    if (c->eos_token_id >= c->vocab_size)
        return sm_fail(err, "%s: field 'eos_token_id': %d is not below vocab_size %d", where,
                       c->eos_token_id, c->vocab_size);
    return 0;
}

static int check_routing(const sm_config *c, const char *where, sm_error *err)
{
    int E = c->n_routed_experts, G = c->n_group, Gk = c->topk_group, K = c->num_experts_per_tok;
    if (!has_moe_layers(c)) return 0;
    if (E % G)
        return sm_fail(err, "%s: field 'n_group': %d does not divide n_routed_experts %d", where,
                       G, E);
    if (E / G < 2)
        return sm_fail(err, "%s: field 'n_group': %d groups of %d expert(s); a group needs at "
                       "least 2 (its score is the sum of its top 2)", where, G, E / G);
    if (Gk > G)
        return sm_fail(err, "%s: field 'topk_group': %d exceeds n_group %d", where, Gk, G);
    if (K > Gk * (E / G))
        return sm_fail(err, "%s: field 'num_experts_per_tok': %d exceeds the %d experts of the "
                       "topk_group %d kept groups", where, K, Gk * (E / G), Gk);
    return 0;
}

int sm_config_validate(const sm_config *c, const char *where, sm_error *err)
{
    if (!where) where = "config";
    if (check_int_rules(c, where, err) || check_numbers(c, where, err) ||
        check_choices(c, where, err) || check_shapes(c, where, err) ||
        check_routing(c, where, err))
        return -1;
    return 0;
}

int sm_config_layer_is_moe(const sm_config *c, int l)
{
    int k = c->moe_layer_freq > 0 ? c->moe_layer_freq : 1;
    return l >= c->first_k_dense_replace && (l - c->first_k_dense_replace) % k == 0;
}

int sm_config_yarn_active(const sm_config *c)
{
    const sm_rope_scaling *r = &c->rope_scaling;
    return r->present && r->factor > 1 &&
           c->max_position_embeddings > r->original_max_position_embeddings;
}

/* ---- saving ---- */

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

static json_t *emit_object(const field *tab, size_t n, const void *base, int *digits);

/* The JSON value of one field, or NULL when the field is not written. `digits` collects the
 * precision the reals need. */
static json_t *emit_value(const field *f, const void *base, int *digits)
{
    const char *p = (const char *)base + f->off;
    const sm_config *c = base;
    switch (f->kind) {
    case F_INT_OR_NULL:
        if (*(const int *)p == 0) return json_null();
        /* fall through */
    case F_INT: return json_integer(*(const int *)p);
    case F_NUM:
        if (shortest_digits(*(const double *)p) > *digits)
            *digits = shortest_digits(*(const double *)p);
        return json_real(*(const double *)p);
    case F_BOOL: return json_boolean(*(const int *)p);
    case F_STR: return json_string(p);
    case F_BLOCK: return json_pack("[i,i]", ((const int *)p)[0], ((const int *)p)[1]);
    case F_ROPE:
        return ((const sm_rope_scaling *)p)->present
                   ? emit_object(rope_fields, COUNT(rope_fields), p, digits)
                   : json_null();
    case F_QUANT:
        return c->fp8 ? emit_object(quant_fields, COUNT(quant_fields), base, digits) : NULL;
    case F_CONST: return json_loads(f->must, JSON_DECODE_ANY, NULL);
    case F_KNOWN: return NULL;
    }
    return NULL;
}

static json_t *emit_object(const field *tab, size_t n, const void *base, int *digits)
{
    json_t *o = json_object();
    for (size_t i = 0; i < n && o; i++) {
        json_t *v = emit_value(&tab[i], base, digits);
        if (v && json_object_set_new(o, tab[i].name, v)) {
            json_decref(o);
            o = NULL;
        }
    }
    return o;
}

int sm_config_save_json(const sm_config *c, const char *path, sm_error *err)
{
    if (sm_config_validate(c, path, err)) return -1;
    int digits = 1;
    json_t *root = emit_object(config_fields, COUNT(config_fields), c, &digits);
    char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(digits)) : NULL;
    json_decref(root);
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
