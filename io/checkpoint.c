/* Checkpoint folders (io/checkpoint.h). A save writes every file into a private .tmp-* folder
 * through the atomic writers (each file fsynced), writes the manifest last, renames the folder
 * into place and fsyncs the run folder; the rename is the commit point. Folders being retired
 * (replaced or pruned) are first renamed to .tmp-old-* so that a kill never leaves a half-deleted
 * step-* folder. state.json and manifest.json are parsed with the field tables of
 * io/config_json.h. */
#include "io/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/aprintf.h"
#include "base/atomic_file.h"
#include "base/file.h"
#include "base/grow.h"
#include "io/config_json.h"
#include "io/hf_model.h"
#include "io/safetensors.h"

#define PATH_CAP 4096
#define STEP_FMT "step-%06lld"


/* ---- file tables ---- */

#define SF(m, kind) SM_FIELD(sm_ckpt_state, m, kind, SM_REQUIRED)
static const sm_field state_fields[] = {
    SF(step, SM_F_I64),      SF(rng, SM_F_U64),       SF(epoch, SM_F_U64),
    SF(cursor, SM_F_U64),    SF(tokens, SM_F_I64),    SF(loss_ema, SM_F_NUM),
    SF(bad_steps, SM_F_INT), SF(optim_steps, SM_F_I64), SF(tokenizer, SM_F_STR_OR_NULL),
    SM_FIELD(sm_ckpt_state, tokenizer_vocab, SM_F_INT, SM_OPTIONAL),
    {"run_config", SM_F_KNOWN, SM_REQUIRED, 0, 0, NULL, NULL},
};
static const sm_field_table state_table = {state_fields, SM_COUNT(state_fields), NULL};

typedef struct manifest_head {
    int64_t step;
} manifest_head;

static const sm_field manifest_fields[] = {
    {"format", SM_F_CONST, SM_REQUIRED, 0, 0, "\"starmoe-checkpoint\"", NULL},
    {"version", SM_F_CONST, SM_REQUIRED, 0, 0, "1", NULL},
    SM_FIELD(manifest_head, step, SM_F_I64, SM_REQUIRED),
    {"files", SM_F_KNOWN, SM_REQUIRED, 0, 0, NULL, NULL},
};
static const sm_field_table manifest_table = {manifest_fields, SM_COUNT(manifest_fields), NULL};

typedef struct manifest_entry {
    int64_t size;
    char crc32c[9];              /* 8 lowercase hex digits */
} manifest_entry;

static const sm_field entry_fields[] = {
    SM_FIELD(manifest_entry, size, SM_F_I64, SM_REQUIRED),
    SM_FIELD(manifest_entry, crc32c, SM_F_STR, SM_REQUIRED),
};
static const sm_field_table entry_table = {entry_fields, SM_COUNT(entry_fields), NULL};

/* ---- CRC-32C ---- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t sm_crc32c(uint32_t crc, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    pthread_once(&crc_once, crc_init);
    crc = ~crc;
    while (n--) crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#define CHUNK (1 << 20)

/* Size and CRC-32C of a file, read in 1 MiB chunks. */
static int file_crc(const char *path, int64_t *size, uint32_t *crc, sm_error *err)
{
    int fd = sm_file_open_read(path, NULL, err);
    if (fd < 0) return -1;
    char *buf = malloc(CHUNK);
    ssize_t r = 1;
    int rc = buf ? 0 : sm_fail(err, "%s: out of memory", path);
    *size = 0;
    *crc = 0;
    while (rc == 0 && (r = read(fd, buf, CHUNK)) != 0) {
        if (r < 0 && errno != EINTR)
            rc = sm_fail(err, "%s: cannot read: %s", path, strerror(errno));
        if (r <= 0) continue;
        *crc = sm_crc32c(*crc, buf, (size_t)r);
        *size += r;
    }
    close(fd);
    free(buf);
    return rc;
}

/* ---- folders ---- */

static int join(char *buf, const char *dir, const char *name, sm_error *err)
{
    if (snprintf(buf, PATH_CAP, "%s/%s", dir, name) >= PATH_CAP)
        return sm_fail(err, "%s/%s: path too long", dir, name);
    return 0;
}

