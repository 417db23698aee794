/* Scheduling policies by name, for --sched: starmoe's own (schedulers/ordered.h), those loaded
 * from plugin libraries (--sched-lib, docs/writing-a-policy.md) and StarPU's built-ins. */
#ifndef STARMOE_REGISTRY_H
#define STARMOE_REGISTRY_H

#include <starpu.h>
#include <stdio.h>
#include <starmoe/error.h>

typedef enum sm_sched_origin { SM_SCHED_STARMOE, SM_SCHED_PLUGIN, SM_SCHED_STARPU } sm_sched_origin;

typedef struct sm_sched_entry {
    const char *name;
    const char *description;
    sm_sched_origin origin;
    const char *file;                       /* the plugin library, NULL otherwise */
    struct starpu_sched_policy *policy;     /* NULL for a built-in: StarPU selects it by name */
} sm_sched_entry;

/* Loads a policy library the way StarPU 1.4 loads STARPU_SCHED_LIB: dlopen()s the file (a name
 * without '/' is taken in the current directory), which must define
 *   struct starpu_sched_policy *starpu_get_sched_lib_policy(const char *name);
 * and may define
 *   struct starpu_sched_policy **starpu_get_sched_lib_policies(void);  (NULL-terminated)
 * whose policies are registered at once (the others when asked for by name). Loading the same
 * file again does nothing. Errors name the file: it cannot be loaded, lacks the function, or a
 * policy lacks a name, init_sched, push_task or pop_task, or reuses a known name. A loaded
 * library stays loaded for the life of the process. */
int sm_sched_load_lib(const char *path, sm_error *err);

/* Finds a policy by name: starmoe's, then the plugins', then StarPU's built-ins. */
int sm_sched_find(const char *name, sm_sched_entry *out, sm_error *err);

/* The policy structure of an entry (a built-in's from StarPU's list); with no name, StarPU's
 * default policy, the one it starts without being told (lws). NULL: not known. */
struct starpu_sched_policy *sm_sched_policy_of(const sm_sched_entry *e);

/* Lists every known policy, one line each, grouped by origin. */
void sm_sched_print(FILE *f);

#endif
