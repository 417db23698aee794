/* A Hugging Face model folder: config.json plus model.safetensors or the shards listed in
 * model.safetensors.index.json. Knows formats, not models: callers ask for tensors by name and
 * expected shape. FP8 (F8_E4M3) weights are dequantised with their `<name>_scale_inv` sibling
 * (`weight_scale_inv`, F32, blocks of config fp8_block, ceil division at the edges). */
#ifndef STARMOE_HF_MODEL_H
#define STARMOE_HF_MODEL_H

#include <stdint.h>
#include <starmoe/config.h>
#include "io/safetensors.h"

typedef struct sm_hf_model {
    char *dir;
    sm_config config;
    int nfiles;
    sm_st_file *files;
    int nnames;                  /* tensor name -> file index, sorted by name */
    char **names;
    int *file_of;
} sm_hf_model;

/* Opens DIR: reads and validates config.json, then the index (if any) and every shard it names
 * (a name listed in the index but missing from its shard is an error). */
int sm_hf_open(sm_hf_model *m, const char *dir, sm_error *err);
/* Opens the tensors stored as BASE.safetensors, or as the shards BASE.safetensors.index.json
 * names, in DIR (a checkpoint's "optimizer" set); no config (m->config is zero). */
int sm_hf_open_tensors(sm_hf_model *m, const char *dir, const char *base, sm_error *err);
void sm_hf_close(sm_hf_model *m);

/* 1 when the folder holds a tensor of that name. */
int sm_hf_has(const sm_hf_model *m, const char *name);

/* Loads tensor `name` as float32 into dst after checking the shape; F8_E4M3 weights are
 * dequantised with `name` + "_scale_inv" (an FP8 weight without it is an error, as is a scale of
 * the wrong shape or with a non-finite value). F32, BF16 and F16 are the other weight dtypes:
 * any other (integers, F64, F8_E5M2, BOOL) is refused rather than converted. Errors name the
 * file and the tensor. */
int sm_hf_load_f32(const sm_hf_model *m, const char *name, int ndim, const int64_t *shape,
                   float *dst, sm_error *err);

/* Writes DIR/BASE.safetensors.index.json over the n shard files (names inside DIR), as Hugging
 * Face writes it: {"metadata": {"total_size": bytes}, "weight_map": {tensor: shard file}}; a
 * tensor in two shards is an error. */
int sm_hf_write_index(const char *dir, const char *base, const char *const *shards, int n,
                      sm_error *err);

#endif
