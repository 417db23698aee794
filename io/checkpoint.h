/* Checkpoints of a training run. RUN_DIR/step-NNNNNN/ holds
 *   model.safetensors      the weights under their Hugging Face names, F32, and
 *   config.json            the Hugging Face model config: `starmoe eval --model` reads the folder;
 *   optimizer.safetensors  the AdamW moments, by the caller's names, F32 or BF16 (as the
 *                          optimizer keeps them);
 *                          (both sets of tensors, when several processes write them, are
 *                          sharded as Hugging Face shards them: model-00001-of-00004.safetensors
 *                          ... and model.safetensors.index.json, optimizer-*-of-* likewise)
 *   state.json             step, RNG words, data reader epoch/cursor, counters, the tokenizer
 *                          file name and vocabulary size, and the run config (u64 values as
 *                          decimal strings);
 *   <tokenizer file>       the run's tokenizer (bytes given by the caller), when it has one;
 *   manifest.json          written last: every other file with its size and CRC-32C.
 * A folder is complete exactly when its manifest verifies. Saving is crash-safe: everything is
 * written (and fsynced) into RUN_DIR/.tmp-step-NNNNNN-<pid>, which is then renamed into place;
 * a kill at any moment leaves the earlier checkpoints intact and loadable. A checkpoint is
 * self-sufficient: nothing in it refers to another folder (pruning may delete any of them). */
#ifndef STARMOE_CHECKPOINT_H
#define STARMOE_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <starmoe/config.h>
#include <starmoe/error.h>
#include "base/dtype.h"

#define SM_CKPT_MAX_DIMS 4

/* One F32 or BF16 tensor. Saving reads data and writes it in its dtype; sm_ckpt_load_tensors
 * writes the values through data (cast from const), so the buffers given to it must be
 * writable. Loading converts: a BF16 tensor of the file into F32 data widens exactly, an F32
 * one into BF16 data rounds to nearest even, BF16 into BF16 is bit for bit. */
typedef struct sm_ckpt_tensor {
    const char *name;
    int ndim;
    int64_t shape[SM_CKPT_MAX_DIMS];
    const void *data;            /* float, or uint16_t BF16 bits */
    int optional;                /* loading: a checkpoint without it leaves data as it is */
    sm_dtype dtype;              /* SM_F32 (the zero default) or SM_BF16 */
} sm_ckpt_tensor;

/* The training state besides tensors. */
typedef struct sm_ckpt_state {
    int64_t step;                /* filled by load; save records its `step` argument */
    uint64_t rng[4];             /* RNG state words */
    uint64_t epoch, cursor;      /* data reader position */
    int64_t tokens;              /* training tokens seen */
    double loss_ema;             /* smoothed training loss; must be finite */
    int bad_steps;               /* consecutive non-finite steps so far */
    int64_t optim_steps;         /* optimizer steps applied (AdamW's bias-correction count) */
    char tokenizer[256];         /* filled by load: the tokenizer copy's file name, "" = none */
    int tokenizer_vocab;         /* the tokenizer's vocabulary size; 0: none, or not recorded
                                    (checkpoints written before it was) */
} sm_ckpt_state;

/* A file a checkpoint carries besides its own: its name there (a plain file name, not one of
 * the checkpoint's files) and its bytes. */
typedef struct sm_ckpt_file {
    const char *name;
    const void *data;
    size_t size;
} sm_ckpt_file;

/* Saving in parts, when each of several processes holds a part of the tensors (the caller
 * orders the calls across processes: begin, every shard, then finish):
 * sm_ckpt_save_begin (one process) removes stale .tmp-* folders and creates the private folder
 * RUN_DIR/.tmp-step-NNNNNN-JOB, its path to tmp; sm_ckpt_save_shard (each writer) writes shard
 * `shard` of nshards of both tensor sets into it; sm_ckpt_save_finish (the process that began)
 * writes the index of each set over the shards found there (a tensor in two shards is an
 * error), config.json, the tokenizer, state.json and the manifest of every file, then installs
 * and prunes as sm_ckpt_save does. After a failure, sm_ckpt_save_abandon removes the private
 * folder (or the next save does). */
int sm_ckpt_save_begin(const char *run_dir, int64_t step, const char *job, char *tmp,
                       size_t cap, sm_error *err);
/* The private folder's path sm_ckpt_save_begin creates (for the other writers). */
int sm_ckpt_tmp_path(const char *run_dir, int64_t step, const char *job, char *tmp, size_t cap,
                     sm_error *err);
int sm_ckpt_save_shard(const char *tmp, int shard, int nshards, const sm_ckpt_tensor *weights,
                       int nweights, const sm_ckpt_tensor *optim, int noptim, sm_error *err);
