/* Run config differences (io/run_config_diff.h): both configs as JSON objects (the run config's
 * own emitter), compared section by section and key by key with json_equal. */
#include "io/run_config_diff.h"

#include <stdlib.h>
#include <string.h>
#include "io/config_json.h"

typedef struct change_list {
    sm_config_change *v;
    int n;
    size_t cap;
} change_list;

static json_t *as_json(const sm_run_config *rc, sm_error *err)
{
    char *text = sm_run_config_to_text(rc, err);
    json_t *root = text ? sm_json_parse_object(text, "run config", err) : NULL;
    free(text);
    return root;
}

static char *value_text(const json_t *v)
{
    return v ? sm_json_text(v, JSON_ENCODE_ANY | JSON_COMPACT) : strdup("absent");
}

static int add_change(change_list *l, const char *section, const char *key, const json_t *a,
                      const json_t *b, sm_error *err)
{
    size_t n = strlen(section) + strlen(key) + 2;
    if ((size_t)l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        sm_config_change *v = realloc(l->v, cap * sizeof *v);
        if (!v) return sm_fail(err, "run config: out of memory");
        l->v = v;
        l->cap = cap;
    }
    sm_config_change *c = &l->v[l->n];
    c->field = malloc(n);
    c->before = value_text(a);
    c->after = value_text(b);
    l->n++;
    if (!c->field || !c->before || !c->after) return sm_fail(err, "run config: out of memory");
    snprintf(c->field, n, "%s.%s", section, key);
    return 0;
}

/* The keys of section a that differ in b, then the keys only b has. */
static int diff_section(change_list *l, const char *section, const json_t *a, const json_t *b,
                        sm_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)a, key, v) {
        json_t *w = json_object_get(b, key);
        if (!json_equal(v, w) && add_change(l, section, key, v, w, err)) return -1;
    }
    json_object_foreach((json_t *)b, key, v) {
        if (!json_object_get(a, key) && add_change(l, section, key, NULL, v, err)) return -1;
    }
    return 0;
}

int sm_run_config_diff(const sm_run_config *before, const sm_run_config *after,
                       sm_config_change **changes, sm_error *err)
{
    change_list l = {0};
    json_t *a = as_json(before, err), *b = a ? as_json(after, err) : NULL;
    const char *section;
    json_t *v;
    int rc = b ? 0 : -1;
    if (b)
        json_object_foreach(a, section, v) {
            if (diff_section(&l, section, v, json_object_get(b, section), err)) {
                rc = -1;
                break;
            }
        }
    json_decref(a);
    json_decref(b);
    if (rc) {
        sm_config_changes_free(l.v, l.n);
        return -1;
    }
    *changes = l.v;
    return l.n;
}

void sm_config_changes_free(sm_config_change *changes, int n)
{
    for (int i = 0; i < n; i++) {
        free(changes[i].field);
        free(changes[i].before);
        free(changes[i].after);
    }
    free(changes);
}
