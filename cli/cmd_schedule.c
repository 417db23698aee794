/* starmoe schedule: a pipeline schedule's per-rank programs and its simulated timeline
 * (makespan, bubble, exposed communication and peak activations per rank) as text, JSON or an
 * SVG, or one row per policy (--all); costs given or measured in a trace. No engine. */
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *sm_schedule_usage =
    "[--policy gpipe|1f1b|zbh1|dualpipe|dualpipev | --all] --pp P --micro M\n"
    "       [--cost F,B,W,FB | --costs-from TRACE] [--comm C] [--ep-comm A] [--overlap]\n"
    "       [--format text|json] [-o TIMELINE.svg]\n"
    "  M counts every micro-batch; costs default to F=1 B=1 W=1 FB=2.5 (B backward for\n"
    "  inputs, W for weights, FB one overlapped forward + full backward pair); --all compares\n"
    "  the five policies. --comm: one transfer between ranks, --ep-comm: the expert all-to-all\n"
    "  of one chunk's F or B, --overlap: an overlapped pair hides both of its own (default 0,\n"
    "  no overlap). --costs-from: per-rank costs (ms) measured in a pipelined training run's\n"
    "  Chrome trace, whose policy, ranks and micro-batches are the defaults";

enum { SM_GANTT_WIDTH = 120 };

/* A communication time: a finite number >= 0; prints an error naming the flag otherwise. */
static int sm_parse_time(const char *flag, const char *s, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(*out) || *out < 0) {
        fprintf(stderr, "starmoe: --%s '%s': expected a finite time >= 0\n", flag, s);
        return -1;
    }
    return 0;
}

/* "F,B,W,FB": four numbers; prints an error naming the flag otherwise. */
static int sm_parse_costs(const char *s, sm_schedule_costs *c)
{
    double v[4];
    const char *p = s;
    for (int i = 0; i < 4; i++) {
        char *end;
        errno = 0;
        v[i] = strtod(p, &end);
        if (errno || end == p || *end != (i < 3 ? ',' : '\0')) {
            fprintf(stderr, "starmoe: --cost '%s': expected F,B,W,FB (four numbers)\n", s);
            return -1;
        }
        p = end + 1;
    }
    *c = (sm_schedule_costs){v[0], v[1], v[2], v[3]};
    sm_error err = {{0}};
    if (sm_schedule_costs_check(c, &err) == 0) return 0;
    fprintf(stderr, "starmoe: --cost '%s': %s\n", s, err.msg);
    return -1;
}

int sm_cmd_schedule(int argc, char **argv)
{
    static const struct option opts[] = {
        {"policy", required_argument, 0, 'p'}, {"pp", required_argument, 0, 'P'},
        {"micro", required_argument, 0, 'u'},  {"cost", required_argument, 0, 'c'},
        {"format", required_argument, 0, 'f'}, {"help", no_argument, 0, 'h'},
        {"comm", required_argument, 0, 'C'},   {"ep-comm", required_argument, 0, 'E'},
        {"overlap", no_argument, 0, 'O'},      {"costs-from", required_argument, 0, 't'},
        {"all", no_argument, 0, 'a'},          {0, 0, 0, 0}};
    sm_schedule_report_opts o = {.costs = {1, 1, 1, 2.5}, .comm = {.p2p = -1},
                                 .width = SM_GANTT_WIDTH};
    int cost_given = 0;
    const char *costs_from = NULL;
    const char *format = "text";
    long v;
    int opt;
    while ((opt = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        switch (opt) {
        case 'p': o.policy = optarg; break;
        case 'o': o.svg = optarg; break;
        case 'f': format = optarg; break;
        case 'P': if (sm_cli_int("pp", optarg, 1, 1024, &v)) return 2; o.pp = (int)v; break;
        case 'u': if (sm_cli_int("micro", optarg, 1, 65536, &v)) return 2; o.micro = (int)v; break;
        case 'c': if (sm_parse_costs(optarg, &o.costs)) return 2; cost_given = 1; break;
        case 'C': if (sm_parse_time("comm", optarg, &o.comm.p2p)) return 2; break;
        case 'E': if (sm_parse_time("ep-comm", optarg, &o.comm.ep)) return 2; break;
        case 'O': o.comm.overlap = 1; break;
        case 't': costs_from = optarg; break;
        case 'a': o.all = 1; break;
        case 'h': printf("usage: starmoe schedule %s\n", sm_schedule_usage); return 0;
        default: return sm_cli_usage_error("schedule", sm_schedule_usage);
        }
    }
    int need = !costs_from && (!o.pp || !o.micro || (!o.policy && !o.all));
    if (need || optind < argc || (o.all && (o.policy || o.svg)) ||
        (cost_given && costs_from) || (strcmp(format, "text") && strcmp(format, "json")))
        return sm_cli_usage_error("schedule", sm_schedule_usage);
    o.json = !strcmp(format, "json");
    sm_error err = {{0}};
    sm_trace_pipeline t;
    sm_schedule_measured measured;
    int rc = costs_from ? sm_trace_pipeline_load(costs_from, &t, &err) : 0;
    if (rc == 0 && costs_from) {
        measured = (sm_schedule_measured){
            .source = costs_from, .policy = t.scheduler, .pp = t.ranks, .micro = t.micro,
            .steps = t.steps, .f = t.f, .b = t.b, .w = t.w, .other = t.other, .messages = t.messages,
            .p2p = t.message_ms, .step = t.step_ms, .scheduled = t.scheduled_ms};
        o.measured = &measured;
    }
    if (rc == 0) rc = sm_schedule_report(&o, stdout, &err);
    if (costs_from) sm_trace_pipeline_free(&t);
    if (rc == 0) return 0;
    fprintf(stderr, "starmoe schedule: %s\n", err.msg);
    return 1;
}
