/* A minimal TAP producer for the test programs: each check prints "ok N - name" or
 * "not ok N - name" (with a diagnostic), and tap_done() prints the plan and returns the exit
 * status. automake's tap-driver counts every line as one test. */
#ifndef STARMOE_TAP_H
#define STARMOE_TAP_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

static int tap_n, tap_failed;

static inline int tap_ok(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int tap_ok(int cond, const char *fmt, ...)
{
    va_list ap;
    tap_n++;
    if (!cond) tap_failed++;
    printf("%sok %d - ", cond ? "" : "not ", tap_n);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    return cond;
}

/* Prints a diagnostic line (ignored by the driver). */
#define tap_diag(...) (printf("# " __VA_ARGS__), printf("\n"))

/* ok when |got - want| <= tol, with both values in the message. */
#define tap_close(got, want, tol, name) \
    tap_ok(fabs((double)(got) - (double)(want)) <= (tol), "%s (got %.9g want %.9g tol %.2g)", \
           (name), (double)(got), (double)(want), (double)(tol))

static inline int tap_done(void)
{
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}

#endif
