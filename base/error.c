/* sm_error helpers: format a message into the caller's error slot. A message longer than the
 * slot keeps its start (the file) and its end (the cause), with " ... " in place of the middle. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <starmoe/error.h>

#include "base/aprintf.h"

#define ELISION " ... "

/* Copies msg (n bytes) into err->msg, cutting out its middle when it does not fit. */
static void keep_both_ends(sm_error *err, const char *msg, size_t n)
{
    size_t cap = sizeof err->msg - 1, gap = sizeof ELISION - 1;
    size_t head = (cap - gap) / 3, tail = cap - gap - head;   /* the cause gets two thirds */
    memcpy(err->msg, msg, head);
    memcpy(err->msg + head, ELISION, gap);
    memcpy(err->msg + head + gap, msg + n - tail, tail + 1);
}

int sm_fail(sm_error *err, const char *fmt, ...)
{
    if (!err) return -1;
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    char *full = sm_vaprintf(fmt, ap);   /* first, so that err->msg may be an argument */
    size_t n = full ? strlen(full) : 0;
    if (!full)
        vsnprintf(err->msg, sizeof err->msg, fmt, again);
    else if (n < sizeof err->msg)
        memcpy(err->msg, full, n + 1);
    else
        keep_both_ends(err, full, n);
    free(full);
    va_end(again);
    va_end(ap);
    return -1;
}

void sm_error_clear(sm_error *err)
{
    if (err) err->msg[0] = '\0';
}
