/* The policy registry: a fixed table of starmoe's policies, the policies registered from loaded
 * plugin libraries (the two symbols of StarPU 1.4's STARPU_SCHED_LIB interface), and StarPU's
 * predefined list (starpu_sched_get_predefined_policies). Used from the main thread before
 * starpu_init. */
#include "schedulers/registry.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/file.h"
#include "schedulers/ordered.h"

enum { SM_MAX_LIBS = 16, SM_MAX_PLUGIN_POLICIES = 64 };

typedef struct starpu_sched_policy *(*sm_lib_get_fn)(const char *name);
typedef struct starpu_sched_policy **(*sm_lib_list_fn)(void);

typedef struct sm_sched_lib {
    void *handle;
    char *path;
    sm_lib_get_fn get;           /* starpu_get_sched_lib_policy */
    int lists;                   /* defines starpu_get_sched_lib_policies */
} sm_sched_lib;

/* starmoe's own: the ordered family (ordered, gpipe, 1f1b, zbh1, dualpipe, dualpipev) */
static struct starpu_sched_policy *const *const sm_own = sm_ordered_policies;
static sm_sched_lib sm_libs[SM_MAX_LIBS];
static int sm_nlibs;
static sm_sched_entry sm_plugins[SM_MAX_PLUGIN_POLICIES];
static int sm_nplugins;

static sm_sched_entry sm_entry(struct starpu_sched_policy *p, sm_sched_origin origin,
                               const char *file)
{
    return (sm_sched_entry){p->policy_name, p->policy_description, origin, file,
                            origin == SM_SCHED_STARPU ? NULL : p};
}

/* ---- lookups: 1 found, 0 not ---- */

static int sm_find_own(const char *name, sm_sched_entry *out)
{
    for (int i = 0; i < sm_ordered_npolicies; i++)
        if (!strcmp(sm_own[i]->policy_name, name)) {
            *out = sm_entry(sm_own[i], SM_SCHED_STARMOE, NULL);
            return 1;
        }
    return 0;
}

static int sm_find_plugin(const char *name, sm_sched_entry *out)
{
    for (int i = 0; i < sm_nplugins; i++)
        if (!strcmp(sm_plugins[i].name, name)) {
            *out = sm_plugins[i];
            return 1;
        }
    return 0;
}

struct starpu_sched_policy *sm_sched_policy_of(const sm_sched_entry *e)
{
    const char *name = e->name ? e->name : "lws";
    if (e->policy) return e->policy;
    for (struct starpu_sched_policy **p = starpu_sched_get_predefined_policies(); *p; p++)
        if ((*p)->policy_name && !strcmp((*p)->policy_name, name)) return *p;
    return NULL;
}

static int sm_find_builtin(const char *name, sm_sched_entry *out)
{
    struct starpu_sched_policy *p = sm_sched_policy_of(&(sm_sched_entry){.name = name});
    if (p) *out = sm_entry(p, SM_SCHED_STARPU, NULL);
    return p != NULL;
}

static int sm_find_known(const char *name, sm_sched_entry *out)
{
    return sm_find_own(name, out) || sm_find_plugin(name, out) || sm_find_builtin(name, out);
}

/* ---- plugin policies ---- */

/* Registers one policy of `file` after checking what StarPU would call unconditionally. */
static int sm_register(const char *file, struct starpu_sched_policy *p, sm_error *err)
{
    static const char *origins[] = {"starmoe's own", "", "a StarPU built-in"};
    const char *name = p->policy_name;
    sm_sched_entry known;
    if (!name || !*name) return sm_fail(err, "--sched-lib %s: a policy has no policy_name", file);
    const char *missing = !p->init_sched ? "init_sched" : !p->push_task ? "push_task"
                          : !p->pop_task ? "pop_task" : NULL;
    if (missing)
        return sm_fail(err, "--sched-lib %s: policy '%s' has no %s method", file, name, missing);
    if (sm_find_known(name, &known))
        return sm_fail(err, "--sched-lib %s: policy '%s' is already defined (%s%s)", file, name,
                       known.file ? "by " : origins[known.origin], known.file ? known.file : "");
    if (sm_nplugins == SM_MAX_PLUGIN_POLICIES)
        return sm_fail(err, "--sched-lib %s: more than %d plugin policies", file,
                       SM_MAX_PLUGIN_POLICIES);
    sm_plugins[sm_nplugins++] = sm_entry(p, SM_SCHED_PLUGIN, file);
    return 0;
}

