/* Interleaving an overlapped slot's two chunks by block parts (schedulers/overlap.h). */
#include "schedulers/overlap.h"

/* The end of the segment of t[0..n) starting at `at`: the first task of another layer or
 * block part. */
static size_t sm_segment_end(const sm_task_meta *t, size_t n, size_t at)
{
    size_t e = at + 1;
    while (e < n && t[e].layer == t[at].layer && t[e].part == t[at].part) e++;
    return e;
}

void sm_overlap_interleave(const sm_task_meta *f, size_t nf, const sm_task_meta *b, size_t nb,
                           int64_t *order)
{
    size_t i = 0, j = 0;
    int64_t pos = 0;
    int backward = 1;  /* whose segment comes next */
    while (i < nf || j < nb) {
        if (backward ? j < nb : i >= nf) {
            for (size_t e = sm_segment_end(b, nb, j); j < e; j++) order[nf + j] = pos++;
        } else {
            for (size_t e = sm_segment_end(f, nf, i); i < e; i++) order[i] = pos++;
        }
        backward = !backward;
    }
}
