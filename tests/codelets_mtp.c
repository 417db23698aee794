/* Codelet cases of the Multi-Token Prediction glue ops (tasks/mtp.h): the first positions of
 * each sequence forward and backward (both accumulate flags), and the column concatenation
 * forward and backward. */
#include "tasks/mtp.h"
#include "tasks/mtp_kernels.h"
#include "tests/codelet_harness.h"

enum { B = 3, S = 7, N = 5, D = 4, T = 6, NA = 3, NB = 5 };

static void case_seq_head_fwd(fx *f)
{
    ct *dst = fx_rand(f, "dst", B * N * D), *src = fx_rand(f, "src", B * S * D);
    int rc = sm_insert_seq_head_fwd(&f->c, dst->t, src->t, B, S, N, D);
    sm_seq_head_fwd(RF(dst), RF(src), B, S, N, D);
    fx_check(f, "seq_head_fwd", rc, WANT("seq_head_fwd", 0, SM_W(dst->t), SM_R(src->t)));
}

static void case_seq_head_bwd(fx *f)
{
    for (int accumulate = 0; accumulate < 2; accumulate++) {
        ct *dsrc = fx_rand(f, "dsrc", B * S * D), *ddst = fx_rand(f, "ddst", B * N * D);
        int rc = sm_insert_seq_head_bwd(&f->c, dsrc->t, ddst->t, B, S, N, D, accumulate);
        sm_seq_head_bwd(RF(dsrc), RF(ddst), B, S, N, D, accumulate);
        fx_check(f, accumulate ? "seq_head_bwd accumulate" : "seq_head_bwd", rc,
                 WANT("seq_head_bwd", accumulate ? B * N * D : 0,
                      SM_ACC(dsrc->t, accumulate), SM_R(ddst->t)));
    }
}

static void case_concat_cols_fwd(fx *f)
{
    ct *out = fx_rand(f, "out", T * (NA + NB)), *a = fx_rand(f, "a", T * NA);
    ct *b = fx_rand(f, "b", T * NB);
    int rc = sm_insert_concat_cols_fwd(&f->c, out->t, a->t, b->t, T, NA, NB);
    sm_concat_cols_fwd(RF(out), RF(a), RF(b), T, NA, NB);
    fx_check(f, "concat_cols_fwd", rc,
             WANT("concat_cols_fwd", 0, SM_W(out->t), SM_R(a->t), SM_R(b->t)));
}

static void case_concat_cols_bwd(fx *f)
{
    ct *dout = fx_rand(f, "dout", T * (NA + NB)), *da = fx_rand(f, "da", T * NA);
    ct *db = fx_rand(f, "db", T * NB);
    int rc = sm_insert_concat_cols_bwd(&f->c, da->t, db->t, dout->t, T, NA, NB);
    sm_concat_cols_bwd(RF(da), RF(db), RF(dout), T, NA, NB);
    fx_check(f, "concat_cols_bwd", rc,
             WANT("concat_cols_bwd", 0, SM_R(dout->t), SM_W(da->t), SM_W(db->t)));
}

const helper_case codelet_cases_mtp[] = {
    HELPER_CASE(seq_head_fwd), HELPER_CASE(seq_head_bwd), HELPER_CASE(concat_cols_fwd),
    HELPER_CASE(concat_cols_bwd), {NULL, NULL}};
