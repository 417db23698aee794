/* Hugging Face model folders: config.json plus either one model.safetensors or the shards that
 * model.safetensors.index.json names (any other set of tensors stored the same way too); tensors are looked up by name across the shards and
 * loaded as float32, FP8 E4M3 weights dequantised with their `_scale_inv` block grid. */
#include "io/hf_model.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fp8_quant.h"
#include "io/config_json.h"

#define SCALE_SUFFIX "_scale_inv"

/* "dir/name", malloc'd. */
static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* One weight_map entry while the shards are opened. */
typedef struct name_ref {
    const char *name;
    int file;
} name_ref;

static int by_ref_name(const void *a, const void *b)
{
    return strcmp(((const name_ref *)a)->name, ((const name_ref *)b)->name);
}

/* Moves sorted refs into m->names / m->file_of (names are borrowed from the shards). */
static int set_names(sm_hf_model *m, name_ref *refs, int n, sm_error *err)
{
    qsort(refs, (size_t)n, sizeof *refs, by_ref_name);
    m->names = malloc((size_t)(n + 1) * sizeof *m->names);
    m->file_of = malloc((size_t)(n + 1) * sizeof *m->file_of);
    if (!m->names || !m->file_of) return sm_fail(err, "%s: out of memory", m->dir);
    for (int i = 0; i < n; i++) {
        m->names[i] = (char *)refs[i].name;
        m->file_of[i] = refs[i].file;
    }
    m->nnames = n;
    return 0;
}

static int open_file(sm_hf_model *m, const char *name, sm_error *err)
{
    char *path = join(m->dir, name);
    if (!path) return sm_fail(err, "%s: out of memory", m->dir);
    int rc = sm_st_open(&m->files[m->nfiles], path, err);
    free(path);
    if (rc == 0) m->nfiles++;
    return rc;
}

static int open_single(sm_hf_model *m, const char *file, sm_error *err)
{
    if (!(m->files = calloc(1, sizeof *m->files))) return sm_fail(err, "%s: out of memory", m->dir);
    if (open_file(m, file, err)) return -1;
    const sm_st_file *f = &m->files[0];
    name_ref *refs = malloc((size_t)(f->ntensors + 1) * sizeof *refs);
    if (!refs) return sm_fail(err, "%s: out of memory", m->dir);
    for (int i = 0; i < f->ntensors; i++) refs[i] = (name_ref){f->tensors[i].name, 0};
    int rc = set_names(m, refs, f->ntensors, err);
    free(refs);
    return rc;
}

/* Index of shard `file` in the list (appended when new), -1 when the name is not plain. */
static int shard_index(const char **shards, int *nshards, const char *file)
{
    if (!*file || strchr(file, '/') || strstr(file, "..")) return -1;
    for (int i = 0; i < *nshards; i++)
        if (strcmp(shards[i], file) == 0) return i;
    shards[*nshards] = file;
    return (*nshards)++;
}

/* Fills refs from weight_map (names point into the JSON) and the distinct shard names. */
static int read_weight_map(const char *index, json_t *wm, name_ref *refs, const char **shards,
                           int *nshards, sm_error *err)
{
    const char *key;
    json_t *v;
    int n = 0;
    json_object_foreach(wm, key, v) {
        int s = json_is_string(v) ? shard_index(shards, nshards, json_string_value(v)) : -1;
        if (s < 0)
            return sm_fail(err, "%s: weight_map: tensor '%s': shard is not a plain file name",
                           index, key);
        refs[n++] = (name_ref){key, s};
    }
    return 0;
}

/* Opens the shards and points every ref at its tensor's name inside its shard. */
static int open_shards(sm_hf_model *m, const char *index, name_ref *refs, int n,
                       const char **shards, int nshards, sm_error *err)
{
    if (!(m->files = calloc((size_t)nshards + 1, sizeof *m->files)))
        return sm_fail(err, "%s: out of memory", m->dir);
    for (int i = 0; i < nshards; i++)
        if (open_file(m, shards[i], err)) return -1;
    for (int i = 0; i < n; i++) {
        const sm_st_tensor *t = sm_st_find(&m->files[refs[i].file], refs[i].name);
        if (!t)
            return sm_fail(err, "%s: tensor '%s' is listed for %s but missing from it", index,
                           refs[i].name, shards[refs[i].file]);
        refs[i].name = t->name;
    }
    return 0;
}

static int open_weight_map(sm_hf_model *m, const char *index, json_t *wm, sm_error *err)
{
    int n = (int)json_object_size(wm), nshards = 0, rc = -1;
    name_ref *refs = malloc((size_t)n * sizeof *refs);
    const char **shards = malloc((size_t)n * sizeof *shards);
    if (!refs || !shards)
        sm_fail(err, "%s: out of memory", index);
    else if (read_weight_map(index, wm, refs, shards, &nshards, err) == 0 &&
             open_shards(m, index, refs, n, shards, nshards, err) == 0)
        rc = set_names(m, refs, n, err);
    free(refs);
    free(shards);
    return rc;
}

