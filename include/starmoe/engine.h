/* The engine: StarPU started with starmoe's workers and a scheduling policy (starmoe's ordered
 * one, a plugin's or a StarPU built-in), and what it reports about itself. Launched by mpirun
 * with several ranks, it starts StarPU-MPI instead, and every rank checks the launch layout
 * with the others before any work. */
#ifndef STARMOE_ENGINE_H
#define STARMOE_ENGINE_H

#include <starmoe/error.h>
#include <starmoe/export.h>

typedef struct sm_engine_opts {
    int ncpus;                   /* CPU workers (0: StarPU's default; under mpirun the cores
                                    shared by the ranks of this host, less one for the MPI
                                    thread, at least 1) */
    const char *sched;           /* policy name: starmoe's (ordered), a plugin's or a StarPU
                                    built-in (NULL: STARPU_SCHED, else StarPU's default, lws) */
    const char *sched_lib;       /* plugin library of policies to load first (NULL: none);
                                    docs/writing-a-policy.md */
} sm_engine_opts;

/* Starts StarPU with the policy named by o->sched (a set STARPU_SCHED naming another one is
 * refused: it would silently win). Under mpirun with more than one rank (OpenMPI's
 * OMPI_COMM_WORLD_SIZE or PMI_SIZE in the environment) it starts StarPU-MPI, which initialises
 * MPI; with one rank, or without mpirun, MPI is never touched. */
SM_API int sm_engine_init(const sm_engine_opts *o, sm_error *err);
SM_API void sm_engine_shutdown(void);
/* The engine's peak in FLOP/s: the best of a few one-thread SGEMM timings (n = 384), taken
 * with the workers paused, times the number of workers (the MFU denominator). */
SM_API double sm_engine_peak_flops(void);
/* Name of the scheduling policy actually in force. */
SM_API const char *sm_engine_sched_name(void);
/* Prints every policy o->sched accepts, one line each (loads o->sched_lib first). */
SM_API int sm_engine_sched_help(const sm_engine_opts *o, sm_error *err);

/* This process's rank and the number of ranks mpirun launched (0 and 1 without mpirun); known
 * from the environment before the engine starts, so that messages can name the rank. */
SM_API int sm_engine_rank(void);
SM_API int sm_engine_size(void);

/* The launch layout a command asks for and what it must agree with (zero fields: one rank,
 * 120 s). */
typedef struct sm_launch {
    int ep, dp;                  /* expert- and data-parallel ranks (parallel.ep, parallel.dp) */
    int pp;                      /* pipeline ranks (parallel.pp; 0 is 1) */
    double timeout_s;            /* how long to wait for the other ranks (parallel.timeout_s) */
    int n_routed_experts;        /* the model's (model.n_routed_experts) */
    int batch;                   /* global batch in sequences, and the field that set it */
    const char *batch_field;     /* ("train.batch_size", "--batch") */
    const char *identity;        /* text every rank must share: the effective run config */
} sm_launch;

/* Checks the layout on every rank, before any work: the ranks launched must number pp * ep *
 * dp, ep must divide the routed experts, and the batch must split over the ep * dp ranks (each
 * runs its own sequences; the pp pipeline ranks of a group share theirs). MPI rank = pipeline
 * rank * ep * dp + data-parallel group * ep + expert-parallel index. With several ranks (the
 * engine started) the ranks then exchange a status and a hash of the library's build and of
 * l->identity, within l->timeout_s: a rank whose hash differs from rank 0's, or that failed
 * its checks, makes every rank fail, naming it. Returns 0 when all ranks agree. */
SM_API int sm_engine_check_launch(const sm_launch *l, sm_error *err);

#endif
