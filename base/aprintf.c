/* Strings formatted into memory of their exact size (base/aprintf.h). */
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
