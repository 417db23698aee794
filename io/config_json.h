/* Internal to io/: the table-driven JSON machinery behind config.json, the run config and the
 * checkpoint files. A table lists every key of a JSON object with its kind and the offset of
 * the C member it fills; parsing (unknown keys with a did-you-mean, wrong types that show the
 * value, missing required keys) and emitting both walk the same table, and a table may nest
 * another one (a section). Also the JSON file helpers that every io/ reader and writer shares.
 * Kept out of include/starmoe/ so that the public headers stay free of jansson. */
#ifndef STARMOE_IO_CONFIG_JSON_H
#define STARMOE_IO_CONFIG_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <starmoe/config.h>

typedef enum sm_field_kind {
    SM_F_INT,         /* int */
    SM_F_INT_OR_NULL, /* int, JSON null = 0 */
    SM_F_I64,         /* int64_t */
    SM_F_U64,         /* uint64_t, or uint64_t[size / 8] as an array; decimal strings in JSON */
    SM_F_NUM,         /* double (finite) */
    SM_F_BOOL,        /* int 0/1 */
    SM_F_STR,         /* char[size] */
    SM_F_STR_OR_NULL, /* char[size], JSON null = "" (and "" is written as null) */
    SM_F_OBJECT,      /* a nested struct described by `sub` (a section) */
    SM_F_BLOCK,       /* int[2] (sm_config weight_block_size) */
    SM_F_ROPE,        /* sm_rope_scaling from an object or null */
    SM_F_QUANT,       /* sm_config fp8 settings from quantization_config */
    SM_F_CONST,       /* not stored; must equal `must`, which emitting writes back */
    SM_F_KNOWN,       /* not stored; must equal `must` when given (NULL: anything); not emitted */
} sm_field_kind;

/* SM_REQUIRED_MOE is left to sm_config's table check (required once a layer is MoE). */
typedef enum sm_field_need { SM_OPTIONAL, SM_REQUIRED, SM_REQUIRED_MOE } sm_field_need;

typedef struct sm_field_table sm_field_table;
typedef struct sm_scope sm_scope;

typedef struct sm_field {
    const char *name;
    sm_field_kind kind;
    sm_field_need need;
    size_t off, size;            /* the member's offset in the struct and its sizeof */
    const char *must;            /* JSON text, SM_F_CONST / SM_F_KNOWN only */
    const sm_field_table *sub;   /* SM_F_OBJECT, SM_F_ROPE, SM_F_QUANT: the nested table */
} sm_field;

struct sm_field_table {
    const sm_field *fields;
    size_t n;
    /* Optional rule across keys, run after a complete (not partial) parse of an object. */
    int (*check)(const sm_scope *s, const json_t *obj, sm_error *err);
};

/* A JSON object being parsed: its table, the struct it fills, and names for messages. */
struct sm_scope {
    const sm_field_table *table;
    void *base;
    const char *prefix;          /* prepended to every key in messages: "", "train.", ... */
    const char *path;            /* the file (or "--set") that messages start with */
    int partial;                 /* 1: only the keys given (no required keys, no table check) */
};

#define SM_FIELD(type, member, kind, need) \
    {#member, kind, need, offsetof(type, member), sizeof(((type *)0)->member), NULL, NULL}
#define SM_SECTION(type, member, need, table)                                                 \
    {#member, SM_F_OBJECT, need, offsetof(type, member), sizeof(((type *)0)->member), NULL, \
     &(table)}
#define SM_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Fills s->base from the keys of obj: unknown keys (with a did-you-mean), wrong types and, unless
 * s->partial, missing required keys are errors starting with s->path and naming prefix + key. */
int sm_fields_parse(const sm_scope *s, const json_t *obj, sm_error *err);
/* The JSON object of a struct described by t; NULL when out of memory or a number is not finite. */
json_t *sm_fields_emit(const sm_field_table *t, const void *base);

/* The table of a Hugging Face DeepSeek-V3 config.json (for nesting it as a section). */
extern const sm_field_table sm_config_table;
/* Parses and validates a config.json object (defaults first); messages start with `where`. */
int sm_config_parse_json(sm_config *c, const json_t *obj, const char *where, sm_error *err);
/* sm_config_validate with `prefix` ("model.") before every field name in the messages. */
int sm_config_validate_at(const sm_config *c, const char *where, const char *prefix,
                          sm_error *err);
/* The Hugging Face config.json object of c; NULL when out of memory. */
json_t *sm_config_to_json(const sm_config *c);

/* Reads a file that must hold one JSON object (duplicate keys rejected); errors name the path,
 * with the line and column of a syntax error. */
json_t *sm_json_load_object(const char *path, sm_error *err);
/* The same for JSON text; `where` names it in messages. */
json_t *sm_json_parse_object(const char *text, const char *where, sm_error *err);
/* Text of v with the fewest digits that read every real back exactly; malloc'd, NULL on OOM. */
char *sm_json_text(const json_t *v, size_t flags);
/* Writes v indented, with a final newline, atomically (sm_atomic_write_file). */
int sm_json_save(const json_t *v, const char *path, sm_error *err);

#endif
