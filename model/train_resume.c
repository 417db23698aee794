/* What a resume checks before a run continues. The settings: the model, train and data sections
 * make the run what it is (shapes, schedule, seed, data order), so a command that asks for other
 * values there is refused, naming each field with both values; the other sections (eval,
 * checkpoint, log, engine), data.path (a corpus that moved), the number of MTP modules and
 * train.optimizer_state_dtype (the moments load converted, model/train_ckpt.c) take the
 * command's values, and each such change is printed. The state: CRCs prove that a checkpoint's
 * files are intact, not that they belong together, so its step must lie in the schedule, its
 * tokenizer must have the vocabulary the run trained with, and its data position must be where
 * that many steps end on this corpus. */
#include "model/trainer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "io/run_config_diff.h"

/* 1 for the fields a resumed run must keep. The MTP depth may change: the main model goes on,
 * modules are dropped, or added freshly initialised; so may the moments' dtype (both in
 * model/train_ckpt.c). */
static int sm_fixed_field(const char *field)
{
    return strcmp(field, "data.path") != 0 && strcmp(field, "model.num_nextn_predict_layers") &&
           strcmp(field, "train.optimizer_state_dtype") &&
           (strncmp(field, "model.", 6) == 0 || strncmp(field, "train.", 6) == 0 ||
            strncmp(field, "data.", 5) == 0);
}

#define SM_CHANGES_NAMED 4

static int sm_refuse(const sm_config_change *ch, int n, const char *ckpt, sm_error *err)
{
    char list[sizeof err->msg / 2] = "", more[32] = "";
    int nfixed = 0;
    for (int i = 0; i < n; i++) {
        if (!sm_fixed_field(ch[i].field) || nfixed++ >= SM_CHANGES_NAMED) continue;
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s%s is %s here but %s in the run",
                 len ? "; " : "", ch[i].field, ch[i].after, ch[i].before);
    }
    if (nfixed == 0) return 0;
    if (nfixed > SM_CHANGES_NAMED)
        snprintf(more, sizeof more, "; and %d more", nfixed - SM_CHANGES_NAMED);
    return sm_fail(err, "cannot resume %s with other settings: %s%s. A run keeps its model, "
                        "train and data settings (its seed included): resume with the run's "
                        "own (leave them out of --config, --set and --seed), or start a new run "
                        "in another run folder", ckpt, list, more);
}

int sm_resume_config(sm_trainer *t, const char *ckpt, sm_error *err)
{
    sm_run_config run;
    sm_config_change *ch = NULL;
    char *text = sm_ckpt_load_run_config(ckpt, err);
    int rc = text ? sm_run_config_load_text(&run, text, ckpt, NULL, 0, err) : -1;
    free(text);
    if (rc) return -1;
    /* a command that names no corpus goes on with the run's */
    if (!t->rc.data.path[0]) memcpy(t->rc.data.path, run.data.path, sizeof run.data.path);
    int n = sm_run_config_diff(&run, &t->rc, &ch, err);
    if (n < 0) return -1;
    rc = sm_refuse(ch, n, ckpt, err);
    for (int i = 0; rc == 0 && i < n; i++)
        printf("resume: %s is %s (the run had %s)\n", ch[i].field, ch[i].after, ch[i].before);
    sm_config_changes_free(ch, n);
    return rc;
}

int sm_resume_check_state(const sm_trainer *t, const sm_ckpt_state *st, const char *ckpt,
                          sm_error *err)
{
    const sm_train_config *tr = &t->rc.train;
    const sm_batch_reader *r = &t->train_rd;
    if (st->step < 0 || st->step > tr->steps)
        return sm_fail(err, "%s/state.json: step %lld lies outside the run's schedule of "
                            "train.steps %d (inconsistent checkpoint)", ckpt,
                       (long long)st->step, tr->steps);
    if (sm_ckpt_check_tokenizer(st, t->tok_path, sm_tokenizer_vocab_size(t->tok), err))
        return -1;
    uint64_t used = (uint64_t)st->step * (uint64_t)tr->batch_size;
    if (st->cursor >= r->nwin)
        return sm_fail(err, "%s/state.json: data cursor %llu is beyond the corpus's %zu "
                            "training sequences (inconsistent checkpoint, or another corpus)",
                       ckpt, (unsigned long long)st->cursor, r->nwin);
    if (st->epoch != used / r->nwin || st->cursor != used % r->nwin)
        return sm_fail(err, "%s/state.json: data position epoch %llu cursor %llu, but %lld "
                            "steps of %d sequences over this corpus's %zu end at epoch %llu "
                            "cursor %llu (another corpus, or an inconsistent checkpoint)", ckpt,
                       (unsigned long long)st->epoch, (unsigned long long)st->cursor,
                       (long long)st->step, tr->batch_size, r->nwin,
                       (unsigned long long)(used / r->nwin), (unsigned long long)(used % r->nwin));
    return 0;
}
