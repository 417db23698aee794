/* Strings formatted into memory of their exact size, or into a fixed buffer only when they fit:
 * no path or message is ever cut to fit. */
#ifndef STARMOE_BASE_APRINTF_H
#define STARMOE_BASE_APRINTF_H

#include <stdarg.h>
#include <stddef.h>
#include <starmoe/error.h>

/* printf into a malloc'd string; NULL when out of memory. */
char *sm_aprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *sm_vaprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* printf of a path into a fixed buffer of cap bytes; a path that does not fit is refused, never
 * cut: -1 with "path too long (N bytes, at most cap - 1): PATH". */
int sm_format_path(char *buf, size_t cap, sm_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
