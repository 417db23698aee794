/* The fields in which two run configs differ, named "section.key" with both values as JSON
 * text: what a resumed run reports when its command asks for other settings than the run's. */
#ifndef STARMOE_RUN_CONFIG_DIFF_H
#define STARMOE_RUN_CONFIG_DIFF_H

#include <starmoe/error.h>
#include "io/run_config.h"

typedef struct sm_config_change {
    char *field;                 /* "train.lr", "model.hidden_size", ... */
    char *before, *after;        /* the values as compact JSON text ("absent" when missing) */
} sm_config_change;

/* Every field whose value differs between before and after, in section order then key order;
 * *changes is malloc'd (NULL when none): free it with sm_config_changes_free. Returns the
 * count, or -1 with err set (a config that does not validate, out of memory). */
int sm_run_config_diff(const sm_run_config *before, const sm_run_config *after,
                       sm_config_change **changes, sm_error *err);
void sm_config_changes_free(sm_config_change *changes, int n);

#endif
