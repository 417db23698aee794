/* starmoe trace summary|html|merge: the tools on trace files written with --trace FILE. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

static const char *sm_trace_usage =
    "summary FILE [--format text|json]\n"
    "       starmoe trace html FILE -o REPORT.html\n"
    "       starmoe trace merge FILE FILE... -o MERGED.json";

static int sm_trace_run(const char *sub, char **files, int nfiles, const char *out,
                        const char *format)
{
    sm_error err = {{0}};
    int rc;
    if (!strcmp(sub, "summary"))
        rc = sm_trace_summary(files[0], stdout, !strcmp(format, "json"), &err);
    else if (!strcmp(sub, "html"))
        rc = sm_trace_html(files[0], out, &err);
    else
        rc = sm_trace_merge((const char *const *)files, nfiles, out, &err);
    if (rc) {
        fprintf(stderr, "starmoe trace %s: %s\n", sub, err.msg);
        return 1;
    }
    if (strcmp(sub, "summary")) printf("%s written\n", out);
    return 0;
}

int sm_cmd_trace(int argc, char **argv)
{
    static const struct option opts[] = {{"out", required_argument, 0, 'o'},
                                         {"format", required_argument, 0, 'f'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *out = NULL, *format = "text";
    int opt;
    if (argc < 2) return sm_cli_usage_error("trace", sm_trace_usage);
    const char *sub = argv[1];
    argc--, argv++;
    while ((opt = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        switch (opt) {
        case 'o': out = optarg; break;
        case 'f': format = optarg; break;
        case 'h': printf("usage: starmoe trace %s\n", sm_trace_usage); return 0;
        default: return sm_cli_usage_error("trace", sm_trace_usage);
        }
    }
    int nfiles = argc - optind;
    int ok = (!strcmp(sub, "summary") && nfiles == 1 && !out &&
              (!strcmp(format, "text") || !strcmp(format, "json"))) ||
             (!strcmp(sub, "html") && nfiles == 1 && out) ||
             (!strcmp(sub, "merge") && nfiles >= 1 && out);
    if (!ok) return sm_cli_usage_error("trace", sm_trace_usage);
    return sm_trace_run(sub, argv + optind, nfiles, out, format);
}
