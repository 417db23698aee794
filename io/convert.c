/* starmoe convert: one output tensor file per input file (io/convert.h), tensors converted one
 * at a time, then the index, config.json and tokenizer files, all under DST.tmp.<pid>, renamed
 * to DST when complete. */
#include "io/convert.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/aprintf.h"
#include "base/atomic_file.h"
#include "base/file.h"
#include "base/fp8_quant.h"
#include "io/config_json.h"
#include "io/hf_model.h"

#define SCALE_SUFFIX "_scale_inv"

typedef enum target { TO_FP8, TO_BF16, TO_F32 } target;

int sm_hf_is_fp8_linear(const char *name)
{
    static const char *const linear[] = {
        "q_a_proj", "q_b_proj", "q_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj",
        "gate_proj", "up_proj", "down_proj",
    };
    size_t n = strlen(name);
    if (n < 8 || strcmp(name + n - 7, ".weight") != 0) return 0;
    for (size_t i = 0; i < sizeof linear / sizeof linear[0]; i++) {
        size_t k = strlen(linear[i]);
        if (n - 7 > k && name[n - 8 - k] == '.' && !strncmp(name + n - 7 - k, linear[i], k))
            return 1;
    }
    return 0;
}

/* The weight `name` of the scale `name`_scale_inv, NULL when name is no scale (malloc'd). */
static char *weight_of_scale(const char *name)
{
    size_t n = strlen(name), k = strlen(SCALE_SUFFIX);
    if (n <= k || strcmp(name + n - k, SCALE_SUFFIX) != 0) return NULL;
    return sm_aprintf("%.*s", (int)(n - k), name);
}

/* One output file being filled. */
typedef struct conv {
    const sm_hf_model *m;
    const sm_st_file *f;         /* the input file */
    sm_st_writer *w;
    target to;
} conv;

/* Adds the raw bytes of input tensor t (from file f) under its name. */
static int copy_raw(conv *c, const sm_st_file *f, const sm_st_tensor *t, sm_error *err)
{
    void *raw = sm_st_load_raw(f, t, err);
    int rc = raw ? sm_st_writer_add(c->w, t->name, t->dtype, t->ndim, t->shape, raw, err) : -1;
    free(raw);
    return rc;
}

/* t as float32 (FP8 dequantised and its scale checked), malloc'd; NULL with err set. */
static float *load_f32(conv *c, const sm_st_tensor *t, sm_error *err)
{
    float *x = malloc((size_t)(sm_st_numel(t) + 1) * sizeof *x);
    if (!x) sm_fail(err, "%s: tensor '%s': out of memory", c->f->path, t->name);
    else if (sm_hf_load_f32(c->m, t->name, t->ndim, t->shape, x, err)) {
        free(x);
        return NULL;
    }
    return x;
}

/* An FP8 weight kept as it is: checked by dequantising it, then its codes and scale copied. */
static int copy_fp8(conv *c, const sm_st_tensor *t, sm_error *err)
{
    float *x = load_f32(c, t, err);
    char *sname = sm_aprintf("%s" SCALE_SUFFIX, t->name);
    const sm_st_tensor *s = NULL;
    const sm_st_file *sf = NULL;
    for (int i = 0; i < c->m->nfiles && !s && sname; i++)
        if ((s = sm_st_find(&c->m->files[i], sname))) sf = &c->m->files[i];
    int rc = x && s ? 0 : -1;
    if (x && !sname) rc = sm_fail(err, "%s: tensor '%s': out of memory", c->f->path, t->name);
    if (rc == 0) rc = copy_raw(c, c->f, t, err);
    if (rc == 0) rc = copy_raw(c, sf, s, err);
    free(sname);
    free(x);
    return rc;
}

/* A linear weight (any float dtype) quantised in 128x128 blocks, with its scale grid. */
static int quantize_weight(conv *c, const sm_st_tensor *t, sm_error *err)
{
    int64_t rows = t->shape[0], cols = t->shape[1];
    int64_t grid[2] = {sm_fp8_groups(rows), sm_fp8_groups(cols)};
    float *x = load_f32(c, t, err), *s = malloc((size_t)(grid[0] * grid[1] + 1) * sizeof *s);
    uint8_t *q = malloc((size_t)(rows * cols + 1));
    char *sname = sm_aprintf("%s" SCALE_SUFFIX, t->name);
    int rc = x ? 0 : -1;
    if (rc == 0 && (!s || !q || !sname))
        rc = sm_fail(err, "%s: tensor '%s': out of memory", c->f->path, t->name);
    if (rc == 0) {
        sm_fp8_quantize_blocks(x, rows, cols, q, s);
        rc = sm_st_writer_add(c->w, t->name, SM_F8_E4M3, 2, t->shape, q, err) ||
                     sm_st_writer_add(c->w, sname, SM_F32, 2, grid, s, err)
                 ? -1
                 : 0;
    }
    free(x), free(s), free(q), free(sname);
    return rc;
}

