/* starmoe generate: sample text from a checkpoint (a step-* folder, or a run folder: its
 * newest checkpoint) with its own tokenizer. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/checkpoint.h"
#include "io/run_config.h"
#include "data/tokenizer.h"

static const char *sm_generate_usage =
    "--ckpt DIR [--prompt TEXT] [--tokens N] [--temperature T] [--top-p P] [--seed S]\n"
    "       [--workers N] [--sched NAME]";

static int sm_cli_double(const char *flag, const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "starmoe: --%s '%s': expected a number in [%g, %g]\n", flag, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* A checkpoint folder (it has a manifest) is used when it verifies; a run folder resolves to
 * its newest complete checkpoint, and the newer ones skipped are reported with why. */
static int sm_resolve_ckpt(const char *dir, char *path, size_t cap, sm_error *err)
{
    char manifest[1400];
    snprintf(manifest, sizeof manifest, "%s/manifest.json", dir);
    if (access(manifest, F_OK) == 0) {
        if (sm_ckpt_verify(dir, err)) return -1;
        snprintf(path, cap, "%s", dir);
        return 0;
    }
    if (sm_ckpt_latest(dir, path, cap, err) != 0) return -1;
    if (err->msg[0])
        fprintf(stderr, "starmoe generate: skipped the newer checkpoints that do not verify (%s); "
                        "using %s\n", err->msg, path);
    return 0;
}

static int sm_generate_text(const char *ckpt, const char *prompt, int ntokens,
                            sm_sample_opts *so, sm_error *err)
{
    sm_ckpt_state st;
    sm_run_config rc;
    char tok_path[1700];
    char *cfg = NULL, *text = NULL;
    int32_t *ids = NULL, *out = NULL;
    size_t nids = 0, len = 0;
    int nout = 0, ret = -1;
    sm_tokenizer *tok = NULL;
    sm_model *m = NULL;
    if (sm_ckpt_load_state(ckpt, &st, err) || !(cfg = sm_ckpt_load_run_config(ckpt, err)) ||
        sm_run_config_load_text(&rc, cfg, ckpt, NULL, 0, err))
        goto out;
    snprintf(tok_path, sizeof tok_path, "%s/%s", ckpt, st.tokenizer);
    if (!(tok = sm_tokenizer_load(tok_path, err)) ||
        sm_tokenizer_encode(tok, prompt, strlen(prompt), &ids, &nids, err) ||
        !(m = sm_model_open_hf(ckpt, err)))
        goto out;
    so->stop_token = so->start_token = sm_tokenizer_eot(tok);
    if (sm_generate_ids(m, ids, (int)nids, ntokens, rc.train.seq_len, so, &out, &nout, err) ||
        !(text = sm_tokenizer_decode(tok, out, nout, &len, err)))
        goto out;
    /* a sample can stop inside a multi-byte character: print whole characters only */
    for (int cut = 0; cut < 3 && len > 0 && !sm_utf8_valid(text, len); cut++) len--;
    fwrite(text, 1, len, stdout);
    printf("\n");
    ret = 0;
out:
    free(text);
    free(out);
    free(ids);
    free(cfg);
    sm_model_free(m);
    sm_tokenizer_free(tok);
    return ret;
}

int sm_cmd_generate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"ckpt", required_argument, 0, 'c'},        {"prompt", required_argument, 0, 'p'},
        {"tokens", required_argument, 0, 'n'},      {"temperature", required_argument, 0, 't'},
        {"top-p", required_argument, 0, 'P'},       {"seed", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},              SM_CLI_ENGINE_OPTS, {0, 0, 0, 0}};
    sm_sample_opts so = {.temperature = 0.8, .top_p = 0.95, .seed = 1, .min_new = 24};
    sm_engine_opts e = {0};
    const char *dir = NULL, *prompt = "";
    long n = 120, v;
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int r = sm_cli_engine_opt(opt, optarg, &e);
        if (r < 0) return 2;
        if (r) continue;
        switch (opt) {
        case 'c': dir = optarg; break;
        case 'p': prompt = optarg; break;
        case 'n': if (sm_cli_int("tokens", optarg, 1, 100000, &n)) return 2; break;
        case 't': if (sm_cli_double("temperature", optarg, 0, 100, &so.temperature)) return 2; break;
        case 'P': if (sm_cli_double("top-p", optarg, 1e-6, 1, &so.top_p)) return 2; break;
        case 's': if (sm_cli_int("seed", optarg, 0, 1L << 62, &v)) return 2; so.seed = (uint64_t)v; break;
        case 'h': printf("usage: starmoe generate %s\n", sm_generate_usage); return 0;
        default: return sm_cli_usage_error("generate", sm_generate_usage);
        }
    }
    if (!dir || optind < argc) return sm_cli_usage_error("generate", sm_generate_usage);
    sm_error err = {{0}};
    char ckpt[1400];
    if (sm_resolve_ckpt(dir, ckpt, sizeof ckpt, &err)) {
        fprintf(stderr, "starmoe generate: %s\n", err.msg);
        return 1;
    }
    if (sm_cli_engine_start(&e)) return 1;
    int rc = sm_generate_text(ckpt, prompt, (int)n, &so, &err);
    sm_engine_shutdown();
    if (rc) fprintf(stderr, "starmoe generate: %s\n", err.msg);
    return rc ? 1 : 0;
}