/* A file name without folders, not hidden. */
static int plain_name(const char *name)
{
    return *name && *name != '.' && !strchr(name, '/');
}

static int sync_dir(const char *dir, sm_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL))
        rc = sm_fail(err, "%s: cannot sync folder: %s", dir, strerror(errno));
    if (fd >= 0) close(fd);
    return rc;
}

/* The step of a folder named as sm_ckpt_save names them, -1 for any other name. */
static int64_t step_of(const char *name)
{
    char *end, canonical[40];
    if (strncmp(name, "step-", 5) != 0 || name[5] < '0' || name[5] > '9') return -1;
    errno = 0;
    long long s = strtoll(name + 5, &end, 10);
    if (errno || *end) return -1;
    snprintf(canonical, sizeof canonical, STEP_FMT, s);
    return strcmp(canonical, name) == 0 ? s : -1;
}

/* The step a checkpoint folder's name gives (step-NNNNNN), -1 for another name. */
static int64_t folder_step(const char *ckpt_dir)
{
    size_t n = strlen(ckpt_dir);
    while (n > 1 && ckpt_dir[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && ckpt_dir[b - 1] != '/') b--;
    char name[40];
    if (n - b >= sizeof name) return -1;
    memcpy(name, ckpt_dir + b, n - b);
    name[n - b] = '\0';
    return step_of(name);
}

typedef struct step_list {
    int64_t *steps;              /* highest first */
    size_t n, cap;
} step_list;

static int add_step(step_list *l, int64_t s)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        int64_t *p = realloc(l->steps, cap * sizeof *p);
        if (!p) return -1;
        l->steps = p;
        l->cap = cap;
    }
    l->steps[l->n++] = s;
    return 0;
}

static int descending(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x < y) - (x > y);
}

/* The steps of the step-* folders of run_dir, highest first; a missing run_dir has none. */
static int list_steps(const char *run_dir, step_list *l, sm_error *err)
{
    DIR *d = opendir(run_dir);
    struct dirent *e;
    int rc = 0;
    if (!d && errno == ENOENT) return 0;
    if (!d) return sm_fail(err, "%s: cannot open folder: %s", run_dir, strerror(errno));
    while (rc == 0 && (e = readdir(d)))
        if (step_of(e->d_name) >= 0 && add_step(l, step_of(e->d_name)))
            rc = sm_fail(err, "%s: out of memory", run_dir);
    closedir(d);
    if (l->n) qsort(l->steps, l->n, sizeof *l->steps, descending);
    return rc;
}

/* Removes the .tmp-* folders left by killed or failed saves. The saver owns the run folder (the
 * trainer holds its lock), so any .tmp-* there is stale: a pid in the name proves nothing, since
 * pids are reused and a killed process can linger as a zombie. */
static int clean_stale(const char *run_dir, sm_error *err)
{
    DIR *d = opendir(run_dir);
    struct dirent *e;
    char path[PATH_CAP];
    int rc = 0;
    if (!d) return sm_fail(err, "%s: cannot open folder: %s", run_dir, strerror(errno));
    while (rc == 0 && (e = readdir(d)))
        if (strncmp(e->d_name, ".tmp-", 5) == 0)
            rc = join(path, run_dir, e->d_name, err) || sm_remove_tree(path, err) ? -1 : 0;
    closedir(d);
    return rc;
}

/* Renames run_dir/<name> to a .tmp-old-* folder (atomic), then deletes it. */
static int retire(const char *run_dir, const char *name, sm_error *err)
{
    char from[PATH_CAP], to[PATH_CAP], old[128];
    snprintf(old, sizeof old, ".tmp-old-%s-%ld", name, (long)getpid());
    if (join(from, run_dir, name, err) || join(to, run_dir, old, err)) return -1;
    if (rename(from, to) != 0)
        return sm_fail(err, "%s: cannot move aside to %s: %s", from, old, strerror(errno));
    return sm_remove_tree(to, err);
}

/* ---- writing ---- */

/* The sets of tensors a checkpoint holds, each as BASE.safetensors or as shards listed in
 * BASE.safetensors.index.json. */
static const char *const tensor_sets[] = {"model", "optimizer"};

/* Shard `shard` (0-based) of n of a set: BASE.safetensors when n is 1, else Hugging Face's
 * BASE-0000s-of-0000n.safetensors (1-based). */
