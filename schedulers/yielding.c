/* The yielding copy of a scheduling policy (yielding.h). */
#include "schedulers/yielding.h"

#include <sched.h>

static struct starpu_sched_policy sm_yielding;
static struct starpu_task *(*sm_base_pop)(unsigned sched_ctx_id);

static struct starpu_task *sm_yielding_pop(unsigned sched_ctx_id)
{
    struct starpu_task *t = sm_base_pop(sched_ctx_id);
    if (!t) sched_yield();
    return t;
}

struct starpu_sched_policy *sm_sched_yielding(const struct starpu_sched_policy *base)
{
    sm_yielding = *base;
    sm_base_pop = base->pop_task;
    sm_yielding.pop_task = sm_yielding_pop;
    return &sm_yielding;
}
