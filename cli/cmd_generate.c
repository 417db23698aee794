/* starmoe generate: sample text from a checkpoint (a step-* folder, or a run folder: its
 * newest checkpoint) with its own tokenizer; stderr gets what the latent cache holds and the
 * prefill and decode speeds. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *sm_generate_usage =
    "--ckpt DIR [--prompt TEXT] [--tokens N] [--temperature T] [--top-p P] [--seed S]\n"
    "       [--no-cache | --speculative] [--workers N] [--sched NAME]";

/* tokens / seconds, 0 for no time */
static double sm_rate(int tokens, double s) { return s > 0 ? tokens / s : 0.0; }

static void sm_cli_generate_stats(const sm_generate_stats *st)
{
    if (st->cached)
        fprintf(stderr, "kv cache: %zu B/token (%d floats x %d layers, float32) vs %zu B/token "
                        "for full K/V: %.1fx smaller\n", st->cache_bytes_per_token,
                st->cache_floats, st->layers, st->full_kv_bytes_per_token,
                (double)st->full_kv_bytes_per_token / st->cache_bytes_per_token);
    else
        fprintf(stderr, "kv cache: none (--no-cache: every token re-runs the window)\n");
    fprintf(stderr, "prefill: %d tokens in %.3f s (%.1f tokens/s); decode: %d tokens in %.3f s "
                    "(%.1f tokens/s)\n", st->prompt_tokens, st->prefill_s,
            sm_rate(st->prompt_tokens, st->prefill_s), st->decode_steps, st->decode_s,
            sm_rate(st->decode_steps, st->decode_s));
}

/* Speculative decoding's report: each depth's acceptance, tokens per main-model step, and its
 * decode speed against plain decoding's (`plain`) on the same prompt. */
static void sm_cli_speculative_stats(const sm_generated *spec, const sm_generated *plain)
{
    const sm_generate_stats *st = &spec->stats, *pl = &plain->stats;
    fprintf(stderr, "speculative:");
    for (int k = 0; k < st->depths && k < SM_SPEC_DEPTHS; k++)
        fprintf(stderr, "%s depth %d kept %d of %d drafts (%.1f%%)", k ? "," : "", k + 1,
                st->drafts_kept[k], st->drafts_checked[k],
                st->drafts_checked[k] ? 100.0 * st->drafts_kept[k] / st->drafts_checked[k] : 0.0);
    fprintf(stderr, "; %.2f tokens per main-model step\n",
            st->verify_steps ? (double)st->decode_steps / st->verify_steps : 0.0);
    double a = sm_rate(st->decode_steps, st->decode_s), b = sm_rate(pl->decode_steps, pl->decode_s);
    fprintf(stderr, "speculative: decode %.1f tokens/s vs %.1f plain on the same prompt: %.2fx; "
                    "the text %s\n", a, b, b > 0 ? a / b : 0.0,
            spec->len == plain->len && !memcmp(spec->text, plain->text, spec->len)
                ? "is plain decoding's"
                : "differs from plain decoding's (sampling: another draw, same distribution)");
}

int sm_cmd_generate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"ckpt", required_argument, 0, 'c'},        {"prompt", required_argument, 0, 'p'},
        {"tokens", required_argument, 0, 'n'},      {"temperature", required_argument, 0, 't'},
        {"top-p", required_argument, 0, 'P'},       {"seed", required_argument, 0, 's'},
        {"no-cache", no_argument, 0, 'C'},          {"help", no_argument, 0, 'h'},
        {"speculative", no_argument, 0, 'S'},
        SM_CLI_ENGINE_OPTS,                         {0, 0, 0, 0}};
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
        case 'C': so.no_cache = 1; break;
        case 'S': so.speculative = 1; break;
        case 'h': printf("usage: starmoe generate %s\n", sm_generate_usage); return 0;
        default: return sm_cli_usage_error("generate", sm_generate_usage);
        }
    }
    if (!dir || optind < argc) return sm_cli_usage_error("generate", sm_generate_usage);
    if (sm_cli_engine_start(&e)) return 1;
    sm_error err = {{0}};
    sm_generated g, plain = {0};
    sm_sample_opts plain_so = so;
    plain_so.speculative = 0;
    int rc = sm_generate_text(dir, prompt, (int)n, &so, &g, &err);
    if (rc == 0 && so.speculative && sm_generate_text(dir, prompt, (int)n, &plain_so, &plain, &err))
        rc = -1, sm_generated_free(&g);
    sm_engine_shutdown();
    if (rc) {
        fprintf(stderr, "starmoe generate: %s\n", err.msg);
        return 1;
    }
    if (g.skipped)
        fprintf(stderr, "starmoe generate: skipped the newer checkpoints that do not verify "
                        "(%s); using %s\n", g.skipped, g.ckpt);
    sm_cli_generate_stats(&g.stats);
    if (so.speculative) sm_cli_speculative_stats(&g, &plain);
    fwrite(g.text, 1, g.len, stdout);
    printf("\n");
    sm_generated_free(&g);
    sm_generated_free(&plain);
    return 0;
}
