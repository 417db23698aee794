/* safetensors files: a validating reader (every header field checked against the file, tensors
 * read with pread so a file truncated while open is an error, not a crash) and an atomic
 * writer. Format: u64 little-endian header length N, N bytes of JSON
 * {name: {dtype, shape, data_offsets:[begin,end]}, "__metadata__": {str: str}}, then the data. */
#ifndef STARMOE_SAFETENSORS_H
#define STARMOE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <starmoe/error.h>
#include "base/dtype.h"

#define SM_ST_MAX_DIMS 8

typedef struct sm_st_tensor {
    char *name;
    sm_dtype dtype;
    int ndim;
    int64_t shape[SM_ST_MAX_DIMS];
    uint64_t begin, end;         /* byte offsets inside the data section */
} sm_st_tensor;

typedef struct sm_st_file {
    char *path;
    int fd;                      /* open for pread; -1 when closed */
    size_t size;                 /* at open */
    size_t data_start;           /* 8 + header length */
    int ntensors;
    sm_st_tensor *tensors;       /* sorted by name */
    int nmeta;
    char **meta;                 /* "__metadata__" pairs: meta[2i] = key, meta[2i+1] = value */
} sm_st_file;

/* Opens and validates: header length within the file, JSON well formed, known dtypes, shapes
 * non-negative with a product that matches end-begin, offsets inside the data section, no
 * overlapping tensors, no duplicate names. Errors name the file and the tensor. */
int sm_st_open(sm_st_file *f, const char *path, sm_error *err);
void sm_st_close(sm_st_file *f);

/* Finds a tensor by name, NULL when absent. */
const sm_st_tensor *sm_st_find(const sm_st_file *f, const char *name);
/* Reads a tensor's raw bytes (end - begin of them) into dst; a file that has shrunk since it was
 * opened is an error naming the tensor and the bytes missing. */
int sm_st_read_raw(const sm_st_file *f, const sm_st_tensor *t, void *dst, sm_error *err);
/* The same into a malloc'd buffer; NULL with err set on failure. */
void *sm_st_load_raw(const sm_st_file *f, const sm_st_tensor *t, sm_error *err);
/* Reads tensor t converted to float32 (numel floats) into dst, whatever its dtype. */
int sm_st_convert_f32(const sm_st_file *f, const sm_st_tensor *t, float *dst, sm_error *err);
/* Element count of a tensor. */
int64_t sm_st_numel(const sm_st_tensor *t);
/* A "__metadata__" value, NULL when the key is absent. */
const char *sm_st_meta(const sm_st_file *f, const char *key);

/* Formats a shape as "[4, 8]" into buf (truncated to cap). */
void sm_st_format_shape(char *buf, size_t cap, int ndim, const int64_t *shape);
/* 0 when t has exactly shape (ndim, shape), else an error naming file, tensor and both shapes. */
int sm_st_check_shape(const sm_st_file *f, const sm_st_tensor *t, int ndim, const int64_t *shape,
                      sm_error *err);

/* Reads a tensor as float32 after checking its shape equals (ndim, shape): F32, F16, BF16, FP8
 * and integer types are converted. Errors name file, tensor, expected and found shapes. */
int sm_st_read_f32(const sm_st_file *f, const char *name, int ndim, const int64_t *shape,
                   float *dst, sm_error *err);
/* Reads an integer tensor (I32 or I64, values must fit int32) of the given shape. */
int sm_st_read_i32(const sm_st_file *f, const char *name, int ndim, const int64_t *shape,
                   int32_t *dst, sm_error *err);

/* Writer: collects tensors (data is copied), then writes the file atomically (temporary file in
 * the same folder, fsync, rename, fsync of the folder). */
typedef struct sm_st_writer sm_st_writer;
sm_st_writer *sm_st_writer_new(void);
int sm_st_writer_add(sm_st_writer *w, const char *name, sm_dtype dtype, int ndim,
                     const int64_t *shape, const void *data, sm_error *err);
/* Optional "__metadata__" string pair. */
int sm_st_writer_meta(sm_st_writer *w, const char *key, const char *value, sm_error *err);
int sm_st_writer_write(sm_st_writer *w, const char *path, sm_error *err);
void sm_st_writer_free(sm_st_writer *w);

#endif
