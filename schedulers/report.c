/* The `schedule` command's work: a policy's programs built, simulated and reported (text or
 * JSON, and the SVG timeline), or one comparison row per policy; costs given, or measured in a
 * trace (docs/pipeline-schedules.md §4.4, §4.5). */
#include <starmoe/schedule.h>

#include <stdlib.h>
#include "schedulers/measured.h"
#include "schedulers/render.h"

/* Everything a report simulates with, after the measured run's defaults are applied. */
typedef struct sm_report_input {
    const char *policy;
    int pp, micro;
    sm_schedule_model model;
    const sm_schedule_measured *measured; /* NULL: costs given */
    const sm_measured_costs *costs;       /* derived from `measured` */
} sm_report_input;

static void sm_print_measured_costs(FILE *f, const sm_report_input *in)
{
    const sm_schedule_measured *m = in->measured;
    fprintf(f, "costs from %s: %s, %d ranks, %d micro-batches, %d step%s; ms per chunk op\n",
            m->source, sm_schedule_policy_name(in->costs->policy), m->pp, m->micro, m->steps,
            m->steps == 1 ? "" : "s");
    for (int r = 0; r < m->pp; r++) {
        fprintf(f, "  rank %d: ", r);
        sm_schedule_print_costs(f, &in->costs->rank[r]);
        fputc('\n', f);
    }
    fprintf(f, "  mean:   ");
    sm_schedule_print_costs(f, &in->costs->mean);
    if (m->messages) fprintf(f, "\n  p2p %g ms: the mean of %zu messages\n", m->p2p, m->messages);
    else fprintf(f, "\n  p2p: the trace has no messages\n");
}

/* The measured step against the prediction; per rank its slots' time, the tasks outside the
 * programs that ran in the span (the simulator has none), and its bubble in the simulator's
 * sense (the scheduled span less the slots: time between slots), measured and predicted. */
static void sm_print_measured(FILE *f, const sm_schedule_measured *m, const sm_schedule_sim *sim)
{
    fprintf(f, "measured: scheduled tasks span %g ms per step (whole step %g ms); predicted "
               "makespan %g ms = %.3f x measured\n",
            m->scheduled, m->step, sim->makespan, sim->makespan / m->scheduled);
    for (int r = 0; r < m->pp; r++) {
        double slots = (m->f[r] + m->b[r] + m->w[r]) / m->steps, idle = m->scheduled - slots;
        double other = m->other ? m->other[r] / m->steps : 0;
        fprintf(f, "measured rank %d: slots %g ms, other tasks %g ms, bubble %g ms per step; "
                   "predicted bubble %g ms (%+.0f%%)\n", r, slots, other, idle, sim->bubble[r],
                idle > 0 ? 100 * (sim->bubble[r] - idle) / idle : 0.0);
    }
}

/* s as a JSON string, quotes included. */
static void sm_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const char *c = s; *c; c++)
        if (*c == '"' || *c == '\\') fprintf(f, "\\%c", *c);
        else if ((unsigned char)*c < 0x20) fprintf(f, "\\u%04x", *c);
        else fputc(*c, f);
    fputc('"', f);
}

static void sm_json_measured(FILE *f, const sm_report_input *in, double makespan)
{
    const sm_schedule_measured *m = in->measured;
    fprintf(f, ",\"costs_from\":{\"trace\":");
    sm_json_string(f, m->source);
    fprintf(f, ",\"policy\":\"%s\",\"pp\":%d,\"micro\":%d,\"steps\":%d,\"messages\":%zu,"
               "\"p2p_ms\":%.10g,\"scheduled_span_ms\":%.10g,\"step_span_ms\":%.10g,"
               "\"predicted_over_measured\":%.10g}",
            sm_schedule_policy_name(in->costs->policy), m->pp, m->micro, m->steps, m->messages,
            m->p2p, m->scheduled, m->step, makespan / m->scheduled);
}

/* One policy, reported in full. */
static int sm_report_one(const sm_schedule_report_opts *o, const sm_report_input *in, FILE *out,
                         sm_error *err)
{
    sm_schedule_policy policy;
    if (sm_schedule_policy_parse(in->policy, &policy, err)) return -1;
    sm_schedule *p = sm_schedule_new(policy, in->pp, in->micro, err);
    if (!p) return -1;
    sm_schedule_sim sim;
    int rc = sm_schedule_simulate_model(p, &in->model, &sim, err);
    if (rc == 0) {
        if (o->json) {
            fputc('{', out);
            sm_schedule_print_json(out, p, &in->model, &sim);
            if (in->measured) sm_json_measured(out, in, sim.makespan);
            fprintf(out, "}\n");
        } else {
            if (in->measured) sm_print_measured_costs(out, in);
            sm_schedule_print_text(out, p, &in->model, &sim, o->width);
            if (in->measured) sm_print_measured(out, in->measured, &sim);
        }
        if (o->svg) rc = sm_schedule_write_svg(o->svg, p, &sim, err);
        sm_schedule_sim_free(&sim);
    }
    sm_schedule_free(p);
    return rc;
}

/* Costs scaled by k. */
static sm_schedule_costs sm_costs_scaled(const sm_schedule_costs *c, double k)
{
    return (sm_schedule_costs){c->f * k, c->b * k, c->w * k, c->fb * k};
}

/* The model of one policy in the comparison: DualPipeV's ranks hold the same share of the model
 * as the others' in two chunks, so its chunk costs and all-to-alls are halved (into `half`). */
