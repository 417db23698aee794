/* safetensors reader: checks every header field against the file's size before any tensor is
 * handed out, then reads tensors with pread, so that a file cut short later is an error. */
#include "io/safetensors.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/aprintf.h"
#include "base/file.h"

#define SM_ST_MAX_HEADER (100ull << 20)

/* Opens the file for reading through pread only: nothing is mapped, so a file truncated while
 * it is read gives an error instead of a SIGBUS. */
static int open_file(sm_st_file *f, sm_error *err)
{
    uint64_t size;
    if ((f->fd = sm_file_open_read(f->path, &size, err)) < 0) return -1;
    if (size < 8)
        return sm_fail(err, "%s: cannot read: file shorter than the 8-byte header length",
                       f->path);
    f->size = (size_t)size;
    return 0;
}

static int read_header_length(sm_st_file *f, sm_error *err)
{
    uint8_t b[8];
    uint64_t n = 0;
    if (sm_file_pread(f->fd, b, sizeof b, 0, f->path, "header length", err)) return -1;
    for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
    if (n > SM_ST_MAX_HEADER)
        return sm_fail(err, "%s: header length %llu is absurd (more than 100 MiB)", f->path,
                       (unsigned long long)n);
    if (n > f->size - 8)
        return sm_fail(err, "%s: header length %llu runs beyond the end of the file (%zu bytes)",
                       f->path, (unsigned long long)n, f->size);
    f->data_start = 8 + (size_t)n;
    return 0;
}

static int parse_dtype(const sm_st_file *f, sm_st_tensor *t, json_t *v, sm_error *err)
{
    json_t *d = json_object_get(v, "dtype");
    if (!json_is_string(d))
        return sm_fail(err, "%s: tensor '%s': dtype missing or not a string", f->path, t->name);
    if (sm_dtype_parse(json_string_value(d), &t->dtype) != 0)
        return sm_fail(err, "%s: tensor '%s': unknown dtype '%s'", f->path, t->name,
                       json_string_value(d));
    return 0;
}

static int parse_shape(const sm_st_file *f, sm_st_tensor *t, json_t *v, sm_error *err)
{
    json_t *s = json_object_get(v, "shape"), *x;
    size_t i;
    if (!json_is_array(s))
        return sm_fail(err, "%s: tensor '%s': shape missing or not an array", f->path, t->name);
    if (json_array_size(s) > SM_ST_MAX_DIMS)
        return sm_fail(err, "%s: tensor '%s': shape has %zu dims, more than %d", f->path, t->name,
                       json_array_size(s), SM_ST_MAX_DIMS);
    json_array_foreach(s, i, x) {
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return sm_fail(err, "%s: tensor '%s': shape is not an array of non-negative integers",
                           f->path, t->name);
        t->shape[i] = json_integer_value(x);
    }
    t->ndim = (int)json_array_size(s);
    return 0;
}

/* Byte size numel * dtype size, or an error when it does not fit in 63 bits. */
static int tensor_bytes(const sm_st_file *f, const sm_st_tensor *t, uint64_t *bytes,
                        sm_error *err)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        if (__builtin_mul_overflow(n, t->shape[i], &n))
            return sm_fail(err, "%s: tensor '%s': shape element count overflows", f->path,
                           t->name);
    if (__builtin_mul_overflow(n, (int64_t)sm_dtype_size(t->dtype), &n))
        return sm_fail(err, "%s: tensor '%s': shape byte size overflows", f->path, t->name);
    *bytes = (uint64_t)n;
    return 0;
}