/* A float tensor as BF16 or F32. */
static int convert_float(conv *c, const sm_st_tensor *t, sm_error *err)
{
    float *x = load_f32(c, t, err);
    if (!x) return -1;
    int64_t n = sm_st_numel(t);
    int rc;
    if (c->to == TO_F32) {
        rc = sm_st_writer_add(c->w, t->name, SM_F32, t->ndim, t->shape, x, err);
    } else {
        uint16_t *h = malloc((size_t)(n + 1) * sizeof *h);
        if (!h) rc = sm_fail(err, "%s: tensor '%s': out of memory", c->f->path, t->name);
        for (int64_t i = 0; h && i < n; i++) h[i] = sm_f32_to_bf16(x[i]);
        if (h) rc = sm_st_writer_add(c->w, t->name, SM_BF16, t->ndim, t->shape, h, err);
        free(h);
    }
    free(x);
    return rc;
}

static int is_float(sm_dtype d)
{
    return d == SM_F32 || d == SM_BF16 || d == SM_F16 || d == SM_F8_E4M3;
}

/* One input tensor into the output file. A scale goes with its weight: alone it is an error. */
static int convert_tensor(conv *c, const sm_st_tensor *t, sm_error *err)
{
    char *weight = weight_of_scale(t->name);
    int is_scale = weight != NULL, has_weight = weight && sm_hf_has(c->m, weight);
    free(weight);
    if (has_weight) return 0;
    if (is_scale)
        return sm_fail(err, "%s: tensor '%s': a scale without its weight", c->f->path, t->name);
    if (c->to != TO_FP8) return is_float(t->dtype) ? convert_float(c, t, err)
                                                    : copy_raw(c, c->f, t, err);
    int blocks_128 = c->m->config.fp8_block[0] == SM_FP8_GROUP &&
                     c->m->config.fp8_block[1] == SM_FP8_GROUP;
    if (t->dtype == SM_F8_E4M3) /* other blocks than 128x128: quantised again */
        return blocks_128 ? copy_fp8(c, t, err) : quantize_weight(c, t, err);
    if (t->ndim == 2 && sm_hf_is_fp8_linear(t->name) && is_float(t->dtype))
        return quantize_weight(c, t, err);
    return copy_raw(c, c->f, t, err);
}

/* The output file of input file f, written into tmp. */
static int convert_file(const sm_hf_model *m, const sm_st_file *f, target to, const char *tmp,
                        sm_error *err)
{
    const char *name = strrchr(f->path, '/') ? strrchr(f->path, '/') + 1 : f->path;
    char *path = sm_aprintf("%s/%s", tmp, name);
    conv c = {m, f, sm_st_writer_new(), to};
    int rc = path && c.w ? sm_st_writer_meta(c.w, "format", "pt", err)
                         : sm_fail(err, "%s: out of memory", tmp);
    for (int i = 0; i < f->ntensors && rc == 0; i++) rc = convert_tensor(&c, &f->tensors[i], err);
    if (rc == 0) rc = sm_st_writer_write(c.w, path, err);
    sm_st_writer_free(c.w);
    free(path);
    return rc;
}

/* The index over the output files, named as the input's. */
static int write_index(const sm_hf_model *m, const char *tmp, sm_error *err)
{
    const char **shards = malloc((size_t)m->nfiles * sizeof *shards);
    if (!shards) return sm_fail(err, "%s: out of memory", tmp);
    for (int i = 0; i < m->nfiles; i++)
        shards[i] = strrchr(m->files[i].path, '/') ? strrchr(m->files[i].path, '/') + 1
                                                   : m->files[i].path;
    int rc = sm_hf_write_index(tmp, "model", shards, m->nfiles, err);
    free((void *)shards);
    return rc;
}