static void shard_name(char *buf, size_t cap, const char *base, int shard, int n)
{
    if (n == 1) snprintf(buf, cap, "%s.safetensors", base);
    else snprintf(buf, cap, "%s-%05d-of-%05d.safetensors", base, shard + 1, n);
}

/* Everything the finishing writer needs. */
typedef struct save_job {
    const char *dir;             /* the .tmp folder being filled */
    int64_t step;
    int nshards;
    const sm_config *model;
    const char *run_config;
    const sm_ckpt_state *st;
    const sm_ckpt_file *tokenizer; /* NULL when none */
} save_job;

static int check_tensors(const sm_ckpt_tensor *t, int n, const char *what, sm_error *err)
{
    if (n < 0 || (n > 0 && !t)) return sm_fail(err, "checkpoint: %s: no tensors given", what);
    for (int i = 0; i < n; i++) {
        if (!t[i].name) return sm_fail(err, "checkpoint: %s: tensor %d has no name", what, i);
        if (t[i].ndim < 0 || t[i].ndim > SM_CKPT_MAX_DIMS)
            return sm_fail(err, "checkpoint: %s: tensor '%s': %d dims (0 to %d allowed)", what,
                           t[i].name, t[i].ndim, SM_CKPT_MAX_DIMS);
        if (!t[i].data) return sm_fail(err, "checkpoint: %s: tensor '%s': no data", what,
                                       t[i].name);
        if (t[i].dtype != SM_F32 && t[i].dtype != SM_BF16)
            return sm_fail(err, "checkpoint: %s: tensor '%s': dtype %s (F32 or BF16 expected)",
                           what, t[i].name, sm_dtype_name(t[i].dtype));
    }
    return 0;
}

/* Whether a file name is one the checkpoint's own files use (or may use for shards). */
static int own_name(const char *name)
{
    if (strcmp(name, "config.json") == 0 || strcmp(name, "state.json") == 0 ||
        strcmp(name, "manifest.json") == 0)
        return 1;
    for (size_t i = 0; i < SM_COUNT(tensor_sets); i++) {
        size_t n = strlen(tensor_sets[i]);
        if (strncmp(name, tensor_sets[i], n) == 0 && (name[n] == '.' || name[n] == '-'))
            return 1;
    }
    return 0;
}

/* The tokenizer's file name: not hidden, and not one of the checkpoint's own files. */
static int check_tokenizer_name(const save_job *j, sm_error *err)
{
    const char *name = j->tokenizer ? j->tokenizer->name : NULL;
    if (!j->tokenizer) return 0;
    if (!name || !plain_name(name) || strlen(name) >= sizeof ((sm_ckpt_state *)0)->tokenizer)
        return sm_fail(err, "checkpoint: unusable tokenizer file name '%s'", name ? name : "");
    if (own_name(name))
        return sm_fail(err, "checkpoint: the tokenizer's file name %s clashes with the "
                            "checkpoint's own", name);
    if (!j->tokenizer->data && j->tokenizer->size)
        return sm_fail(err, "checkpoint: tokenizer %s: no data", name);
    return 0;
}

/* Prefixes err's message with path (the writer's own messages do not name the file). */
static int in_file(const char *path, sm_error *err)
{
    if (err) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        sm_fail(err, "%s: %s", path, msg);
    }
    return -1;
}

static int write_tensors(const char *dir, const char *file, const sm_ckpt_tensor *t, int n,
                         sm_error *err)
{
    char path[PATH_CAP];
    if (join(path, dir, file, err)) return -1;
    sm_st_writer *w = sm_st_writer_new();
    if (!w) return sm_fail(err, "%s: out of memory", path);
    int rc = sm_st_writer_meta(w, "format", "pt", err);
    for (int i = 0; i < n && rc == 0; i++)
        rc = sm_st_writer_add(w, t[i].name, t[i].dtype, t[i].ndim, t[i].shape, t[i].data, err);
    if (rc) in_file(path, err);
    if (rc == 0) rc = sm_st_writer_write(w, path, err);
    sm_st_writer_free(w);
    return rc;
}

/* BASE.safetensors.index.json over the shards of set BASE that the writers left in the
 * folder (sm_hf_write_index). */
