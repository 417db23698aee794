/* The engine: StarPU started with starmoe's workers and a scheduling policy (starmoe's ordered
 * one, a plugin's or a StarPU built-in), and what it reports about itself. */
#ifndef STARMOE_ENGINE_H
#define STARMOE_ENGINE_H

#include <starmoe/error.h>
#include <starmoe/export.h>

typedef struct sm_engine_opts {
    int ncpus;                   /* CPU workers (0: StarPU's default) */
    const char *sched;           /* policy name: starmoe's (ordered), a plugin's or a StarPU
                                    built-in (NULL: STARPU_SCHED, else StarPU's default, lws) */
    const char *sched_lib;       /* plugin library of policies to load first (NULL: none);
                                    docs/writing-a-policy.md */
} sm_engine_opts;

/* Starts StarPU with the policy named by o->sched (a set STARPU_SCHED naming another one is
 * refused: it would silently win). */
SM_API int sm_engine_init(const sm_engine_opts *o, sm_error *err);
SM_API void sm_engine_shutdown(void);
/* The engine's peak in FLOP/s: the best of a few one-thread SGEMM timings (n = 384), taken
 * with the workers paused, times the number of workers (the MFU denominator). */
SM_API double sm_engine_peak_flops(void);
/* Name of the scheduling policy actually in force. */
SM_API const char *sm_engine_sched_name(void);
/* Prints every policy o->sched accepts, one line each (loads o->sched_lib first). */
SM_API int sm_engine_sched_help(const sm_engine_opts *o, sm_error *err);

#endif