/* config.json with quantization_config set (fp8) or removed, torch_dtype following. */
static int write_config(const char *src, const char *tmp, target to, sm_error *err)
{
    char *in = sm_aprintf("%s/config.json", src), *out = sm_aprintf("%s/config.json", tmp);
    json_t *cfg = in && out ? sm_json_load_object(in, err) : NULL, *q = NULL;
    int rc = cfg ? 0 : -1;
    if (!in || !out) rc = sm_fail(err, "%s: out of memory", src);
    if (rc == 0 && to == TO_FP8)
        rc = !(q = json_pack("{s:s,s:s,s:s,s:[i,i]}", "quant_method", "fp8", "fmt", "e4m3",
                             "activation_scheme", "dynamic", "weight_block_size", SM_FP8_GROUP,
                             SM_FP8_GROUP)) ||
             json_object_set_new(cfg, "quantization_config", q);
    if (rc == 0 && to != TO_FP8) {
        json_object_del(cfg, "quantization_config");
        rc = json_object_set_new(cfg, "torch_dtype",
                                 json_string(to == TO_BF16 ? "bfloat16" : "float32"));
    }
    if (rc > 0) rc = sm_fail(err, "%s: out of memory", out);
    if (rc == 0) rc = sm_json_save(cfg, out, err);
    json_decref(cfg);
    free(in);
    free(out);
    return rc;
}

static int is_tokenizer_file(const char *name)
{
    return !strncmp(name, "tokenizer", 9) || !strcmp(name, "special_tokens_map.json");
}

/* Copies src's tokenizer files (plain files only) into tmp. */
static int copy_tokenizer(const char *src, const char *tmp, sm_error *err)
{
    DIR *d = opendir(src);
    if (!d) return sm_fail(err, "%s: cannot list: %s", src, strerror(errno));
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        if (!is_tokenizer_file(e->d_name)) continue;
        char *from = sm_aprintf("%s/%s", src, e->d_name), *to = sm_aprintf("%s/%s", tmp, e->d_name);
        struct stat st;
        size_t n = 0;
        void *buf = NULL;
        if (!from || !to) rc = sm_fail(err, "%s: out of memory", src);
        else if (stat(from, &st) == 0 && S_ISREG(st.st_mode)) {
            rc = (buf = sm_read_file(from, &n, err)) ? 0 : -1;
            if (rc == 0) rc = sm_atomic_write_file(to, buf, n, err);
        }
        free(buf), free(from), free(to);
    }
    closedir(d);
    return rc;
}

/* 0 when dst does not exist or is an empty folder. */
static int check_dst(const char *dst, sm_error *err)
{
    DIR *d = opendir(dst);
    if (!d) {
        if (errno == ENOENT) return 0;
        return sm_fail(err, "%s: exists and is not a readable folder (%s): refusing to "
                       "overwrite it", dst, strerror(errno));
    }
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            rc = sm_fail(err, "%s: exists and is not empty: refusing to overwrite it", dst);
    closedir(d);
    return rc;
}

static int parse_target(const char *to, target *t, sm_error *err)
{
    if (to && !strcmp(to, "fp8")) *t = TO_FP8;
    else if (to && !strcmp(to, "bf16")) *t = TO_BF16;
    else if (to && !strcmp(to, "f32")) *t = TO_F32;
    else return sm_fail(err, "convert: target '%s': expected fp8, bf16 or f32", to ? to : "");
    return 0;
}

/* Everything of dst written into tmp. */
static int convert_into(const sm_hf_model *m, const char *src, target to, const char *tmp,
                        sm_error *err)
{
    char *index = sm_aprintf("%s/model.safetensors.index.json", src);
    int sharded = index && access(index, F_OK) == 0;
    free(index);
    int rc = 0;
    for (int i = 0; i < m->nfiles && rc == 0; i++) rc = convert_file(m, &m->files[i], to, tmp, err);
    if (rc == 0 && sharded) rc = write_index(m, tmp, err);
    if (rc == 0) rc = write_config(src, tmp, to, err);
    if (rc == 0) rc = copy_tokenizer(src, tmp, err);
    return rc;
}

int sm_hf_convert(const char *src, const char *to, const char *dst, sm_error *err)
{
    target t = TO_F32;
    sm_hf_model m;
    size_t n = strlen(dst);
    while (n > 1 && dst[n - 1] == '/') n--; /* "OUT/": the temporary folder is OUT.tmp.<pid> */
    if (parse_target(to, &t, err) || check_dst(dst, err)) return -1;
    if (sm_hf_open(&m, src, err)) return -1;
    char *tmp = sm_aprintf("%.*s.tmp.%ld", (int)n, dst, (long)getpid()), *made = NULL;
    int rc = tmp ? sm_mkdir_p(tmp, &made, err) : sm_fail(err, "%s: out of memory", dst);
    if (rc == 0) rc = convert_into(&m, src, t, tmp, err);
    if (rc == 0) rmdir(dst); /* an empty dst gives way to the finished folder */
    if (rc == 0 && rename(tmp, dst) != 0)
        rc = sm_fail(err, "%s: cannot rename %s to it: %s", dst, tmp, strerror(errno));
    if (rc && made) sm_remove_tree(made, NULL);
    free(made);
    free(tmp);
    sm_hf_close(&m);
    return rc;
}