static int write_index(const save_job *j, const char *base, sm_error *err)
{
    char(*names)[128] = malloc((size_t)j->nshards * sizeof *names);
    const char **shards = malloc((size_t)j->nshards * sizeof *shards);
    int rc = names && shards ? 0 : sm_fail(err, "%s: out of memory", j->dir);
    for (int s = 0; s < j->nshards && rc == 0; s++) {
        shard_name(names[s], sizeof names[s], base, s, j->nshards);
        shards[s] = names[s];
    }
    if (rc == 0) rc = sm_hf_write_index(j->dir, base, shards, j->nshards, err);
    free(names);
    free((void *)shards);
    return rc;
}

static int write_tokenizer(const save_job *j, sm_error *err)
{
    char dst[PATH_CAP];
    if (!j->tokenizer) return 0;
    return join(dst, j->dir, j->tokenizer->name, err) ||
                   sm_atomic_write_file(dst, j->tokenizer->data ? j->tokenizer->data : "",
                                        j->tokenizer->size, err)
               ? -1
               : 0;
}

static int write_config(const save_job *j, sm_error *err)
{
    char path[PATH_CAP];
    return join(path, j->dir, "config.json", err) || sm_config_save_json(j->model, path, err)
               ? -1
               : 0;
}

/* state.json: the state table plus the run config object. */
static json_t *state_json(const save_job *j, const char *path, sm_error *err)
{
    sm_ckpt_state s = *j->st;
    s.step = j->step;
    snprintf(s.tokenizer, sizeof s.tokenizer, "%s", j->tokenizer ? j->tokenizer->name : "");
    json_t *rc = j->run_config ? sm_json_parse_object(j->run_config, "run config", err)
                               : json_null();
    json_t *root = rc ? sm_fields_emit(&state_table, &s) : NULL;
    if (rc && (!root || json_object_set(root, "run_config", rc))) {
        sm_fail(err, "%s: cannot encode (loss_ema not finite, or out of memory)", path);
        json_decref(root);
        root = NULL;
    }
    json_decref(rc);
    return root;
}

static int write_state(const save_job *j, sm_error *err)
{
    char path[PATH_CAP];
    if (join(path, j->dir, "state.json", err)) return -1;
    json_t *root = state_json(j, path, err);
    int rc = root ? sm_json_save(root, path, err) : -1;
    json_decref(root);
    return rc;
}

/* Adds {"size": N, "crc32c": "hex"} of file `name` to files. */
static int add_entry(const save_job *j, json_t *files, const char *name, sm_error *err)
{
    char path[PATH_CAP];
    int64_t size;
    uint32_t crc;
    manifest_entry m = {0};
    if (join(path, j->dir, name, err) || file_crc(path, &size, &crc, err)) return -1;
    m.size = size;
    snprintf(m.crc32c, sizeof m.crc32c, "%08x", (unsigned)crc);
    if (json_object_set_new(files, name, sm_fields_emit(&entry_table, &m)))
        return sm_fail(err, "%s: out of memory", path);
    return 0;
}

static int by_string(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every file the save wrote into the private folder (all but the manifest), sorted by name;
 * malloc'd names in a malloc'd list. */
static int list_written(const char *dir, char ***names, size_t *n, sm_error *err)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t cap = 0;
    int rc = 0;
    if (!d) return sm_fail(err, "%s: cannot open folder: %s", dir, strerror(errno));
    while (rc == 0 && (e = readdir(d))) {
        if (!plain_name(e->d_name) || strcmp(e->d_name, "manifest.json") == 0) continue;
        if (sm_grow(names, &cap, *n + 1, sizeof **names) || !((*names)[*n] = strdup(e->d_name)))
            rc = sm_fail(err, "%s: out of memory", dir);
        else
            (*n)++;
    }
    closedir(d);
    if (*n) qsort(*names, *n, sizeof **names, by_string);
    return rc;
}

