/* starmoe schedule: a pipeline schedule's per-rank programs and its simulated timeline
 * (makespan, bubble and peak activations per rank) as text, JSON or an SVG. No engine. */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "schedulers/render.h"

static const char *sm_schedule_usage =
    "--policy gpipe|1f1b|zbh1|dualpipe|dualpipev --pp P --micro M\n"
    "       [--cost F,B,W,FB] [--format text|json] [-o TIMELINE.svg]\n"
    "  M counts every micro-batch; costs default to F=1 B=1 W=1 FB=2.5 (B backward for\n"
    "  inputs, W for weights, FB one overlapped forward + full backward pair)";

enum { SM_GANTT_WIDTH = 120 };

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

/* Builds, simulates and reports; 0 on success. */
static int sm_schedule_run(sm_schedule_policy policy, int pp, int micro, const sm_schedule_costs *c,
                           int json, const char *svg)
{
    sm_error err = {{0}};
    sm_schedule_sim sim;
    sm_schedule *p = sm_schedule_new(policy, pp, micro, &err);
    int rc = p ? sm_schedule_simulate(p, c, &sim, &err) : -1;
    if (rc == 0) {
        if (json) sm_schedule_print_json(stdout, p, c, &sim);
        else sm_schedule_print_text(stdout, p, c, &sim, SM_GANTT_WIDTH);
        if (svg) rc = sm_schedule_write_svg(svg, p, &sim, &err);
        sm_schedule_sim_free(&sim);
    }
    sm_schedule_free(p);
    if (rc) fprintf(stderr, "starmoe schedule: %s\n", err.msg);
    return rc ? 1 : 0;
}

int sm_cmd_schedule(int argc, char **argv)
{
    static const struct option opts[] = {
        {"policy", required_argument, 0, 'p'}, {"pp", required_argument, 0, 'P'},
        {"micro", required_argument, 0, 'u'},  {"cost", required_argument, 0, 'c'},
        {"format", required_argument, 0, 'f'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    sm_schedule_costs costs = {1, 1, 1, 2.5};
    const char *policy_name = NULL, *format = "text", *svg = NULL;
    long pp = 0, micro = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        switch (opt) {
        case 'p': policy_name = optarg; break;
        case 'o': svg = optarg; break;
        case 'f': format = optarg; break;
        case 'P': if (sm_cli_int("pp", optarg, 1, 1024, &pp)) return 2; break;
        case 'u': if (sm_cli_int("micro", optarg, 1, 65536, &micro)) return 2; break;
        case 'c': if (sm_parse_costs(optarg, &costs)) return 2; break;
        case 'h': printf("usage: starmoe schedule %s\n", sm_schedule_usage); return 0;
        default: return sm_cli_usage_error("schedule", sm_schedule_usage);
        }
    }
    if (!policy_name || !pp || !micro || optind < argc ||
        (strcmp(format, "text") && strcmp(format, "json")))
        return sm_cli_usage_error("schedule", sm_schedule_usage);
    sm_error err = {{0}};
    sm_schedule_policy policy;
    if (sm_schedule_policy_parse(policy_name, &policy, &err)) {
        fprintf(stderr, "starmoe schedule: %s\n", err.msg);
        return 2;
    }
    return sm_schedule_run(policy, (int)pp, (int)micro, &costs, !strcmp(format, "json"), svg);
}
