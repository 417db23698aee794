/* Outputs of the trace tools (trace/output.h): refused when they are an input, written
 * atomically. */
#include "trace/output.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* path with its folder resolved (the file itself need not exist); malloc'd, NULL when out of
 * memory. A folder that does not resolve leaves the name as given. */
static char *sm_resolved_name(const char *path)
{
    char *full = realpath(path, NULL);
    if (full) return full;
    char *d = strdup(path), *b = strdup(path), *dir = d ? realpath(dirname(d), NULL) : NULL;
    char *name = NULL;
    if (dir && b) {
        const char *base = basename(b);
        size_t n = strlen(dir) + strlen(base) + 2;
        if ((name = malloc(n))) snprintf(name, n, "%s/%s", dir, base);
    } else if (d && b) {
        name = strdup(path);
    }
    free(dir);
    free(d);
    free(b);
    return name;
}

/* 1 when a and b name the same file, 0 when not, -1 when out of memory. */
static int sm_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) == 0) return stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
                                   sa.st_ino == sb.st_ino;
    char *ra = sm_resolved_name(a), *rb = sm_resolved_name(b);
    int same = ra && rb ? !strcmp(ra, rb) : -1;
    free(ra);
    free(rb);
    return same;
}

int sm_trace_out_begin(sm_trace_out *o, const char *path, const char *const *inputs, int n,
                       sm_error *err)
{
    o->f = NULL;
    for (int i = 0; i < n; i++) {
        int same = sm_same_file(path, inputs[i]);
        if (same < 0) return sm_fail(err, "%s: out of memory", path);
        if (same)
            return sm_fail(err, "%s: the output is the input %s: writing it would destroy the "
                                "trace it is made from; choose another output file", path,
                           inputs[i]);
    }
    if (sm_atomic_begin(&o->file, path, err)) return -1;
    int fd = dup(o->file.fd);
    if (fd < 0 || !(o->f = fdopen(fd, "w"))) {
        sm_fail(err, "%s: cannot open %s for writing: %s", path, o->file.tmp, strerror(errno));
        if (fd >= 0) close(fd);
        sm_atomic_abort(&o->file);
        return -1;
    }
    return 0;
}

int sm_trace_out_end(sm_trace_out *o, int rc, sm_error *err)
{
    if ((ferror(o->f) | fclose(o->f)) && rc == 0)
        rc = sm_fail(err, "%s: cannot write: %s", o->file.path, strerror(errno));
    o->f = NULL;
    if (rc) {
        sm_atomic_abort(&o->file);
        return rc;
    }
    return sm_atomic_commit(&o->file, err);
}
