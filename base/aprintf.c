/* Strings formatted into memory of their exact size, paths into buffers they fit
 * (base/aprintf.h). */
#include "base/aprintf.h"

#include <stdio.h>
#include <stdlib.h>

char *sm_vaprintf(const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, again);
    va_end(again);
    char *s = n < 0 ? NULL : malloc((size_t)n + 1);
    if (s) vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

char *sm_aprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = sm_vaprintf(fmt, ap);
    va_end(ap);
    return s;
}

int sm_format_path(char *buf, size_t cap, sm_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < cap) return 0;
    va_start(ap, fmt);
    char *full = sm_vaprintf(fmt, ap);
    va_end(ap);
    sm_fail(err, "path too long (%d bytes, at most %zu): %s", n, cap - 1, full ? full : buf);
    free(full);
    buf[0] = '\0';
    return -1;
}
