/* Starting and stopping the StarPU runtime for the engine: worker count, scheduling policy
 * (a set STARPU_SCHED would silently replace the requested one, so it is refused), one BLAS
 * thread per worker. */
#include <starmoe/model.h>

#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <starpu.h>
#include "config.h"
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
#include <cblas.h>
#endif

int sm_engine_init(const sm_engine_opts *o, sm_error *err)
{
    struct starpu_conf conf;
    const char *env = getenv("STARPU_SCHED");
    if (o && o->sched && env && *env && strcmp(env, o->sched) != 0)
        return sm_fail(err, "STARPU_SCHED=%s is set and would silently replace --sched %s: "
                            "unset it", env, o->sched);
    /* kernels allocate sizeable temporaries per task: keep them on the heap instead of fresh
     * mappings, whose pages the kernel would zero again on every task */
    mallopt(M_MMAP_THRESHOLD, 512 << 20);
    mallopt(M_TRIM_THRESHOLD, 1024 << 20);
    starpu_conf_init(&conf);
    if (o && o->ncpus > 0) conf.ncpus = o->ncpus;
    if (o && o->sched) conf.sched_policy_name = o->sched;
    conf.ncuda = 0;
    conf.nopencl = 0;
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    openblas_set_num_threads(1);
#endif
    int rc = starpu_init(&conf);
    if (rc == -ENODEV) return sm_fail(err, "StarPU found no worker to run on");
    if (rc != 0) return sm_fail(err, "starpu_init failed (%d)", rc);
    if (o && o->sched && strcmp(sm_engine_sched_name(), o->sched) != 0) {
        char got[64];
        snprintf(got, sizeof got, "%s", sm_engine_sched_name());
        starpu_shutdown();
        return sm_fail(err, "scheduling policy '%s' is unknown (StarPU chose '%s'); "
                            "STARPU_SCHED=help lists them", o->sched, got);
    }
    starpu_profiling_status_set(STARPU_PROFILING_ENABLE);
    return 0;
}

void sm_engine_shutdown(void) { starpu_shutdown(); }

const char *sm_engine_sched_name(void)
{
    struct starpu_sched_policy *p = starpu_sched_ctx_get_sched_policy(0);
    return p && p->policy_name ? p->policy_name : "?";
}