static int write_manifest(const save_job *j, sm_error *err)
{
    char path[PATH_CAP], **names = NULL;
    size_t n = 0;
    manifest_head h = {j->step};
    json_t *root = sm_fields_emit(&manifest_table, &h), *files = json_object();
    int rc = join(path, j->dir, "manifest.json", err);
    if (rc == 0 && (!root || !files || json_object_set(root, "files", files)))
        rc = sm_fail(err, "%s: out of memory", path);
    if (rc == 0) rc = list_written(j->dir, &names, &n, err);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) rc = add_entry(j, files, names[i], err);
        free(names[i]);
    }
    free(names);
    if (rc == 0) rc = sm_json_save(root, path, err);
    json_decref(files);
    json_decref(root);
    return rc;
}

/* Renames the filled .tmp folder to run_dir/name, replacing a folder of that name. */
static int install(const char *run_dir, const char *tmp, const char *name, sm_error *err)
{
    char final[PATH_CAP];
    struct stat sb;
    if (join(final, run_dir, name, err)) return -1;
    if (lstat(final, &sb) == 0 && retire(run_dir, name, err)) return -1;
    if (rename(tmp, final) != 0)
        return sm_fail(err, "%s: cannot rename %s into place: %s", final, tmp, strerror(errno));
    return sync_dir(run_dir, err);
}

/* Removes the folders of later steps, then all but the `keep` newest. */
static int prune(const char *run_dir, int64_t step, int keep, sm_error *err)
{
    step_list l = {0};
    char name[40];
    int kept = 0, rc = list_steps(run_dir, &l, err);
    for (size_t i = 0; i < l.n && rc == 0; i++) {
        if (l.steps[i] <= step && kept++ < keep) continue;
        snprintf(name, sizeof name, STEP_FMT, (long long)l.steps[i]);
        rc = retire(run_dir, name, err);
    }
    free(l.steps);
    return rc;
}

int sm_ckpt_tmp_path(const char *run_dir, int64_t step, const char *job, char *tmp, size_t cap,
                     sm_error *err)
{
    char name[160];
    if (!run_dir || !*run_dir || step < 0 || !job || !plain_name(job) || strlen(job) > 64)
        return sm_fail(err, "checkpoint: needs a run folder, a step >= 0 and a job name");
    snprintf(name, sizeof name, ".tmp-" STEP_FMT "-%s", (long long)step, job);
    if (snprintf(tmp, cap, "%s/%s", run_dir, name) >= (int)cap)
        return sm_fail(err, "%s/%s: path longer than the caller's buffer", run_dir, name);
    return 0;
}

int sm_ckpt_save_begin(const char *run_dir, int64_t step, const char *job, char *tmp,
                       size_t cap, sm_error *err)
{
    if (sm_ckpt_tmp_path(run_dir, step, job, tmp, cap, err) || sm_mkdir_p(run_dir, NULL, err) ||
        clean_stale(run_dir, err))
        return -1;
    if (mkdir(tmp, 0755) != 0)
        return sm_fail(err, "%s: cannot create folder: %s", tmp, strerror(errno));
    return 0;
}

int sm_ckpt_save_shard(const char *tmp, int shard, int nshards, const sm_ckpt_tensor *weights,
                       int nweights, const sm_ckpt_tensor *optim, int noptim, sm_error *err)
{
    char file[128];
    const sm_ckpt_tensor *sets[] = {weights, optim};
    int counts[] = {nweights, noptim};
    if (nshards < 1 || shard < 0 || shard >= nshards)
        return sm_fail(err, "checkpoint: shard %d of %d", shard, nshards);
    for (size_t i = 0; i < SM_COUNT(tensor_sets); i++) {
        shard_name(file, sizeof file, tensor_sets[i], shard, nshards);
        if (check_tensors(sets[i], counts[i], tensor_sets[i], err) ||
            write_tensors(tmp, file, sets[i], counts[i], err))
            return -1;
    }
    return 0;
}

