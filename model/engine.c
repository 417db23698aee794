/* Starting and stopping the StarPU runtime for the engine: worker count, scheduling policy
 * by name through schedulers/registry.h (a set STARPU_SCHED would silently replace the
 * requested one, so it is refused), one BLAS thread per worker; the StarPU variables that StarPU
 * would abort on are checked first. Under mpirun with several ranks, StarPU-MPI starts StarPU
 * (model/parallel.c). */
#include <starmoe/engine.h>

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <starpu.h>
#include <unistd.h>
#include "build_config.h"
#include "model/parallel.h"
#include "schedulers/registry.h"
#include "schedulers/yielding.h"
#include "tasks/dense_kernels.h"
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
#include <cblas.h>
#endif

/* The policy to start with: --sched, else STARPU_SCHED, looked up after loading --sched-lib;
 * e->name NULL leaves StarPU's default. */
static int sm_engine_pick_sched(const sm_engine_opts *o, sm_sched_entry *e, sm_error *err)
{
    const char *env = getenv("STARPU_SCHED"), *want = o ? o->sched : NULL;
    const char *lib = o ? o->sched_lib : NULL;
    if (env && !*env) env = NULL;
    if (want && env && strcmp(env, want) != 0)
        return sm_fail(err, "STARPU_SCHED=%s is set and would silently replace --sched %s: "
                            "unset it", env, want);
    if (lib && sm_sched_load_lib(lib, err)) return -1;
    if (!want) want = env;
    if (!want && lib)
        return sm_fail(err, "--sched-lib %s: name the policy to use with --sched ('--sched "
                            "help' lists them)", lib);
    *e = (sm_sched_entry){0};
    return want ? sm_sched_find(want, e, err) : 0;
}

/* StarPU reads these as whole numbers and aborts the process on anything else (text, a
 * negative value): they are checked first so that a bad one is an error that names it. */
static const char *const sm_starpu_counts[] = {
    "STARPU_NCPU", "STARPU_NCPUS", "STARPU_NCUDA", "STARPU_NOPENCL", "STARPU_NMIC",
    "STARPU_NMPI_MS", "STARPU_CALIBRATE", "STARPU_SILENT", "STARPU_PREFETCH",
    "STARPU_WORKERS_NOBIND", "STARPU_LIMIT_CPU_MEM", "STARPU_LIMIT_MAX_SUBMITTED_TASKS",
    "STARPU_LIMIT_MIN_SUBMITTED_TASKS",
};

static int sm_engine_check_env(sm_error *err)
{
    for (size_t i = 0; i < sizeof sm_starpu_counts / sizeof *sm_starpu_counts; i++) {
        const char *v = getenv(sm_starpu_counts[i]);
        char *end;
        if (!v) continue;
        errno = 0;
        long n = strtol(v, &end, 10);
        if (end == v || *end || n < 0 || n > INT_MAX || errno)
            return sm_fail(err, "environment variable %s='%s': expected a whole number from 0 "
                           "to %d (StarPU would abort on it)", sm_starpu_counts[i], v, INT_MAX);
    }
    return 0;
}

int sm_engine_init(const sm_engine_opts *o, sm_error *err)
{
    struct starpu_conf conf;
    sm_sched_entry e;
    if (sm_engine_check_env(err) || sm_engine_pick_sched(o, &e, err)) return -1;
    /* kernels allocate sizeable temporaries per task: keep them on the heap instead of fresh
     * mappings, whose pages the kernel would zero again on every task */
    mallopt(M_MMAP_THRESHOLD, 512 << 20);
    mallopt(M_TRIM_THRESHOLD, 1024 << 20);
    starpu_conf_init(&conf);
    if (o && o->ncpus > 0) conf.ncpus = o->ncpus;
    int ranks = sm_parallel_launched();
    if (ranks > 1 && !(o && o->ncpus > 0)) {
        /* the host's cores shared by its ranks, one left to each rank's MPI thread */
        long cores = sysconf(_SC_NPROCESSORS_ONLN) / sm_parallel_local_ranks() - 1;
        conf.ncpus = cores > 1 ? (int)cores : 1;
    }
    conf.sched_policy_name = e.policy ? NULL : e.name;
    conf.sched_policy = e.policy;
    /* ranks sharing the host's cores: idle workers leave them to the others */
    if (ranks > 1 && sm_parallel_local_ranks() > 1 && sm_sched_policy_of(&e)) {
        conf.sched_policy = sm_sched_yielding(sm_sched_policy_of(&e));
        conf.sched_policy_name = NULL;
    }
    /* StarPU looks a set STARPU_SCHED up by name first; ours it would not find */
    if (conf.sched_policy) unsetenv("STARPU_SCHED");
    conf.ncuda = 0;
    conf.nopencl = 0;
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    openblas_set_num_threads(1);
#endif
    int rc = ranks > 1 ? sm_parallel_start(&conf) : starpu_init(&conf);
    if (rc == -ENODEV) return sm_fail(err, "StarPU found no worker to run on");
    if (rc != 0) return sm_fail(err, "starpu_init failed (%d)", rc);
    const char *want = e.policy ? e.policy->policy_name : e.name;
    if (want && strcmp(sm_engine_sched_name(), want) != 0) {
        char got[64];
        snprintf(got, sizeof got, "%s", sm_engine_sched_name());
        sm_engine_shutdown();
        return sm_fail(err, "scheduling policy '%s' did not start (StarPU chose '%s')", want,
                       got);
    }
    starpu_profiling_status_set(STARPU_PROFILING_ENABLE);
    return 0;
}

void sm_engine_shutdown(void)
{
    if (sm_parallel_launched() > 1)
        sm_parallel_stop();
    else
        starpu_shutdown();
}

double sm_engine_peak_flops(void)
{
    double best = 0;
    /* idle workers poll for work: paused, they leave the cores to this measurement */
    starpu_pause();
    for (int i = 0; i < 4; i++) {
        double g = sm_sgemm_gflops(384, 0.1);
        if (g > best) best = g;
    }
    starpu_resume();
    return best * 1e9 * starpu_worker_get_count();
}

const char *sm_engine_sched_name(void)
{
    struct starpu_sched_policy *p = starpu_sched_ctx_get_sched_policy(0);
    return p && p->policy_name ? p->policy_name : "?";
}

int sm_engine_sched_help(const sm_engine_opts *o, sm_error *err)
{
    if (o && o->sched_lib && sm_sched_load_lib(o->sched_lib, err)) return -1;
    sm_sched_print(stdout);
    return 0;
}
