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
#include "io/config_json.h"
#include "io/safetensors.h"

#define PATH_CAP 4096
#define STEP_FMT "step-%06lld"

static const char *const core_files[] = {"model.safetensors", "optimizer.safetensors",
                                         "config.json", "state.json"};

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

/* Everything one save needs. */
typedef struct save_job {
    const char *dir;             /* the .tmp folder being filled */
    int64_t step;
    const sm_config *model;
    const char *run_config;
    const sm_ckpt_tensor *weights, *optim;
    int nweights, noptim;
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
    }
    return 0;
}

/* The tokenizer's file name: not hidden, and not one of the checkpoint's own files. */
static int check_tokenizer_name(const save_job *j, sm_error *err)
{
    const char *name = j->tokenizer ? j->tokenizer->name : NULL;
    if (!j->tokenizer) return 0;
    if (!name || !plain_name(name) || strlen(name) >= sizeof ((sm_ckpt_state *)0)->tokenizer ||
        strcmp(name, "manifest.json") == 0)
        return sm_fail(err, "checkpoint: unusable tokenizer file name '%s'", name ? name : "");
    for (size_t i = 0; i < SM_COUNT(core_files); i++)
        if (strcmp(name, core_files[i]) == 0)
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
        rc = sm_st_writer_add(w, t[i].name, SM_F32, t[i].ndim, t[i].shape, t[i].data, err);
    if (rc) in_file(path, err);
    if (rc == 0) rc = sm_st_writer_write(w, path, err);
    sm_st_writer_free(w);
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

static int write_manifest(const save_job *j, sm_error *err)
{
    char path[PATH_CAP];
    manifest_head h = {j->step};
    json_t *root = sm_fields_emit(&manifest_table, &h), *files = json_object();
    int rc = join(path, j->dir, "manifest.json", err);
    if (rc == 0 && (!root || !files || json_object_set(root, "files", files)))
        rc = sm_fail(err, "%s: out of memory", path);
    for (size_t i = 0; i < SM_COUNT(core_files) && rc == 0; i++)
        rc = add_entry(j, files, core_files[i], err);
    if (rc == 0 && j->tokenizer) rc = add_entry(j, files, j->tokenizer->name, err);
    if (rc == 0) rc = sm_json_save(root, path, err);
    json_decref(files);
    json_decref(root);
    return rc;
}

static int write_contents(save_job *j, sm_error *err)
{
    if (check_tokenizer_name(j, err) ||
        write_tensors(j->dir, "model.safetensors", j->weights, j->nweights, err) ||
        write_tensors(j->dir, "optimizer.safetensors", j->optim, j->noptim, err) ||
        write_config(j, err) || write_tokenizer(j, err) || write_state(j, err) ||
        write_manifest(j, err))
        return -1;
    return 0;
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

int sm_ckpt_save(const char *run_dir, int64_t step, const sm_config *model_cfg,
                 const char *run_config_json, const sm_ckpt_tensor *weights, int nweights,
                 const sm_ckpt_tensor *optim, int noptim, const sm_ckpt_state *st,
                 const sm_ckpt_file *tokenizer, int keep, char *saved_path, size_t cap,
                 sm_error *err)
{
    char name[40], tmpname[80], tmp[PATH_CAP];
    save_job j = {tmp, step, model_cfg, run_config_json, weights, optim, nweights, noptim, st,
                  tokenizer};
    if (!run_dir || !*run_dir || !model_cfg || !st || step < 0 || keep < 1)
        return sm_fail(err, "checkpoint: needs a run folder, a model config, a state, a step "
                       ">= 0 and keep >= 1");
    if (check_tensors(weights, nweights, "weights", err) ||
        check_tensors(optim, noptim, "optimizer", err) || sm_mkdir_p(run_dir, NULL, err) ||
        clean_stale(run_dir, err))
        return -1;
    snprintf(name, sizeof name, STEP_FMT, (long long)step);
    snprintf(tmpname, sizeof tmpname, ".tmp-%s-%ld", name, (long)getpid());
    if (join(tmp, run_dir, tmpname, err)) return -1;
    if (mkdir(tmp, 0755) != 0)
        return sm_fail(err, "%s: cannot create folder: %s", tmp, strerror(errno));
    if (write_contents(&j, err) || install(run_dir, tmp, name, err)) {
        sm_remove_tree(tmp, NULL); /* best effort: the next save removes what remains */
        return -1;
    }
    if (prune(run_dir, step, keep, err)) return -1;
    if (saved_path && snprintf(saved_path, cap, "%s/%s", run_dir, name) >= (int)cap)
        return sm_fail(err, "%s/%s: path longer than the caller's buffer", run_dir, name);
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
    for (size_t i = 0; i < SM_COUNT(core_files); i++)
        if (!json_object_get(files, core_files[i]))
            return sm_fail(err, "%s: field 'files': %s is not listed", mpath, core_files[i]);
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

int sm_ckpt_load_tensors(const char *ckpt_dir, const char *file, const sm_ckpt_tensor *dst,
                         int n, sm_error *err)
{
    char path[PATH_CAP];
    sm_st_file f;
    if (!plain_name(file)) return sm_fail(err, "%s: '%s' is not a file name", ckpt_dir, file);
    if (check_tensors(dst, n, file, err) || join(path, ckpt_dir, file, err) ||
        sm_st_open(&f, path, err))
        return -1;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++)
        rc = sm_st_read_f32(&f, dst[i].name, dst[i].ndim, dst[i].shape, (float *)dst[i].data,
                            err);
    sm_st_close(&f);
    return rc;
}