int sm_ckpt_save_finish(const char *run_dir, const char *tmp, int64_t step, int nshards,
                        const sm_config *model_cfg, const char *run_config_json,
                        const sm_ckpt_state *st, const sm_ckpt_file *tokenizer, int keep,
                        char *saved_path, size_t cap, sm_error *err)
{
    char name[40];
    save_job j = {tmp, step, nshards, model_cfg, run_config_json, st, tokenizer};
    if (!model_cfg || !st || keep < 1)
        return sm_fail(err, "checkpoint: needs a model config, a state and keep >= 1");
    int rc = check_tokenizer_name(&j, err);
    for (size_t i = 0; i < SM_COUNT(tensor_sets) && rc == 0 && nshards > 1; i++)
        rc = write_index(&j, tensor_sets[i], err);
    snprintf(name, sizeof name, STEP_FMT, (long long)step);
    if (rc || write_config(&j, err) || write_tokenizer(&j, err) || write_state(&j, err) ||
        write_manifest(&j, err) || install(run_dir, tmp, name, err))
        return -1;
    if (prune(run_dir, step, keep, err)) return -1;
    if (saved_path && snprintf(saved_path, cap, "%s/%s", run_dir, name) >= (int)cap)
        return sm_fail(err, "%s/%s: path longer than the caller's buffer", run_dir, name);
    return 0;
}

void sm_ckpt_save_abandon(const char *tmp)
{
    sm_remove_tree(tmp, NULL); /* best effort: the next save removes what remains */
}

int sm_ckpt_save(const char *run_dir, int64_t step, const sm_config *model_cfg,
                 const char *run_config_json, const sm_ckpt_tensor *weights, int nweights,
                 const sm_ckpt_tensor *optim, int noptim, const sm_ckpt_state *st,
                 const sm_ckpt_file *tokenizer, int keep, char *saved_path, size_t cap,
                 sm_error *err)
{
    char tmp[PATH_CAP], job[32];
    if (!run_dir || !*run_dir || !model_cfg || !st || step < 0 || keep < 1)
        return sm_fail(err, "checkpoint: needs a run folder, a model config, a state, a step "
                       ">= 0 and keep >= 1");
    if (check_tensors(weights, nweights, "weights", err) ||
        check_tensors(optim, noptim, "optimizer", err))
        return -1;
    snprintf(job, sizeof job, "%ld", (long)getpid());
    if (sm_ckpt_save_begin(run_dir, step, job, tmp, sizeof tmp, err)) return -1;
    if (sm_ckpt_save_shard(tmp, 0, 1, weights, nweights, optim, noptim, err) ||
        sm_ckpt_save_finish(run_dir, tmp, step, 1, model_cfg, run_config_json, st, tokenizer,
                            keep, saved_path, cap, err)) {
        sm_ckpt_save_abandon(tmp);
        return -1;
    }
    return 0;
}

/* ---- verifying ---- */

static int check_entry(const char *dir, const char *mpath, const char *name, const json_t *v,
                       sm_error *err)
{
    char prefix[PATH_CAP], path[PATH_CAP], hex[9];
    manifest_entry m;
    int64_t size;
    uint32_t crc;
    snprintf(prefix, sizeof prefix, "files.%s.", name);
    sm_scope s = {&entry_table, &m, prefix, mpath, 0};
    if (!plain_name(name))
        return sm_fail(err, "%s: field 'files': '%s' is not a plain file name", mpath, name);
    if (!json_is_object(v))
        return sm_fail(err, "%s: field 'files.%s': expected an object", mpath, name);
    if (sm_fields_parse(&s, v, err) || join(path, dir, name, err) ||
        file_crc(path, &size, &crc, err))
        return -1;
    if (size != m.size)
        return sm_fail(err, "%s: %lld bytes, but the manifest lists %lld (truncated or replaced)",
                       path, (long long)size, (long long)m.size);
    snprintf(hex, sizeof hex, "%08x", (unsigned)crc);
    if (strcmp(hex, m.crc32c) != 0)
        return sm_fail(err, "%s: CRC-32C mismatch: the manifest expects %s, the file has %s "
                            "(corrupted)", path, m.crc32c, hex);
    return 0;
}

