/* Text generation from a checkpoint: its tokenizer encodes the prompt, its model samples the
 * continuation (without the latent cache, in a window of its run config's sequence length),
 * and the ids are decoded back to whole UTF-8 characters. A run folder resolves to its newest
 * checkpoint that verifies, and the caller learns which one that was and what was skipped on
 * the way. */
#include <starmoe/drivers.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/aprintf.h"
#include "data/tokenizer.h"
#include "io/checkpoint.h"
#include "io/run_config.h"

/* A checkpoint folder (it has a manifest) is used when it verifies; a run folder resolves to
 * its newest complete checkpoint, with the newer ones skipped (and why) in g->skipped. */
static int sm_resolve_ckpt(const char *dir, sm_generated *g, sm_error *err)
{
    char *manifest = sm_aprintf("%s/manifest.json", dir);
    size_t cap = strlen(dir) + 64;
    if (!manifest || !(g->ckpt = malloc(cap))) {
        free(manifest);
        return sm_fail(err, "%s: out of memory", dir);
    }
    int is_ckpt = access(manifest, F_OK) == 0;
    free(manifest);
    if (is_ckpt) {
        strcpy(g->ckpt, dir);
        return sm_ckpt_verify(dir, err);
    }
    if (sm_ckpt_latest(dir, g->ckpt, cap, err) != 0) return -1;
    if (err->msg[0] && !(g->skipped = strdup(err->msg)))
        return sm_fail(err, "%s: out of memory", dir);
    sm_error_clear(err);
    return 0;
}

int sm_generate_text(const char *dir, const char *prompt, int max_new, const sm_sample_opts *so,
                     sm_generated *g, sm_error *err)
{
    sm_ckpt_state st;
    sm_run_config rc;
    char *cfg = NULL, *tok_path = NULL;
    int32_t *ids = NULL, *out = NULL;
    size_t nids = 0;
    int nout = 0, ret = -1;
    sm_tokenizer *tok = NULL;
    sm_model *m = NULL;
    memset(g, 0, sizeof *g);
    if (sm_resolve_ckpt(dir, g, err) || sm_ckpt_load_state(g->ckpt, &st, err) ||
        !(cfg = sm_ckpt_load_run_config(g->ckpt, err)) ||
        sm_run_config_load_text(&rc, cfg, g->ckpt, NULL, 0, err))
        goto out;
    if (!(tok_path = sm_ckpt_tokenizer_path(g->ckpt, &st, err)) ||
        !(tok = sm_tokenizer_load(tok_path, err)) ||
        sm_ckpt_check_tokenizer(&st, tok_path, sm_tokenizer_vocab_size(tok), err) ||
        sm_tokenizer_encode(tok, prompt, strlen(prompt), &ids, &nids, err) ||
        !(m = sm_model_open_hf(g->ckpt, err)))
        goto out;
    sm_sample_opts o = *so;
    o.stop_token = o.start_token = sm_tokenizer_eot(tok);
    if (sm_generate_ids(m, ids, (int)nids, max_new, rc.train.seq_len, &o, &out, &nout,
                        &g->stats, err) ||
        !(g->text = sm_tokenizer_decode(tok, out, nout, &g->len, err)))
        goto out;
    /* a sample can stop inside a multi-byte character: keep whole characters only */
    for (int cut = 0; cut < 3 && g->len > 0 && !sm_utf8_valid(g->text, g->len); cut++)
        g->text[--g->len] = '\0';
    ret = 0;
out:
    if (ret) sm_generated_free(g);
    free(out);
    free(ids);
    free(tok_path);
    free(cfg);
    sm_model_free(m);
    sm_tokenizer_free(tok);
    return ret;
}

void sm_generated_free(sm_generated *g)
{
    free(g->text);
    free(g->ckpt);
    free(g->skipped);
    memset(g, 0, sizeof *g);
}