static int parse_offsets(const sm_st_file *f, sm_st_tensor *t, json_t *v, sm_error *err)
{
    json_t *o = json_object_get(v, "data_offsets");
    json_t *b = json_array_get(o, 0), *e = json_array_get(o, 1);
    uint64_t data_size = f->size - f->data_start, bytes = 0;
    if (!json_is_array(o) || json_array_size(o) != 2 || !json_is_integer(b) ||
        !json_is_integer(e) || json_integer_value(b) < 0 || json_integer_value(e) < 0)
        return sm_fail(err, "%s: tensor '%s': data_offsets is not [begin, end]", f->path, t->name);
    t->begin = (uint64_t)json_integer_value(b);
    t->end = (uint64_t)json_integer_value(e);
    if (t->begin > t->end)
        return sm_fail(err, "%s: tensor '%s': data_offsets begin %llu > end %llu", f->path,
                       t->name, (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end > data_size)
        return sm_fail(err, "%s: tensor '%s': data_offsets end %llu beyond the data section "
                       "(%llu bytes)", f->path, t->name, (unsigned long long)t->end,
                       (unsigned long long)data_size);
    if (tensor_bytes(f, t, &bytes, err)) return -1;
    if (t->end - t->begin != bytes)
        return sm_fail(err, "%s: tensor '%s': data_offsets span %llu bytes, but %s of this shape "
                       "needs %llu", f->path, t->name, (unsigned long long)(t->end - t->begin),
                       sm_dtype_name(t->dtype), (unsigned long long)bytes);
    return 0;
}

static int parse_entry(const sm_st_file *f, const char *name, json_t *v, sm_st_tensor *t,
                       sm_error *err)
{
    if (!(t->name = strdup(name))) return sm_fail(err, "%s: out of memory", f->path);
    if (!json_is_object(v))
        return sm_fail(err, "%s: tensor '%s': entry is not an object", f->path, name);
    if (parse_dtype(f, t, v, err) || parse_shape(f, t, v, err) || parse_offsets(f, t, v, err))
        return -1;
    return 0;
}

static int parse_metadata(sm_st_file *f, json_t *v, sm_error *err)
{
    const char *key;
    json_t *x;
    if (!json_is_object(v)) return sm_fail(err, "%s: __metadata__ is not an object", f->path);
    if (!(f->meta = calloc(2 * json_object_size(v) + 1, sizeof *f->meta)))
        return sm_fail(err, "%s: out of memory", f->path);
    json_object_foreach(v, key, x) {
        if (!json_is_string(x))
            return sm_fail(err, "%s: __metadata__ '%s' is not a string", f->path, key);
        char **kv = f->meta + 2 * f->nmeta++;
        kv[0] = strdup(key);
        kv[1] = strdup(json_string_value(x));
        if (!kv[0] || !kv[1]) return sm_fail(err, "%s: out of memory", f->path);
    }
    return 0;
}

static int parse_root(sm_st_file *f, json_t *root, sm_error *err)
{
    const char *key;
    json_t *v;
    if (!json_is_object(root)) return sm_fail(err, "%s: header is not a JSON object", f->path);
    if (!(f->tensors = calloc(json_object_size(root) + 1, sizeof *f->tensors)))
        return sm_fail(err, "%s: out of memory", f->path);
    json_object_foreach(root, key, v) {
        int rc = strcmp(key, "__metadata__") == 0
                     ? parse_metadata(f, v, err)
                     : parse_entry(f, key, v, &f->tensors[f->ntensors++], err);
        if (rc) return -1;
    }
    return 0;
}

static int parse_header(sm_st_file *f, sm_error *err)
{
    json_error_t je;
    size_t n = f->data_start - 8;
    char *text = malloc(n + 1);
    if (!text) return sm_fail(err, "%s: out of memory for the header", f->path);
    if (sm_file_pread(f->fd, text, n, 8, f->path, "header", err)) {
        free(text);
        return -1;
    }
    json_t *root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root)
        return sm_fail(err, "%s: header JSON rejected: %s (byte %d)", f->path, je.text,
                       je.position);
    int rc = parse_root(f, root, err);
    json_decref(root);
    return rc;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const sm_st_tensor *)a)->name, ((const sm_st_tensor *)b)->name);
}

