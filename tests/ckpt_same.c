/* ckpt_same DIR1 DIR2: whether two checkpoint folders hold the same tensors, bit for bit, in
 * both sets (model, optimizer), whatever their sharding: the same names, dtypes, shapes and
 * bytes. Exit 0 when they do, 1 naming the first difference, 2 when a folder cannot be read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "io/hf_model.h"

/* The tensor `name` of an opened set and its file. */
static const sm_st_tensor *find(const sm_hf_model *m, int i, const sm_st_file **f)
{
    *f = &m->files[m->file_of[i]];
    return sm_st_find(*f, m->names[i]);
}

static int same_tensor(const sm_hf_model *a, const sm_hf_model *b, int i, sm_error *err)
{
    const sm_st_file *fa, *fb;
    const sm_st_tensor *ta = find(a, i, &fa), *tb = find(b, i, &fb);
    if (ta->dtype != tb->dtype || ta->ndim != tb->ndim ||
        memcmp(ta->shape, tb->shape, ta->ndim * sizeof *ta->shape)) {
        printf("%s: dtype or shape differs\n", ta->name);
        return 1;
    }
    void *x = sm_st_load_raw(fa, ta, err), *y = x ? sm_st_load_raw(fb, tb, err) : NULL;
    int rc = !y ? 2 : memcmp(x, y, ta->end - ta->begin) != 0;
    if (rc == 1) printf("%s: values differ\n", ta->name);
    free(x);
    free(y);
    return rc;
}

static int same_set(const char *d1, const char *d2, const char *set, sm_error *err)
{
    sm_hf_model a, b;
    if (sm_hf_open_tensors(&a, d1, set, err)) return 2;
    if (sm_hf_open_tensors(&b, d2, set, err)) {
        sm_hf_close(&a);
        return 2;
    }
    int rc = 0;
    if (a.nnames != b.nnames) {
        printf("%s: %d tensors against %d\n", set, a.nnames, b.nnames);
        rc = 1;
    }
    for (int i = 0; i < a.nnames && rc == 0; i++) {
        if (strcmp(a.names[i], b.names[i]) != 0) {
            printf("%s: tensor %s against %s\n", set, a.names[i], b.names[i]);
            rc = 1;
        } else {
            rc = same_tensor(&a, &b, i, err);
        }
    }
    sm_hf_close(&a);
    sm_hf_close(&b);
    return rc;
}

int main(int argc, char **argv)
{
    sm_error err = {0};
    if (argc != 3) {
        fprintf(stderr, "usage: ckpt_same DIR1 DIR2\n");
        return 2;
    }
    int rc = same_set(argv[1], argv[2], "model", &err);
    if (rc == 0) rc = same_set(argv[1], argv[2], "optimizer", &err);
    if (rc == 2) fprintf(stderr, "ckpt_same: %s\n", err.msg);
    return rc;
}
