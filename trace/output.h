/* The files the trace tools make from other traces (the HTML report, the merged trace): an
 * output that is one of the inputs is refused before anything is written, and the output goes
 * to a temporary file renamed into place at the end (base/atomic_file.h), so a failed command
 * leaves no partial file and an existing one untouched. */
#ifndef STARMOE_TRACE_OUTPUT_H
#define STARMOE_TRACE_OUTPUT_H

#include <stdio.h>
#include <starmoe/error.h>
#include "base/atomic_file.h"

typedef struct sm_trace_out {
    sm_atomic_file file;
    FILE *f;                     /* the stream to write to */
} sm_trace_out;

/* Fails when path is one of the n inputs (the same file: same device and inode when path
 * exists, the same resolved name otherwise); else opens its temporary file. */
int sm_trace_out_begin(sm_trace_out *o, const char *path, const char *const *inputs, int n,
                       sm_error *err);
/* Puts the output in place; on a write error (or rc != 0) removes it instead. Returns rc, or
 * -1 when writing failed. */
int sm_trace_out_end(sm_trace_out *o, int rc, sm_error *err);

#endif
