/* Per-rank slot costs from measured slot times: a rank runs micro x chunks / directions chunk
 * ops of each kind per step (M, or 2M for DualPipeV). */
#include "schedulers/measured.h"

#include <stdlib.h>

int sm_measured_costs_new(const sm_schedule_measured *m, sm_measured_costs *out, sm_error *err)
{
    *out = (sm_measured_costs){0};
    sm_error why = {{0}};
    if (sm_schedule_policy_parse(m->policy, &out->policy, &why))
        return sm_fail(err, "%s: its scheduler is no pipeline schedule (%s)", m->source, why.msg);
    sm_schedule *p = sm_schedule_new(out->policy, m->pp, m->micro, &why);
    if (!p)
        return sm_fail(err, "%s: %d ranks and %d micro-batches: %s", m->source, m->pp, m->micro,
                       why.msg);
    double ops = (double)(m->micro * p->nchunks / p->ndirs) * m->steps;
    sm_schedule_free(p);
    if (!(out->rank = calloc((size_t)m->pp, sizeof *out->rank)))
        return sm_fail(err, "%s: out of memory", m->source);
    for (int r = 0; r < m->pp; r++) {
        sm_schedule_costs *c = &out->rank[r];
        *c = (sm_schedule_costs){m->f[r] / ops, m->b[r] / ops, m->w[r] / ops, 0};
        c->fb = c->f + c->b + c->w;
        out->mean.f += c->f / m->pp;
        out->mean.b += c->b / m->pp;
        out->mean.w += c->w / m->pp;
        out->mean.fb += c->fb / m->pp;
    }
    return 0;
}

void sm_measured_costs_free(sm_measured_costs *c)
{
    free(c->rank);
    *c = (sm_measured_costs){0};
}
