/* The interleaving policy of overlapped slots (schedulers/overlap.h) on hand-made chunks: the
 * positions are a permutation; each chunk keeps its order; segments (runs of one layer and one
 * block part) alternate, the backward's first, so a MoE layer pair comes out as combine(B),
 * attention(F), MLP(B), dispatch(F), dispatch(B), MLP(F), attention(B), combine(F); the longer
 * chunk's rest follows; an empty chunk leaves the other as built. */
#include <string.h>
#include "schedulers/overlap.h"
#include "tests/tap.h"

#define A SM_PART_ATTENTION
#define D SM_PART_DISPATCH
#define M SM_PART_MLP
#define C SM_PART_COMBINE

static sm_task_meta task(int layer, sm_block_part part, int micro)
{
    return (sm_task_meta){.op = "t", .layer = layer, .micro = micro, .part = part};
}

/* The merged sequence as a string: one letter per task (its part), upper case for the
 * forward chunk, lower case for the backward; checks that each chunk keeps its order. */
static int merged(const sm_task_meta *f, size_t nf, const sm_task_meta *b, size_t nb,
                  char *out)
{
    int64_t order[64];
    size_t n = nf + nb;
    int seen[64] = {0}, ok = 1;
    sm_overlap_interleave(f, nf, b, nb, order);
    for (size_t i = 0; i < n; i++) {
        if (order[i] < 0 || order[i] >= (int64_t)n || seen[order[i]]++) ok = 0;
        if (ok) out[order[i]] = "-ADMC"[i < nf ? f[i].part : b[i - nf].part] +
                                (i < nf ? 0 : 'a' - 'A');
    }
    for (size_t i = 1; i < nf; i++) ok &= order[i - 1] < order[i];
    for (size_t j = 1; j < nb; j++) ok &= order[nf + j - 1] < order[nf + j];
    out[n] = 0;
    return ok;
}

int main(void)
{
    char got[65];
    sm_task_meta f[] = {task(3, A, 5), task(3, A, 5), task(3, D, 5), task(3, M, 5),
                        task(3, M, 5), task(3, C, 5)};
    sm_task_meta b[] = {task(1, C, 0), task(1, M, 0), task(1, M, 0), task(1, D, 0),
                        task(1, A, 0), task(1, A, 0), task(1, A, 0)};
    int ok = merged(f, 6, b, 7, got);
    tap_ok(ok && !strcmp(got, "cAAmmDdMMaaaC"),
           "one layer pair: combine(B) attention(F) MLP(B) dispatch(F) dispatch(B) MLP(F) "
           "attention(B) combine(F) (%s)", got);

    /* two forward layers against one backward layer: the forward's rest follows */
    sm_task_meta f2[] = {task(0, A, 1), task(0, M, 1), task(1, A, 1), task(1, M, 1)};
    sm_task_meta b2[] = {task(2, C, 0), task(2, M, 0)};
    ok = merged(f2, 4, b2, 2, got);
    tap_ok(ok && !strcmp(got, "cAmMAM"), "the longer chunk's segments follow in order (%s)", got);

    /* a segment ends at a new layer even with the same part */
    sm_task_meta f3[] = {task(0, A, 1), task(1, A, 1)};
    sm_task_meta b3[] = {task(5, A, 0), task(4, A, 0)};
    ok = merged(f3, 2, b3, 2, got);
    tap_ok(ok && !strcmp(got, "aAaA"), "segments end at layer boundaries (%s)", got);

    ok = merged(f, 6, NULL, 0, got);
    tap_ok(ok && !strcmp(got, "AADMMC"), "no backward tasks: the forward as built (%s)", got);
    ok = merged(NULL, 0, b, 7, got);
    tap_ok(ok && !strcmp(got, "cmmdaaa"), "no forward tasks: the backward as built (%s)", got);
    return tap_done();
}