int sm_ckpt_save_finish(const char *run_dir, const char *tmp, int64_t step, int nshards,
                        const sm_config *model_cfg, const char *run_config_json,
                        const sm_ckpt_state *st, const sm_ckpt_file *tokenizer, int keep,
                        char *saved_path, size_t cap, sm_error *err);
void sm_ckpt_save_abandon(const char *tmp);

/* Writes RUN_DIR/step-NNNNNN (NNNNNN = step, at least 6 digits) as described above, creating
 * RUN_DIR if needed; the caller owns RUN_DIR (one saver at a time: the trainer holds the run
 * folder's lock). First removes the .tmp-* folders that earlier saves (killed or failed) left in
 * RUN_DIR. A folder of the same step is replaced (it is moved aside first: a
 * kill at that moment loses it, never another step's folder). Once the new folder is in
 * place, folders of later steps (an abandoned run after a resume) are removed, then all but the
 * `keep` newest. run_config_json: the run config as JSON text (sm_run_config_to_text), or NULL.
 * tokenizer: NULL when the run has none. optim may be empty (noptim 0). The path of
 * the new folder goes to saved_path (when not NULL). Tensors are copied while a file is written:
 * peak extra memory is the larger of the two tensor sets. */
int sm_ckpt_save(const char *run_dir, int64_t step, const sm_config *model_cfg,
                 const char *run_config_json, const sm_ckpt_tensor *weights, int nweights,
                 const sm_ckpt_tensor *optim, int noptim, const sm_ckpt_state *st,
                 const sm_ckpt_file *tokenizer, int keep, char *saved_path, size_t cap,
                 sm_error *err);

/* The newest complete checkpoint of RUN_DIR: step-* folders from the highest step down, the first
 * whose manifest verifies. Returns 0 and its path (err->msg then lists the folders skipped and
 * why, empty when none was); 1 when RUN_DIR (missing or not) holds no complete checkpoint, with
 * the reasons in err; -1 when RUN_DIR cannot be read. .tmp-* folders are never considered. */
int sm_ckpt_latest(const char *run_dir, char *path, size_t cap, sm_error *err);

/* Checks the manifest against the files: every listed file present with its size and CRC-32C
 * (a flipped byte or a truncated file is an error naming the file, and for a CRC the expected
 * and the found value), config.json, state.json and both tensor sets (a file or an index)
 * listed, and, for a folder named step-NNNNNN, the
 * manifest's step equal to NNNNNN. */
int sm_ckpt_verify(const char *ckpt_dir, sm_error *err);

/* Reads state.json (call sm_ckpt_verify first; sm_ckpt_latest did). For a folder named
 * step-NNNNNN, a state whose step is not NNNNNN is an error (an inconsistent checkpoint). */
int sm_ckpt_load_state(const char *ckpt_dir, sm_ckpt_state *st, sm_error *err);
/* The path of the checkpoint's tokenizer copy (malloc'd); NULL with err set when the state names
 * none or memory runs out. */
char *sm_ckpt_tokenizer_path(const char *ckpt_dir, const sm_ckpt_state *st, sm_error *err);
/* 0 when a tokenizer of `vocab` tokens (read from tok_path) is the one the state records (or
 * the state, written before it did, records none); else -1 naming both sizes. */
int sm_ckpt_check_tokenizer(const sm_ckpt_state *st, const char *tok_path, int vocab,
                            sm_error *err);
/* The run config stored in state.json as indented JSON text (for sm_run_config_load_text);
 * malloc'd, free() it; NULL with err set when absent or unreadable. */
char *sm_ckpt_load_run_config(const char *ckpt_dir, sm_error *err);
/* Loads each dst tensor by name from tensor set `set` ("model" or "optimizer": one file or
 * shards with an index, whatever number of processes wrote them) after checking its shape;
 * errors name the file and the tensor. Returns how many optional tensors the checkpoint does
 * not have (0 when it has them all), -1 on error. */
int sm_ckpt_load_tensors(const char *ckpt_dir, const char *set, const sm_ckpt_tensor *dst,
                         int n, sm_error *err);

/* The dtype tensor `name` of set `set` is stored in; errors name the folder and the tensor. */
int sm_ckpt_tensor_dtype(const char *ckpt_dir, const char *set, const char *name, sm_dtype *dtype,
                         sm_error *err);

/* CRC-32C (Castagnoli), chainable: sm_crc32c(sm_crc32c(0, a, na), b, nb) = CRC of a then b. */
uint32_t sm_crc32c(uint32_t crc, const void *buf, size_t n);

#endif
