/* Merging Chrome traces of several ranks (sm_trace_merge): every input is streamed through the
 * scanner and its events are copied to the output with their processes renumbered (each
 * input's pids get fresh ones, in order of appearance, and its process names say which file
 * they came from) and their task and flow ids shifted past the previous inputs' ids, so that
 * dependencies stay within their rank. Times are kept: the traces of one run's ranks are all on
 * rank 0's clock (model/rank_trace.h), so the k-th input (its pid k) takes its place on one
 * timeline. The inputs' metadata is kept under "inputN.key" in otherData. The output may not be
 * one of the inputs and appears only once complete (trace/output.h). */
#include "trace/read.h"
#include "trace/output.h"

#include <string.h>
#include <starmoe/trace.h>

typedef struct sm_merge {
    FILE *out;
    const char *out_path;
    const char *path;            /* the input being copied */
    int64_t pids[64][2];         /* this input's pid -> merged pid */
    int npids, next_pid;
    int64_t id_base, id_max;     /* ids of this input are shifted by id_base */
    size_t nevents;
} sm_merge;

static int64_t sm_merged_pid(sm_merge *m, int64_t pid)
{
    for (int i = 0; i < m->npids; i++)
        if (m->pids[i][0] == pid) return m->pids[i][1];
    if (m->npids == 64) return -1;
    m->pids[m->npids][0] = pid;
    m->pids[m->npids][1] = m->next_pid;
    m->npids++;
    return m->next_pid++;
}

/* Shifts the integer at key of obj by the input's id base. */
static void sm_shift_id(sm_merge *m, json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v)) return;
    json_int_t id = json_integer_value(v);
    if (id > m->id_max) m->id_max = id;
    json_integer_set(v, id + m->id_base);
}

static void sm_rename_process(sm_merge *m, json_t *ev)
{
    json_t *args = json_object_get(ev, "args");
    const char *name = json_string_value(json_object_get(args, "name"));
    if (!name || strcmp(json_string_value(json_object_get(ev, "name")), "process_name")) return;
    char full[512];
    snprintf(full, sizeof full, "%s [%s]", name, m->path);
    json_object_set_new(args, "name", json_string(full));
}

static int sm_merge_event(void *ctx, const json_t *ev, const sm_trace_pos *pos, sm_error *err)
{
    sm_merge *m = ctx;
    if (!json_is_object(ev) || !json_is_string(json_object_get(ev, "name")))
        return sm_trace_event_fail(pos, ev, err, "an event must be an object with a \"name\"");
    json_t *e = json_deep_copy(ev);
    if (!e) return sm_trace_event_fail(pos, ev, err, "out of memory");
    json_t *pid = json_object_get(e, "pid"), *args = json_object_get(e, "args");
    if (json_is_integer(pid)) {
        int64_t p = sm_merged_pid(m, json_integer_value(pid));
        if (p < 0) {
            json_decref(e);
            return sm_trace_event_fail(pos, ev, err, "more than 64 processes in one input");
        }
        json_integer_set(pid, p);
    }
    sm_shift_id(m, e, "id");
    sm_shift_id(m, args, "id");
    size_t i;
    json_t *dep;
    json_array_foreach(json_object_get(args, "deps"), i, dep) {
        if (json_is_integer(dep)) json_integer_set(dep, json_integer_value(dep) + m->id_base);
    }
    sm_rename_process(m, e);
    fputs(m->nevents++ ? ",\n" : "\n", m->out);
    int rc = json_dumpf(e, m->out, JSON_COMPACT);
    json_decref(e);
    return rc ? sm_fail(err, "%s: cannot write the merged trace", m->out_path) : 0;
}

/* Adds input k's metadata to all as "inputK.key". */
static int sm_merge_meta(json_t *all, const json_t *meta, int k, const char *path)
{
    char key[256];
    const char *name;
    json_t *v;
    snprintf(key, sizeof key, "input%d", k);
    int rc = json_object_set_new(all, key, json_string(path));
    json_object_foreach((json_t *)meta, name, v) {
        snprintf(key, sizeof key, "input%d.%s", k, name);
        rc |= json_object_set(all, key, v);
    }
    return rc;
}

static int sm_merge_all(sm_merge *m, const char *const *paths, int n, json_t *all,
                        sm_error *err)
{
    for (int k = 0; k < n; k++) {
        json_t *meta = NULL;
        m->path = paths[k];
        m->npids = 0;
        m->id_max = -1;
        if (sm_trace_scan(paths[k], sm_merge_event, m, &meta, err)) return -1;
        int rc = sm_merge_meta(all, meta, k, paths[k]);
        json_decref(meta);
        if (rc) return sm_fail(err, "out of memory for the merged metadata");
        m->id_base += m->id_max + 1;
    }
    return 0;
}

int sm_trace_merge(const char *const *paths, int n, const char *out_path, sm_error *err)
{
    sm_merge m = {.out_path = out_path};
    sm_trace_out out;
    json_t *all = json_object();
    if (!all) return sm_fail(err, "out of memory");
    if (sm_trace_out_begin(&out, out_path, paths, n, err)) {
        json_decref(all);
        return -1;
    }
    m.out = out.f;
    fputs("{\"traceEvents\":[", m.out);
    int rc = sm_merge_all(&m, paths, n, all, err);
    if (rc == 0) {
        fputs("\n],\n\"otherData\":", m.out);
        rc = json_dumpf(all, m.out, JSON_COMPACT) ? sm_fail(err, "out of memory") : 0;
        fputs(",\n\"displayTimeUnit\":\"ms\"}\n", m.out);
    }
    rc = sm_trace_out_end(&out, rc, err);
    json_decref(all);
    return rc;
}
