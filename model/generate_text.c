/* Text generation from a checkpoint: its tokenizer encodes the prompt, its model samples the
 * continuation in a window of its run config's sequence length, and the ids are decoded back
 * to whole UTF-8 characters. */
#include <starmoe/drivers.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "data/tokenizer.h"
#include "io/checkpoint.h"
#include "io/run_config.h"

/* A run folder resolves to its newest complete checkpoint. */
static int sm_resolve_ckpt(const char *dir, char *path, size_t cap, sm_error *err)
{
    if (sm_ckpt_verify(dir, err) == 0) {
        snprintf(path, cap, "%s", dir);
        return 0;
    }
    return sm_ckpt_latest(dir, path, cap, err) == 0 ? 0 : -1;
}

int sm_generate_text(const char *dir, const char *prompt, int max_new, const sm_sample_opts *so,
                     char **text, size_t *len, sm_error *err)
{
    sm_ckpt_state st;
    sm_run_config rc;
    char ckpt[1400], tok_path[1700];
    char *cfg = NULL;
    int32_t *ids = NULL, *out = NULL;
    size_t nids = 0;
    int nout = 0, ret = -1;
    sm_tokenizer *tok = NULL;
    sm_model *m = NULL;
    *text = NULL;
    if (sm_resolve_ckpt(dir, ckpt, sizeof ckpt, err) || sm_ckpt_load_state(ckpt, &st, err) ||
        !(cfg = sm_ckpt_load_run_config(ckpt, err)) ||
        sm_run_config_load_text(&rc, cfg, ckpt, NULL, 0, err))
        goto out;
    snprintf(tok_path, sizeof tok_path, "%s/%s", ckpt, st.tokenizer);
    if (!(tok = sm_tokenizer_load(tok_path, err)) ||
        sm_tokenizer_encode(tok, prompt, strlen(prompt), &ids, &nids, err) ||
        !(m = sm_model_open_hf(ckpt, err)))
        goto out;
    sm_sample_opts o = *so;
    o.stop_token = o.start_token = sm_tokenizer_eot(tok);
    if (sm_generate_ids(m, ids, (int)nids, max_new, rc.train.seq_len, &o, &out, &nout, err) ||
        !(*text = sm_tokenizer_decode(tok, out, nout, len, err)))
        goto out;
    /* a sample can stop inside a multi-byte character: keep whole characters only */
    for (int cut = 0; cut < 3 && *len > 0 && !sm_utf8_valid(*text, *len); cut++)
        (*text)[--*len] = '\0';
    ret = 0;
out:
    free(out);
    free(ids);
    free(cfg);
    sm_model_free(m);
    sm_tokenizer_free(tok);
    return ret;
}