static int check_manifest(const char *dir, const char *mpath, const json_t *root, sm_error *err)
{
    manifest_head h;
    sm_scope s = {&manifest_table, &h, "", mpath, 0};
    const char *name;
    json_t *v, *files = json_object_get(root, "files");
    if (sm_fields_parse(&s, root, err)) return -1;
    if (folder_step(dir) >= 0 && h.step != folder_step(dir))
        return sm_fail(err, "%s: field 'step' is %lld, but the folder is the checkpoint of step "
                            "%lld (inconsistent checkpoint)", mpath, (long long)h.step,
                       (long long)folder_step(dir));
    if (!json_is_object(files))
        return sm_fail(err, "%s: field 'files': expected an object", mpath);
    for (size_t i = 0; i < SM_COUNT(tensor_sets); i++) {
        char one[64], index[80];
        snprintf(one, sizeof one, "%s.safetensors", tensor_sets[i]);
        snprintf(index, sizeof index, "%s.index.json", one);
        if (!json_object_get(files, one) && !json_object_get(files, index))
            return sm_fail(err, "%s: field 'files': neither %s nor %s is listed", mpath, one,
                           index);
    }
    if (!json_object_get(files, "config.json") || !json_object_get(files, "state.json"))
        return sm_fail(err, "%s: field 'files': config.json or state.json is not listed", mpath);

    json_object_foreach(files, name, v) {
        if (check_entry(dir, mpath, name, v, err)) return -1;
    }
    return 0;
}

int sm_ckpt_verify(const char *ckpt_dir, sm_error *err)
{
    char mpath[PATH_CAP];
    if (join(mpath, ckpt_dir, "manifest.json", err)) return -1;
    json_t *root = sm_json_load_object(mpath, err);
    if (!root) return -1;
    int rc = check_manifest(ckpt_dir, mpath, root, err);
    json_decref(root);
    return rc;
}

/* Appends "; note" (or just note at the start) to buf, cut at its capacity. */
static void append_note(char *buf, size_t cap, const char *note)
{
    size_t n = strlen(buf);
    if (n && n + 2 < cap) {
        memcpy(buf + n, "; ", 3);
        n += 2;
    }
    size_t k = strlen(note) < cap - n - 1 ? strlen(note) : cap - n - 1;
    memcpy(buf + n, note, k);
    buf[n + k] = '\0';
}

int sm_ckpt_latest(const char *run_dir, char *path, size_t cap, sm_error *err)
{
    step_list l = {0};
    char dir[PATH_CAP], name[40], skipped[sizeof err->msg] = "";
    int found = 0;
    if (list_steps(run_dir, &l, err)) return -1;
    for (size_t i = 0; i < l.n && !found; i++) {
        sm_error e;
        snprintf(name, sizeof name, STEP_FMT, (long long)l.steps[i]);
        if (join(dir, run_dir, name, &e) == 0 && sm_ckpt_verify(dir, &e) == 0)
            found = 1;
        else
            append_note(skipped, sizeof skipped, e.msg);
    }
    free(l.steps);
    if (found && snprintf(path, cap, "%s", dir) >= (int)cap)
        return sm_fail(err, "%s: path longer than the caller's buffer", dir);
    if (found) {
        if (err) snprintf(err->msg, sizeof err->msg, "%s", skipped);
        return 0;
    }
    sm_fail(err, "%s: no complete checkpoint%s%s%s", run_dir, *skipped ? " (skipped: " : "",
            skipped, *skipped ? ")" : "");
    return 1;
}

/* ---- loading ---- */

static json_t *load_state_json(const char *ckpt_dir, char *path, sm_error *err)
{
    if (join(path, ckpt_dir, "state.json", err)) return NULL;
    return sm_json_load_object(path, err);
}

int sm_ckpt_load_state(const char *ckpt_dir, sm_ckpt_state *st, sm_error *err)
{
    char path[PATH_CAP];
    json_t *root = load_state_json(ckpt_dir, path, err);
    sm_scope s = {&state_table, st, "", path, 0};
    if (!root) return -1;
    memset(st, 0, sizeof *st);
    int rc = sm_fields_parse(&s, root, err);
    json_decref(root);
    int64_t named = folder_step(ckpt_dir);
    if (rc == 0 && named >= 0 && st->step != named)
        rc = sm_fail(err, "%s: field 'step' is %lld, but the folder is the checkpoint of step "
                          "%lld (inconsistent checkpoint)", path, (long long)st->step,
                     (long long)named);
    if (rc == 0 && st->tokenizer_vocab < 0)
        rc = sm_fail(err, "%s: field 'tokenizer_vocab': %d, expected >= 0", path,
                     st->tokenizer_vocab);
    return rc;
}

