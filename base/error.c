/* sm_error helpers: format a message into the caller's error slot. */
#include <stdarg.h>
#include <stdio.h>
#include <starmoe/error.h>

int sm_fail(sm_error *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void sm_error_clear(sm_error *err)
{
    if (err) err->msg[0] = '\0';
}
