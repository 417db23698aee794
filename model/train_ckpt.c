/* Checkpoints of a training job: weights under their Hugging Face names, AdamW moments, the
 * tokenizer (from memory), and the counters and data position that make a resumed run continue
 * bit for bit. */
#include "model/trainer.h"

#include <stdio.h>
#include <stdlib.h>

/* The model's parameters (or the optimizer's moments) as checkpoint tensors. */
static sm_ckpt_tensor *sm_weight_list(sm_trainer *t, int optim, int *n)
{
    *n = optim ? sm_optimizer_nstates(t->opt) : sm_model_nparams(t->m);
    sm_ckpt_tensor *v = calloc(*n ? *n : 1, sizeof *v);
    for (int i = 0; v && i < *n; i++) {
        if (optim) {
            v[i].name = sm_optimizer_state_name(t->opt, i);
            v[i].data = sm_optimizer_state_data(t->opt, i, v[i].shape, &v[i].ndim);
        } else {
            v[i].name = sm_model_param_name(t->m, i);
            v[i].ndim = sm_model_param_shape(t->m, i, v[i].shape);
            v[i].data = sm_model_param_data(t->m, i);
        }
    }
    return v;
}

int sm_trainer_save(sm_trainer *t, sm_error *err)
{
    int nw, no, rc = -1;
    sm_ckpt_tensor *w = sm_weight_list(t, 0, &nw), *opt = sm_weight_list(t, 1, &no);
    char *cfg = sm_run_config_to_text(&t->rc, err);
    sm_ckpt_state st = {.rng = {(uint64_t)t->rc.train.seed}, .epoch = t->train_rd.epoch,
                        .cursor = t->train_rd.cursor, .tokens = t->tokens,
                        .loss_ema = t->loss_ema, .bad_steps = t->bad_steps,
                        .optim_steps = sm_optimizer_steps(t->opt),
                        .tokenizer_vocab = sm_tokenizer_vocab_size(t->tok)};
    sm_ckpt_file tok = {"tokenizer.bpe", t->tok_text, t->tok_len};
    char saved[1400];
    if (w && opt && cfg)
        rc = sm_ckpt_save(t->out, t->step, &t->rc.model, cfg, w, nw, opt, no, &st, &tok,
                          t->rc.checkpoint.keep, saved, sizeof saved, err);
    else if (!cfg)
        rc = -1;
    else
        rc = sm_fail(err, "out of memory for the checkpoint");
    if (rc == 0) printf("checkpoint step %lld: %s\n", (long long)t->step, saved);
    free(w);
    free(opt);
    free(cfg);
    return rc;
}

int sm_trainer_restore(sm_trainer *t, const char *ckpt_dir, sm_error *err)
{
    int nw, no, rc = -1;
    sm_ckpt_state st;
    sm_ckpt_tensor *w = sm_weight_list(t, 0, &nw), *opt = sm_weight_list(t, 1, &no);
    if (!w || !opt) rc = sm_fail(err, "out of memory for the checkpoint");
    else if (sm_ckpt_load_state(ckpt_dir, &st, err) == 0 &&
             sm_resume_check_state(t, &st, ckpt_dir, err) == 0 &&
             sm_ckpt_load_tensors(ckpt_dir, "model.safetensors", w, nw, err) == 0 &&
             sm_ckpt_load_tensors(ckpt_dir, "optimizer.safetensors", opt, no, err) == 0) {
        t->step = st.step;
        t->tokens = st.tokens;
        t->loss_ema = st.loss_ema;
        t->bad_steps = st.bad_steps;
        sm_optimizer_set_steps(t->opt, st.optim_steps);
        sm_reader_seek(&t->train_rd, st.epoch, st.cursor);
        rc = 0;
    }
    free(w);
    free(opt);
    return rc;
}
