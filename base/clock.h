/* Time for measurements: monotonic seconds, unaffected by changes of the wall clock. */
#ifndef STARMOE_BASE_CLOCK_H
#define STARMOE_BASE_CLOCK_H

/* Seconds on the monotonic clock (an arbitrary origin: subtract two readings). */
double sm_now(void);

#endif