char *sm_ckpt_tokenizer_path(const char *ckpt_dir, const sm_ckpt_state *st, sm_error *err)
{
    if (!st->tokenizer[0]) {
        sm_fail(err, "%s: the checkpoint carries no tokenizer (state.json field 'tokenizer' is "
                     "null)", ckpt_dir);
        return NULL;
    }
    char *path = sm_aprintf("%s/%s", ckpt_dir, st->tokenizer);
    if (!path) sm_fail(err, "%s: out of memory", ckpt_dir);
    return path;
}

int sm_ckpt_check_tokenizer(const sm_ckpt_state *st, const char *tok_path, int vocab,
                            sm_error *err)
{
    if (!st->tokenizer_vocab || st->tokenizer_vocab == vocab) return 0;
    return sm_fail(err, "%s: %d tokens, but the run trained with a tokenizer of %d (state.json "
                        "tokenizer_vocab; inconsistent checkpoint)", tok_path, vocab,
                   st->tokenizer_vocab);
}

char *sm_ckpt_load_run_config(const char *ckpt_dir, sm_error *err)
{
    char path[PATH_CAP];
    json_t *root = load_state_json(ckpt_dir, path, err);
    json_t *rc = root ? json_object_get(root, "run_config") : NULL;
    char *text = json_is_object(rc) ? sm_json_text(rc, JSON_INDENT(2)) : NULL;
    if (root && !json_is_object(rc))
        sm_fail(err, "%s: field 'run_config': expected an object (no run config saved)", path);
    else if (root && !text)
        sm_fail(err, "%s: out of memory", path);
    json_decref(root);
    return text;
}

/* Loads tensor dst (present in f) in its dtype: read as float32 (whatever the file's dtype),
 * then for BF16 data rounded to nearest even (exact for a BF16 file). */
static int load_tensor(const sm_hf_model *f, const sm_ckpt_tensor *dst, sm_error *err)
{
    if (dst->dtype == SM_F32)
        return sm_hf_load_f32(f, dst->name, dst->ndim, dst->shape, (float *)dst->data, err);
    int64_t n = 1;
    for (int d = 0; d < dst->ndim; d++) n *= dst->shape[d];
    float *x = malloc((n ? n : 1) * sizeof *x);
    if (!x) return sm_fail(err, "%s: tensor '%s': out of memory", f->dir, dst->name);
    int rc = sm_hf_load_f32(f, dst->name, dst->ndim, dst->shape, x, err);
    uint16_t *h = (uint16_t *)dst->data;
    for (int64_t i = 0; rc == 0 && i < n; i++) h[i] = sm_f32_to_bf16(x[i]);
    free(x);
    return rc;
}

int sm_ckpt_load_tensors(const char *ckpt_dir, const char *set, const sm_ckpt_tensor *dst,
                         int n, sm_error *err)
{
    sm_hf_model f;
    if (!plain_name(set)) return sm_fail(err, "%s: '%s' is not a tensor set name", ckpt_dir, set);
    if (check_tensors(dst, n, set, err) || sm_hf_open_tensors(&f, ckpt_dir, set, err)) return -1;
    int rc = 0, absent = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (!sm_hf_has(&f, dst[i].name) && dst[i].optional)
            absent++;
        else if (!sm_hf_has(&f, dst[i].name))
            rc = sm_fail(err, "%s: no tensor '%s' in the checkpoint's %s tensors", ckpt_dir,
                         dst[i].name, set);
        else
            rc = load_tensor(&f, &dst[i], err);
    }
    sm_hf_close(&f);
    return rc ? rc : absent;
}

int sm_ckpt_tensor_dtype(const char *ckpt_dir, const char *set, const char *name, sm_dtype *dtype,
                         sm_error *err)
{
    sm_hf_model f;
    if (!plain_name(set)) return sm_fail(err, "%s: '%s' is not a tensor set name", ckpt_dir, set);
    if (sm_hf_open_tensors(&f, ckpt_dir, set, err)) return -1;
    const sm_st_tensor *t = NULL;
    for (int i = 0; !t && i < f.nfiles; i++) t = sm_st_find(&f.files[i], name);
    if (t) *dtype = t->dtype;
    sm_hf_close(&f);
    return t ? 0 : sm_fail(err, "%s: no tensor '%s' in the checkpoint's %s tensors", ckpt_dir,
                           name, set);
}
