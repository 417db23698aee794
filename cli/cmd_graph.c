/* starmoe graph: writes the task DAG of one training step as Graphviz DOT, without running. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *sm_graph_usage =
    "(--config FILE.json | --model DIR) --dot FILE [--batch B] [--seq T] [--micro M]\n"
    "       [--forward-only]";

int sm_cmd_graph(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"model", required_argument, 0, 'm'},
        {"dot", required_argument, 0, 'd'},    {"batch", required_argument, 0, 'b'},
        {"seq", required_argument, 0, 's'},    {"micro", required_argument, 0, 'u'},
        {"forward-only", no_argument, 0, 'f'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *config_path = NULL, *model_dir = NULL, *dot = NULL;
    long B = 1, S = 0, micro = 1;
    int forward_only = 0, opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; break;
        case 'm': model_dir = optarg; break;
        case 'd': dot = optarg; break;
        case 'f': forward_only = 1; break;
        case 'b': if (sm_cli_int("batch", optarg, 1, 1 << 20, &B)) return 2; break;
        case 's': if (sm_cli_int("seq", optarg, 1, 1 << 20, &S)) return 2; break;
        case 'u': if (sm_cli_int("micro", optarg, 1, 4096, &micro)) return 2; break;
        case 'h': printf("usage: starmoe graph %s\n", sm_graph_usage); return 0;
        default: return sm_cli_usage_error("graph", sm_graph_usage);
        }
    }
    if (!config_path == !model_dir || !dot || optind < argc)
        return sm_cli_usage_error("graph", sm_graph_usage);
    size_t n = model_dir ? strlen(model_dir) + sizeof "/config.json" : 0;
    char *path = n ? malloc(n) : NULL;
    if (path) snprintf(path, n, "%s/config.json", model_dir);
    sm_error err = {{0}};
    sm_config cfg;
    sm_model *m = NULL;
    sm_run *r = NULL;
    int rc = config_path || path ? sm_config_load_json(&cfg, config_path ? config_path : path, &err)
                                 : sm_fail(&err, "%s: out of memory", model_dir);
    if (!rc && !S) S = cfg.max_position_embeddings < 64 ? cfg.max_position_embeddings : 64;
    if (!rc) rc = !(m = sm_model_new(&cfg, 0, &err));
    if (!rc) rc = !(r = sm_run_new(m, (int)B, (int)S, (int)micro, !forward_only, &err));
    if (!rc) rc = sm_run_build(r, &err) || sm_run_write_dot(r, dot, &err);
    if (!rc) printf("%zu tasks written to %s\n", sm_run_ntasks(r), dot);
    else fprintf(stderr, "starmoe graph: %s\n", err.msg);
    sm_run_free(r);
    sm_model_free(m);
    free(path);
    return rc ? 1 : 0;
}
