/* safetensors writer: tensors collected in memory, header keys in insertion order, each tensor
 * 8-byte aligned, the file replaced atomically (base/atomic_file.h). */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/atomic_file.h"

/* ---- safetensors writer ---- */

typedef struct st_entry {
    char *name;
    sm_dtype dtype;
    int ndim;
    int64_t shape[SM_ST_MAX_DIMS];
    void *data;
    size_t bytes;
} st_entry;

struct sm_st_writer {
    int n, cap;
    st_entry *entries;
    json_t *names;               /* set of the names added so far */
    json_t *meta;
};

sm_st_writer *sm_st_writer_new(void)
{
    sm_st_writer *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->names = json_object();
    w->meta = json_object();
    if (!w->names || !w->meta) {
        sm_st_writer_free(w);
        return NULL;
    }
    return w;
}

void sm_st_writer_free(sm_st_writer *w)
{
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->entries[i].name);
        free(w->entries[i].data);
    }
    free(w->entries);
    json_decref(w->names);
    json_decref(w->meta);
    free(w);
}

/* Checks name, dtype and shape, and computes the byte size. */
static int check_new_tensor(const sm_st_writer *w, const char *name, sm_dtype dtype, int ndim,
                            const int64_t *shape, size_t *bytes, sm_error *err)
{
    int64_t n = (int64_t)sm_dtype_size(dtype);
    const char *bad = !*name                               ? "empty name"
                      : strcmp(name, "__metadata__") == 0  ? "reserved name"
                      : json_object_get(w->names, name)    ? "duplicate name"
                                                           : NULL;
    if (bad) return sm_fail(err, "safetensors writer: tensor '%s': %s", name, bad);
    if ((unsigned)dtype >= SM_DTYPE_COUNT)
        return sm_fail(err, "safetensors writer: tensor '%s': unknown dtype %d", name, dtype);
    if (ndim < 0 || ndim > SM_ST_MAX_DIMS)
        return sm_fail(err, "safetensors writer: tensor '%s': %d dims (0 to %d allowed)", name,
                       ndim, SM_ST_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || __builtin_mul_overflow(n, shape[i], &n))
            return sm_fail(err, "safetensors writer: tensor '%s': shape is negative or too big",
                           name);
    *bytes = (size_t)n;
    return 0;
}

static int grow(sm_st_writer *w)
{
    if (w->n < w->cap) return 0;
    int cap = w->cap ? 2 * w->cap : 16;
    st_entry *e = realloc(w->entries, (size_t)cap * sizeof *e);
    if (!e) return -1;
    w->entries = e;
    w->cap = cap;
    return 0;
}

int sm_st_writer_add(sm_st_writer *w, const char *name, sm_dtype dtype, int ndim,
                     const int64_t *shape, const void *data, sm_error *err)
{
    size_t bytes = 0;
    if (check_new_tensor(w, name, dtype, ndim, shape, &bytes, err)) return -1;
    st_entry e = {.name = strdup(name), .dtype = dtype, .ndim = ndim, .bytes = bytes};
    e.data = malloc(bytes ? bytes : 1);
    if (!e.name || !e.data || grow(w) || json_object_set_new(w->names, name, json_true())) {
        free(e.name);
        free(e.data);
        return sm_fail(err, "safetensors writer: tensor '%s': name not UTF-8, or out of memory",
                       name);
    }
    if (ndim) memcpy(e.shape, shape, (size_t)ndim * sizeof *shape);
    if (bytes) memcpy(e.data, data, bytes);
    w->entries[w->n++] = e;
    return 0;
}

int sm_st_writer_meta(sm_st_writer *w, const char *key, const char *value, sm_error *err)
{
    if (json_object_set_new(w->meta, key, json_string(value)))
        return sm_fail(err, "safetensors writer: __metadata__ '%s': not valid UTF-8 or out of "
                       "memory", key);
    return 0;
}

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

static json_t *entry_json(const st_entry *e, size_t begin)
{
    json_t *shape = json_array();
    for (int i = 0; i < e->ndim; i++) json_array_append_new(shape, json_integer(e->shape[i]));
    return json_pack("{s:s, s:o, s:[I,I]}", "dtype", sm_dtype_name(e->dtype), "shape", shape,
                     "data_offsets", (json_int_t)begin, (json_int_t)(begin + e->bytes));
}

/* The header text, padded with spaces to a multiple of 8 bytes; malloc'd. */
static char *header_text(const sm_st_writer *w, size_t *len)
{
    json_t *root = json_object();
    size_t off = 0;
    int bad = !root || (json_object_size(w->meta) &&
                        json_object_set(root, "__metadata__", w->meta));
    for (int i = 0; i < w->n && !bad; i++) {
        bad = json_object_set_new(root, w->entries[i].name, entry_json(&w->entries[i], off));
        off = align8(off + w->entries[i].bytes);
    }
    char *s = bad ? NULL : json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!s) return NULL;
    size_t n = strlen(s), padded = align8(n);
    char *out = realloc(s, padded + 1);
    if (!out) {
        free(s);
        return NULL;
    }
    memset(out + n, ' ', padded - n);
    out[padded] = '\0';
    *len = padded;
    return out;
}

static int write_body(sm_atomic_file *a, const sm_st_writer *w, const char *header, size_t hlen,
                      sm_error *err)
{
    static const char zeros[8];
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    if (sm_atomic_write(a, len, 8, err) || sm_atomic_write(a, header, hlen, err)) return -1;
    for (int i = 0; i < w->n; i++) {
        const st_entry *e = &w->entries[i];
        size_t pad = i + 1 < w->n ? align8(e->bytes) - e->bytes : 0;
        if (sm_atomic_write(a, e->data, e->bytes, err) || sm_atomic_write(a, zeros, pad, err))
            return -1;
    }
    return 0;
}

int sm_st_writer_write(sm_st_writer *w, const char *path, sm_error *err)
{
    size_t hlen;
    sm_atomic_file a;
    char *header = header_text(w, &hlen);
    if (!header) return sm_fail(err, "%s: cannot build the safetensors header", path);
    int rc = -1;
    if (sm_atomic_begin(&a, path, err) == 0 && write_body(&a, w, header, hlen, err) == 0)
        rc = sm_atomic_commit(&a, err);
    free(header);
    return rc;
}
