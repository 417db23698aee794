/* The `schedule` command's work: a policy's programs built, simulated and reported (text or
 * JSON, and the SVG timeline), or one comparison row per policy; costs given, or measured in a
 * trace (docs/pipeline-schedules.md §4.4, §4.5). */
#include <starmoe/schedule.h>

#include <stdlib.h>
#include "schedulers/render.h"
#include "schedulers/trace_costs.h"

/* Everything a report simulates with, after the trace's defaults are applied. */
typedef struct sm_report_input {
    const char *policy;
    int pp, micro;
    sm_schedule_model model;
    const sm_trace_costs *trace; /* NULL: no --costs-from */
} sm_report_input;

static void sm_print_trace_costs(FILE *f, const char *path, const sm_trace_costs *t)
{
    fprintf(f, "costs from %s: %s, %d ranks, %d micro-batches, %d step%s; ms per chunk op\n",
            path, sm_schedule_policy_name(t->policy), t->pp, t->micro, t->steps,
            t->steps == 1 ? "" : "s");
    for (int r = 0; r < t->pp; r++) {
        fprintf(f, "  rank %d: ", r);
        sm_schedule_print_costs(f, &t->rank[r]);
        fputc('\n', f);
    }
    fprintf(f, "  mean:   ");
    sm_schedule_print_costs(f, &t->mean);
    if (t->messages) fprintf(f, "\n  p2p %g ms: the mean of %zu messages\n", t->p2p, t->messages);
    else fprintf(f, "\n  p2p: the trace has no messages\n");
}

/* The measured step against the prediction. */
static void sm_print_measured(FILE *f, const sm_trace_costs *t, double makespan)
{
    fprintf(f, "measured: scheduled tasks span %g ms per step (whole step %g ms); predicted "
               "makespan %g ms = %.3f x measured\n",
            t->pipe_span, t->step_span, makespan, makespan / t->pipe_span);
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

static void sm_json_trace(FILE *f, const char *path, const sm_trace_costs *t, double makespan)
{
    fprintf(f, ",\"costs_from\":{\"trace\":");
    sm_json_string(f, path);
    fprintf(f, ",\"policy\":\"%s\",\"pp\":%d,\"micro\":%d,\"steps\":%d,\"messages\":%zu,"
               "\"p2p_ms\":%.10g,\"scheduled_span_ms\":%.10g,\"step_span_ms\":%.10g,"
               "\"predicted_over_measured\":%.10g}",
            sm_schedule_policy_name(t->policy), t->pp, t->micro, t->steps, t->messages, t->p2p,
            t->pipe_span, t->step_span, makespan / t->pipe_span);
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
            if (in->trace) sm_json_trace(out, o->costs_from, in->trace, sim.makespan);
            fprintf(out, "}\n");
        } else {
            if (in->trace) sm_print_trace_costs(out, o->costs_from, in->trace);
            sm_schedule_print_text(out, p, &in->model, &sim, o->width);
            if (in->trace) sm_print_measured(out, in->trace, sim.makespan);
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
    sm_report_input in = {.policy = o->policy, .pp = o->pp, .micro = o->micro,
                          .model = {.costs = o->costs, .comm = o->comm}};
    sm_trace_costs t;
    if (o->costs_from) {
        if (sm_trace_costs_load(o->costs_from, &t, err)) {
            sm_trace_costs_free(&t);
            return -1;
        }
        in.trace = &t;
        if (!in.policy) in.policy = sm_schedule_policy_name(t.policy);
        if (!in.pp) in.pp = t.pp;
        if (!in.micro) in.micro = t.micro;
        in.model.costs = t.mean;
        in.model.rank_costs = in.pp == t.pp ? t.rank : NULL;
        if (o->comm.p2p < 0) in.model.comm.p2p = t.p2p;
    } else if (o->comm.p2p < 0) {
        in.model.comm.p2p = 0;
    }
    int rc;
    if (in.pp < 1 || in.micro < 1 || (!o->all && !in.policy))
        rc = sm_fail(err, "schedule: policy, pp >= 1 and micro >= 1 are needed (or a trace "
                          "to take them from)");
    else rc = o->all ? sm_report_all(o, &in, out, err) : sm_report_one(o, &in, out, err);
    if (o->costs_from) sm_trace_costs_free(&t);
    return rc;
}