static sm_schedule_model sm_compare_model(sm_schedule_policy policy, const sm_schedule_model *m,
                                          sm_schedule_costs *half, int pp)
{
    sm_schedule_model v = *m;
    if (policy != SM_SCHEDULE_DUALPIPEV) return v;
    v.costs = sm_costs_scaled(&m->costs, 0.5);
    v.comm.ep = m->comm.ep / 2;
    if (m->rank_costs) {
        for (int r = 0; r < pp; r++) half[r] = sm_costs_scaled(&m->rank_costs[r], 0.5);
        v.rank_costs = half;
    }
    return v;
}

/* `delay`: the step's growth over the same run with free communication. */
static void sm_compare_row(FILE *out, int json, const sm_schedule *p, const sm_schedule_model *m,
                           const sm_schedule_sim *s, double delay)
{
    double sum = 0;
    for (int r = 0; r < p->pp; r++) sum += s->p2p_wait[r] + s->a2a[r];
    if (json) {
        fputc('{', out);
        sm_schedule_print_json(out, p, m, s);
        fprintf(out, ",\"comm_delay\":%.10g}", delay);
        return;
    }
    int peak = 0;
    for (int r = 0; r < p->pp; r++) peak = s->peak_act[r] > peak ? s->peak_act[r] : peak;
    fprintf(out, "%-10s %6d %10.4g %10.4g %10.4g %12.4g %12.4g %9d\n",
            sm_schedule_policy_name(p->policy), p->nstages, s->makespan, delay, s->bubble_max,
            s->exposed_max, sum / p->pp, peak);
}

/* The makespan of the model with its communication free. */
static int sm_free_comm_step(const sm_schedule *p, const sm_schedule_model *m, double *step,
                             sm_error *err)
{
    sm_schedule_model free_comm = *m;
    free_comm.comm = (sm_schedule_comm){0};
    sm_schedule_sim sim;
    if (sm_schedule_simulate_model(p, &free_comm, &sim, err)) return -1;
    *step = sim.makespan;
    sm_schedule_sim_free(&sim);
    return 0;
}

/* One row per policy; a policy the pp and micro do not allow says why. */
static int sm_report_all(const sm_schedule_report_opts *o, const sm_report_input *in, FILE *out,
                         sm_error *err)
{
    sm_schedule_costs *half = calloc((size_t)in->pp, sizeof *half);
    if (!half) return sm_fail(err, "out of memory comparing pp %d", in->pp);
    if (o->json) {
        fprintf(out, "{\"pp\":%d,\"micro\":%d,\"policies\":[", in->pp, in->micro);
    } else {
        fprintf(out, "%d ranks, %d micro-batches; costs ", in->pp, in->micro);
        if (in->model.rank_costs) fprintf(out, "per rank");
        else sm_schedule_print_costs(out, &in->model.costs);
        sm_schedule_print_comm(out, &in->model.comm);
        fprintf(out, "\n(dualpipev: two half-size chunks per rank, chunk costs and all-to-all "
                     "halved; comm delay: step - step with free communication)\n"
                     "%-10s %6s %10s %10s %10s %12s %12s %9s\n", "policy", "stages", "step",
                "comm delay", "bubble max", "exposed max", "exposed mean", "peak act");
    }
    int rc = 0;
    for (int k = SM_SCHEDULE_GPIPE; k <= SM_SCHEDULE_DUALPIPEV && rc == 0; k++) {
        sm_error why = {{0}};
        sm_schedule_model m = sm_compare_model(k, &in->model, half, in->pp);
        sm_schedule *p = sm_schedule_new(k, in->pp, in->micro, &why);
        sm_schedule_sim sim;
        if (o->json && k) fputc(',', out);
        if (!p) {
            if (o->json) {
                fprintf(out, "{\"policy\":\"%s\",\"skipped\":", sm_schedule_policy_name(k));
                sm_json_string(out, why.msg);
                fputc('}', out);
            } else {
                fprintf(out, "%-10s %s\n", sm_schedule_policy_name(k), why.msg);
            }
            continue;
        }
        double free_step;
        rc = sm_free_comm_step(p, &m, &free_step, err) ||
             sm_schedule_simulate_model(p, &m, &sim, err);
        if (rc == 0) sm_compare_row(out, o->json, p, &m, &sim, sim.makespan - free_step);
        if (rc == 0) sm_schedule_sim_free(&sim);
        sm_schedule_free(p);
    }
    if (o->json && rc == 0) fprintf(out, "]}\n");
    free(half);
    return rc;
}

int sm_schedule_report(const sm_schedule_report_opts *o, FILE *out, sm_error *err)
{
    const sm_schedule_measured *m = o->measured;
    sm_report_input in = {.policy = o->policy, .pp = o->pp, .micro = o->micro,
                          .model = {.costs = o->costs, .comm = o->comm}, .measured = m};
    sm_measured_costs costs;
    if (m) {
        if (sm_measured_costs_new(m, &costs, err)) {
            sm_measured_costs_free(&costs);
            return -1;
        }
        in.costs = &costs;
        if (!in.policy) in.policy = sm_schedule_policy_name(costs.policy);
        if (!in.pp) in.pp = m->pp;
        if (!in.micro) in.micro = m->micro;
        in.model.costs = costs.mean;
        in.model.rank_costs = in.pp == m->pp ? costs.rank : NULL;
    }
    if (o->comm.p2p < 0) in.model.comm.p2p = m ? m->p2p : 0;
    int rc;
    if (in.pp < 1 || in.micro < 1 || (!o->all && !in.policy))
        rc = sm_fail(err, "schedule: policy, pp >= 1 and micro >= 1 are needed (or a measured "
                          "run to take them from)");
    else rc = o->all ? sm_report_all(o, &in, out, err) : sm_report_one(o, &in, out, err);
    if (m) sm_measured_costs_free(&costs);
    return rc;
}