static int open_index(sm_hf_model *m, const char *index, sm_error *err)
{
    json_t *root = sm_json_load_object(index, err);
    if (!root) return -1;
    json_t *wm = json_object_get(root, "weight_map");
    int rc = json_is_object(wm) && json_object_size(wm)
                 ? open_weight_map(m, index, wm, err)
                 : sm_fail(err, "%s: weight_map missing, empty or not an object", index);
    json_decref(root);
    return rc;
}

/* BASE.safetensors.index.json and its shards, or else BASE.safetensors. */
static int open_tensors(sm_hf_model *m, const char *base, sm_error *err)
{
    char file[256], index_name[280];
    if (snprintf(file, sizeof file, "%s.safetensors", base) >= (int)sizeof file)
        return sm_fail(err, "%s: tensor file name '%s' too long", m->dir, base);
    snprintf(index_name, sizeof index_name, "%s.index.json", file);
    char *index = join(m->dir, index_name);
    if (!index) return sm_fail(err, "%s: out of memory", m->dir);
    /* any index that is there but unreadable (a loop, a FIFO) is reported, not skipped */
    int rc = access(index, F_OK) == 0 || errno != ENOENT ? open_index(m, index, err)
                                                         : open_single(m, file, err);
    free(index);
    return rc;
}

int sm_hf_open_tensors(sm_hf_model *m, const char *dir, const char *base, sm_error *err)
{
    memset(m, 0, sizeof *m);
    if (!(m->dir = strdup(dir))) return sm_fail(err, "%s: out of memory", dir);
    int rc = open_tensors(m, base, err);
    if (rc) sm_hf_close(m);
    return rc;
}

int sm_hf_open(sm_hf_model *m, const char *dir, sm_error *err)
{
    char *config = join(dir, "config.json");
    sm_config c;
    memset(m, 0, sizeof *m);
    int rc = config ? sm_config_load_json(&c, config, err)
                    : sm_fail(err, "%s: out of memory", dir);
    free(config);
    if (rc == 0 && (rc = sm_hf_open_tensors(m, dir, "model", err)) == 0) m->config = c;
    return rc;
}

void sm_hf_close(sm_hf_model *m)
{
    for (int i = 0; i < m->nfiles; i++) sm_st_close(&m->files[i]);
    free(m->files);
    free(m->names); /* the strings belong to the files */
    free(m->file_of);
    free(m->dir);
    memset(m, 0, sizeof *m);
}

static int by_name(const void *key, const void *elem)
{
    return strcmp(key, *(char *const *)elem);
}

/* The tensor `name` and its file, NULL when absent. */
static const sm_st_tensor *lookup(const sm_hf_model *m, const char *name, const sm_st_file **f)
{
    char *const *p = m->nnames ? bsearch(name, m->names, (size_t)m->nnames, sizeof *m->names,
                                         by_name)
                               : NULL;
    if (!p) return NULL;
    *f = &m->files[m->file_of[p - m->names]];
    return sm_st_find(*f, name);
}

int sm_hf_has(const sm_hf_model *m, const char *name)
{
    const sm_st_file *f;
    return lookup(m, name, &f) != NULL;
}

/* Reads the F32 scale grid of FP8 weight t (from file f) into a malloc'd array. */
static float *load_scale(const sm_hf_model *m, const sm_st_file *f, const sm_st_tensor *t,
                         const char *sname, sm_error *err)
{
    const sm_st_file *sf;
    const sm_st_tensor *s = lookup(m, sname, &sf);
    int br = m->config.fp8_block[0], bc = m->config.fp8_block[1];
    int64_t grid[2] = {(t->shape[0] + br - 1) / br, (t->shape[1] + bc - 1) / bc};
    if (!s) {
        sm_fail(err, "%s: tensor '%s': F8_E4M3 weight without its scale '%s'", f->path, t->name,
                sname);
        return NULL;
    }
    if (s->dtype != SM_F32) {
        sm_fail(err, "%s: tensor '%s': dtype %s, expected F32", sf->path, sname,
                sm_dtype_name(s->dtype));
        return NULL;
    }
    if (sm_st_check_shape(sf, s, 2, grid, err)) return NULL;
    float *out = malloc((size_t)(grid[0] * grid[1] + 1) * sizeof *out);
    if (!out) {
        sm_fail(err, "%s: tensor '%s': out of memory", sf->path, sname);
        return NULL;
    }
    int rc = sm_st_read_raw(sf, s, out, err);
    for (int64_t i = 0; i < grid[0] * grid[1] && rc == 0; i++)
        if (!isfinite(out[i]))
            rc = sm_fail(err, "%s: tensor '%s': scale [%lld, %lld] is %g, expected a finite "
                         "number", sf->path, sname, (long long)(i / grid[1]),
                         (long long)(i % grid[1]), out[i]);
    if (rc) {
        free(out);
        out = NULL;
    }
    return out;
}

