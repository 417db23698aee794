/* Strings formatted into memory of their exact size, so that no path or message is ever cut
 * to fit a fixed buffer. */
#ifndef STARMOE_BASE_APRINTF_H
#define STARMOE_BASE_APRINTF_H

#include <stdarg.h>

/* printf into a malloc'd string; NULL when out of memory. */
char *sm_aprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *sm_vaprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

#endif
