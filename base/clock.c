/* Monotonic time (base/clock.h). */
#include "base/clock.h"

#include <time.h>

double sm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