static int load_fp8(const sm_hf_model *m, const sm_st_file *f, const sm_st_tensor *t,
                    const char *sname, float *dst, sm_error *err)
{
    if (t->ndim != 2)
        return sm_fail(err, "%s: tensor '%s': an F8_E4M3 weight must be 2-D", f->path, t->name);
    float *scale = load_scale(m, f, t, sname, err);
    uint8_t *q = scale ? sm_st_load_raw(f, t, err) : NULL;
    if (q)
        sm_fp8_dequant_blocks(dst, q, scale, t->shape[0], t->shape[1], m->config.fp8_block[0],
                              m->config.fp8_block[1]);
    free(q);
    free(scale);
    return q ? 0 : -1;
}

/* Adds shard `file` of dir's tensors to weight_map, and their bytes to *total. */
static int index_shard(const char *dir, const char *file, json_t *wm, int64_t *total,
                       sm_error *err)
{
    char *path = join(dir, file);
    sm_st_file f;
    if (!path) return sm_fail(err, "%s: out of memory", dir);
    if (sm_st_open(&f, path, err)) {
        free(path);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < f.ntensors && rc == 0; i++) {
        const sm_st_tensor *t = &f.tensors[i];
        if (json_object_get(wm, t->name))
            rc = sm_fail(err, "%s: tensor '%s' is also in %s", path, t->name,
                         json_string_value(json_object_get(wm, t->name)));
        else if (json_object_set_new(wm, t->name, json_string(file)))
            rc = sm_fail(err, "%s: out of memory", path);
        *total += (int64_t)(t->end - t->begin);
    }
    sm_st_close(&f);
    free(path);
    return rc;
}

int sm_hf_write_index(const char *dir, const char *base, const char *const *shards, int n,
                      sm_error *err)
{
    char file[256];
    int64_t total = 0;
    if (snprintf(file, sizeof file, "%s.safetensors.index.json", base) >= (int)sizeof file)
        return sm_fail(err, "%s: tensor file name '%s' too long", dir, base);
    char *path = join(dir, file);
    json_t *wm = json_object(), *root = NULL;
    int rc = path && wm ? 0 : sm_fail(err, "%s: out of memory", dir);
    for (int s = 0; s < n && rc == 0; s++) rc = index_shard(dir, shards[s], wm, &total, err);
    if (rc == 0 && !(root = json_pack("{s:{s:I},s:O}", "metadata", "total_size",
                                      (json_int_t)total, "weight_map", wm)))
        rc = sm_fail(err, "%s: out of memory", path);
    if (rc == 0) rc = sm_json_save(root, path, err);
    json_decref(root);
    json_decref(wm);
    free(path);
    return rc;
}

int sm_hf_load_f32(const sm_hf_model *m, const char *name, int ndim, const int64_t *shape,
                   float *dst, sm_error *err)
{
    const sm_st_file *f;
    const sm_st_tensor *t = lookup(m, name, &f);
    if (!t) return sm_fail(err, "%s: tensor '%s' not found", m->dir, name);
    if (sm_st_check_shape(f, t, ndim, shape, err)) return -1;
    size_t n = strlen(name) + sizeof SCALE_SUFFIX;
    char *sname = malloc(n);
    if (!sname) return sm_fail(err, "%s: tensor '%s': out of memory", f->path, name);
    snprintf(sname, n, "%s" SCALE_SUFFIX, name);
    int rc = 0;
    if (t->dtype == SM_F8_E4M3)
        rc = load_fp8(m, f, t, sname, dst, err);
    else if (sm_hf_has(m, sname))
        rc = sm_fail(err, "%s: tensor '%s': has a scale '%s' but dtype %s, not F8_E4M3", f->path,
                     name, sname, sm_dtype_name(t->dtype));
    else if (t->dtype != SM_F32 && t->dtype != SM_BF16 && t->dtype != SM_F16)
        rc = sm_fail(err, "%s: tensor '%s': dtype %s is not a weight type (expected F32, BF16, "
                     "F16, or F8_E4M3 with its scale)", f->path, name, sm_dtype_name(t->dtype));
    else
        rc = sm_st_convert_f32(f, t, dst, err);
    free(sname);
    return rc;
}