static int by_begin(const void *a, const void *b)
{
    const sm_st_tensor *x = *(const sm_st_tensor *const *)a, *y = *(const sm_st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* Non-empty tensors must occupy disjoint byte ranges. */
static int check_overlaps(const sm_st_file *f, sm_error *err)
{
    const sm_st_tensor **order = malloc((size_t)(f->ntensors + 1) * sizeof *order);
    int n = 0, rc = 0;
    if (!order) return sm_fail(err, "%s: out of memory", f->path);
    for (int i = 0; i < f->ntensors; i++)
        if (f->tensors[i].end > f->tensors[i].begin) order[n++] = &f->tensors[i];
    qsort(order, (size_t)n, sizeof *order, by_begin);
    for (int i = 1; i < n && !rc; i++)
        if (order[i - 1]->end > order[i]->begin)
            rc = sm_fail(err, "%s: tensors '%s' and '%s' overlap in the data section", f->path,
                         order[i - 1]->name, order[i]->name);
    free(order);
    return rc;
}

int sm_st_open(sm_st_file *f, const char *path, sm_error *err)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    if (!(f->path = strdup(path))) return sm_fail(err, "%s: out of memory", path);
    if (open_file(f, err) || read_header_length(f, err) || parse_header(f, err) ||
        check_overlaps(f, err)) {
        sm_st_close(f);
        return -1;
    }
    qsort(f->tensors, (size_t)f->ntensors, sizeof *f->tensors, by_name);
    return 0;
}

void sm_st_close(sm_st_file *f)
{
    for (int i = 0; i < f->ntensors; i++) free(f->tensors[i].name);
    for (int i = 0; i < 2 * f->nmeta; i++) free(f->meta[i]);
    free(f->tensors);
    free(f->meta);
    if (f->path && f->fd >= 0) close(f->fd);    /* a zeroed file was never opened */
    free(f->path);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

const sm_st_tensor *sm_st_find(const sm_st_file *f, const char *name)
{
    sm_st_tensor key = {.name = (char *)name};
    if (!f->ntensors) return NULL;
    return bsearch(&key, f->tensors, (size_t)f->ntensors, sizeof key, by_name);
}

int sm_st_read_raw(const sm_st_file *f, const sm_st_tensor *t, void *dst, sm_error *err)
{
    char *what = sm_aprintf("tensor '%s'", t->name);
    if (!what) return sm_fail(err, "%s: tensor '%s': out of memory", f->path, t->name);
    int rc = sm_file_pread(f->fd, dst, (size_t)(t->end - t->begin), f->data_start + t->begin,
                           f->path, what, err);
    free(what);
    return rc;
}

void *sm_st_load_raw(const sm_st_file *f, const sm_st_tensor *t, sm_error *err)
{
    void *raw = malloc((size_t)(t->end - t->begin) + 1);
    if (!raw)
        sm_fail(err, "%s: tensor '%s': out of memory", f->path, t->name);
    else if (sm_st_read_raw(f, t, raw, err)) {
        free(raw);
        raw = NULL;
    }
    return raw;
}

int sm_st_convert_f32(const sm_st_file *f, const sm_st_tensor *t, float *dst, sm_error *err)
{
    if (t->dtype == SM_F32) return sm_st_read_raw(f, t, dst, err);
    void *raw = sm_st_load_raw(f, t, err);
    if (!raw) return -1;
    sm_convert_to_f32(dst, raw, t->dtype, (size_t)sm_st_numel(t));
    free(raw);
    return 0;
}

int64_t sm_st_numel(const sm_st_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

const char *sm_st_meta(const sm_st_file *f, const char *key)
{
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
    return NULL;
}

void sm_st_format_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

int sm_st_check_shape(const sm_st_file *f, const sm_st_tensor *t, int ndim, const int64_t *shape,
                      sm_error *err)
{
    char got[256], want[256];
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (same) return 0;
    sm_st_format_shape(got, sizeof got, t->ndim, t->shape);
    sm_st_format_shape(want, sizeof want, ndim, shape);
    return sm_fail(err, "%s: tensor '%s': shape %s, expected %s", f->path, t->name, got, want);
}

/* The tensor `name` after checking its shape, NULL (with err set) when absent or misshaped. */
static const sm_st_tensor *find_checked(const sm_st_file *f, const char *name, int ndim,
                                        const int64_t *shape, sm_error *err)
{
    const sm_st_tensor *t = sm_st_find(f, name);
    if (!t) {
        sm_fail(err, "%s: tensor '%s' not found", f->path, name);
        return NULL;
    }
    return sm_st_check_shape(f, t, ndim, shape, err) ? NULL : t;
}

int sm_st_read_f32(const sm_st_file *f, const char *name, int ndim, const int64_t *shape,
                   float *dst, sm_error *err)
{
    const sm_st_tensor *t = find_checked(f, name, ndim, shape, err);
    return t ? sm_st_convert_f32(f, t, dst, err) : -1;
}

int sm_st_read_i32(const sm_st_file *f, const char *name, int ndim, const int64_t *shape,
                   int32_t *dst, sm_error *err)
{
    const sm_st_tensor *t = find_checked(f, name, ndim, shape, err);
    if (!t) return -1;
    if (t->dtype == SM_I32) return sm_st_read_raw(f, t, dst, err);
    if (t->dtype != SM_I64)
        return sm_fail(err, "%s: tensor '%s': dtype %s, expected I32 or I64", f->path, name,
                       sm_dtype_name(t->dtype));
    const unsigned char *p = sm_st_load_raw(f, t, err);
    int rc = p ? 0 : -1;
    for (int64_t i = 0, n = sm_st_numel(t); !rc && i < n; i++) {
        int64_t v;
        memcpy(&v, p + 8 * i, sizeof v);
        if (v < INT32_MIN || v > INT32_MAX)
            rc = sm_fail(err, "%s: tensor '%s': value %lld at index %lld does not fit int32",
                         f->path, name, (long long)v, (long long)i);
        else
            dst[i] = (int32_t)v;
    }
    free((void *)p);
    return rc;
}
