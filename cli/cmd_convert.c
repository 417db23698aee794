/* starmoe convert: a Hugging Face model folder to FP8 (as DeepSeek-V3 is released), BF16 or F32. */
#include "cli/cli.h"

#include <stdio.h>

static const char *sm_convert_usage = "--model DIR --to fp8|bf16|f32 -o OUT";

int sm_cmd_convert(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"to", required_argument, 0, 't'},
        {"out", required_argument, 0, 'o'},   {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *model = NULL, *to = NULL, *out = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        switch (opt) {
        case 'm': model = optarg; break;
        case 't': to = optarg; break;
        case 'o': out = optarg; break;
        case 'h': printf("usage: starmoe convert %s\n", sm_convert_usage); return 0;
        default: return sm_cli_usage_error("convert", sm_convert_usage);
        }
    }
    if (!model || !to || !out || optind < argc)
        return sm_cli_usage_error("convert", sm_convert_usage);
    sm_error err = {{0}};
    if (sm_convert(model, to, out, &err)) {
        sm_cli_error("convert", err.msg);
        return 1;
    }
    printf("%s: %s converted to %s\n", out, model, to);
    return 0;
}