/* Registers the NULL-terminated list of starpu_get_sched_lib_policies(), all or none. */
static int sm_register_list(const char *file, struct starpu_sched_policy **list, sm_error *err)
{
    int before = sm_nplugins;
    for (int i = 0; list && list[i]; i++) {
        if (i == SM_MAX_PLUGIN_POLICIES) {
            sm_nplugins = before;
            return sm_fail(err, "--sched-lib %s: starpu_get_sched_lib_policies() lists more "
                                "than %d policies (is the array NULL-terminated?)", file, i);
        }
        if (sm_register(file, list[i], err)) {
            sm_nplugins = before;
            return -1;
        }
    }
    return 0;
}

static int sm_lib_add(const char *path, void *handle, sm_error *err)
{
    sm_lib_get_fn get = (sm_lib_get_fn)dlsym(handle, "starpu_get_sched_lib_policy");
    sm_lib_list_fn list = (sm_lib_list_fn)dlsym(handle, "starpu_get_sched_lib_policies");
    if (!get)
        return sm_fail(err, "--sched-lib %s: defines no starpu_get_sched_lib_policy(), so it is "
                            "not a scheduling policy library (see docs/writing-a-policy.md)", path);
    if (sm_nlibs == SM_MAX_LIBS)
        return sm_fail(err, "--sched-lib %s: more than %d policy libraries", path, SM_MAX_LIBS);
    char *copy = strdup(path);
    if (!copy) return sm_fail(err, "--sched-lib %s: out of memory", path);
    if (list && sm_register_list(copy, list(), err)) {
        free(copy);
        return -1;
    }
    sm_libs[sm_nlibs++] = (sm_sched_lib){handle, copy, get, list != NULL};
    return 0;
}

int sm_sched_load_lib(const char *path, sm_error *err)
{
    char file[4096];
    if (snprintf(file, sizeof file, "%s%s", strchr(path, '/') ? "" : "./", path) >=
        (int)sizeof file)
        return sm_fail(err, "--sched-lib %.64s...: path too long", path);
    int fd = sm_file_open_read(file, NULL, err);   /* dlopen would block on a FIFO */
    if (fd < 0) return sm_fail(err, "--sched-lib %s", err->msg);
    close(fd);
    void *handle = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (!handle) return sm_fail(err, "--sched-lib %s: cannot load it: %s", path, dlerror());
    for (int i = 0; i < sm_nlibs; i++)
        if (sm_libs[i].handle == handle) {
            dlclose(handle); /* already loaded: drop the extra reference */
            return 0;
        }
    int rc = sm_lib_add(path, handle, err);
    if (rc) dlclose(handle);
    return rc;
}

/* Asks each loaded library's starpu_get_sched_lib_policy(name): 1 found, 0 not, -1 broken. */
static int sm_ask_libs(const char *name, sm_sched_entry *out, sm_error *err)
{
    for (int i = 0; i < sm_nlibs; i++) {
        struct starpu_sched_policy *p = sm_libs[i].get(name);
        if (!p) continue;
        if (sm_register(sm_libs[i].path, p, err)) return -1;
        *out = sm_plugins[sm_nplugins - 1];
        return 1;
    }
    return 0;
}

int sm_sched_find(const char *name, sm_sched_entry *out, sm_error *err)
{
    if (sm_find_own(name, out) || sm_find_plugin(name, out)) return 0;
    int asked = sm_ask_libs(name, out, err);
    if (asked) return asked > 0 ? 0 : -1;
    if (sm_find_builtin(name, out)) return 0;
    return sm_fail(err, "scheduling policy '%s' is unknown ('--sched help' lists them)", name);
}

/* ---- listing ---- */

static void sm_print_policy(FILE *f, const char *name, const char *description)
{
    fprintf(f, "  %-32s %s\n", name, description ? description : "");
}

void sm_sched_print(FILE *f)
{
    int major, minor, release;
    fprintf(f, "scheduling policies (--sched NAME)\nstarmoe:\n");
    for (int i = 0; i < sm_ordered_npolicies; i++)
        sm_print_policy(f, sm_own[i]->policy_name, sm_own[i]->policy_description);
    for (int l = 0; l < sm_nlibs; l++) {
        fprintf(f, "plugin %s:\n", sm_libs[l].path);
        for (int i = 0; i < sm_nplugins; i++)
            if (sm_plugins[i].file == sm_libs[l].path)
                sm_print_policy(f, sm_plugins[i].name, sm_plugins[i].description);
        if (!sm_libs[l].lists)
            fprintf(f, "  (it defines no starpu_get_sched_lib_policies(): name a policy with "
                       "--sched)\n");
    }
    starpu_get_version(&major, &minor, &release);
    fprintf(f, "StarPU %d.%d.%d built-ins:\n", major, minor, release);
    for (struct starpu_sched_policy **p = starpu_sched_get_predefined_policies(); *p; p++)
        sm_print_policy(f, (*p)->policy_name, (*p)->policy_description);
}
