/* Error reporting for the whole library: every failure fills an sm_error with a message that
 * names the file, the field and what was expected; the library never calls exit(). */
#ifndef STARMOE_ERROR_H
#define STARMOE_ERROR_H

#include <stddef.h>
#include <starmoe/export.h>

typedef struct sm_error {
    char msg[1024];
} sm_error;

/* Formats msg into err (if err is not NULL) and returns -1, so callers can write
 * `return sm_fail(err, "...", ...);`. */
SM_API int sm_fail(sm_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clears err. */
SM_API void sm_error_clear(sm_error *err);

#endif
