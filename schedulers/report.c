/* The `schedule` command's work: a policy's programs built, simulated and reported (text or
 * JSON, and the SVG timeline). */
#include <starmoe/schedule.h>

#include "schedulers/render.h"

int sm_schedule_report(const sm_schedule_report_opts *o, FILE *out, sm_error *err)
{
    sm_schedule_policy policy;
    if (sm_schedule_policy_parse(o->policy, &policy, err)) return -1;
    sm_schedule *p = sm_schedule_new(policy, o->pp, o->micro, err);
    if (!p) return -1;
    sm_schedule_sim sim;
    int rc = sm_schedule_simulate(p, &o->costs, &sim, err);
    if (rc == 0) {
        if (o->json) sm_schedule_print_json(out, p, &o->costs, &sim);
        else sm_schedule_print_text(out, p, &o->costs, &sim, o->width);
        if (o->svg) rc = sm_schedule_write_svg(o->svg, p, &sim, err);
        sm_schedule_sim_free(&sim);
    }
    sm_schedule_free(p);
    return rc;
}
