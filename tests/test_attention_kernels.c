/* Tests of the MLA kernels (tasks/attention_kernels.c): YaRN frequency and softmax-scale test
 * vectors of docs/model.md (§1.2 and §4), the interleaved RoPE pairing on a hand case, the
 * forward pass against a double-precision reference written here, causality, finite-difference
 * checks of the backward pass, the backward's bitwise recomputation of the probabilities, and
 * bitwise determinism. */
#include "tasks/attention_kernels.h"
#include "tests/tap.h"
#include "tests/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { MAXW = 256 }; /* widest head or sequence the reference loop handles */

/* max over j in [j0, j1) of |theta[j] / plain[j] - want| */
static double ratio_err(const double *theta, const double *plain, int j0, int j1, double want)
{
    double worst = 0;
    for (int j = j0; j < j1; j++) worst = fmax(worst, fabs(theta[j] / plain[j] - want));
    return worst;
}

static void test_yarn_tiny(void)
{
    sm_yarn y = {.factor = 4, .original_max_position_embeddings = 32, .beta_fast = 32,
                 .beta_slow = 1, .mscale_all_dim = 1};
    sm_yarn identity = y;
    identity.factor = 1;
    double plain[8], th[8], th1[8];
    sm_rope_freqs(plain, 16, 10000, NULL);
    sm_rope_freqs(th, 16, 10000, &y);
    sm_rope_freqs(th1, 16, 10000, &identity);
    tap_close(plain[1], pow(10000, -2.0 / 16), 1e-15, "plain theta_1 = base^(-2/dr)");
    tap_close(th[0] / plain[0], 1.0, 1e-12, "tiny yarn ratio j=0");
    tap_close(th[1] / plain[1], 0.625, 1e-12, "tiny yarn ratio j=1");
    tap_close(ratio_err(th, plain, 2, 8, 0.25), 0, 1e-12, "tiny yarn ratio 1/factor for j>=2");
    tap_ok(memcmp(th1, plain, sizeof plain) == 0, "yarn with factor 1 is the identity");
    tap_close(sm_mla_softmax_scale(48, &y), 0.18713, 5e-6, "tiny yarn softmax scale");
    tap_close(sm_mla_softmax_scale(48, NULL), 0.14434, 5e-6, "tiny plain softmax scale");
    tap_close(sm_mla_softmax_scale(48, &identity), 1 / sqrt(48.0), 1e-15,
              "factor 1 leaves the softmax scale plain");
}

static void test_yarn_671b(void)
{
    sm_yarn y = {.factor = 40, .original_max_position_embeddings = 4096, .beta_fast = 32,
                 .beta_slow = 1, .mscale_all_dim = 1};
    double plain[32], th[32];
    sm_rope_freqs(plain, 64, 10000, NULL);
    sm_rope_freqs(th, 64, 10000, &y);
    tap_close(ratio_err(th, plain, 0, 11, 1.0), 0, 1e-12, "671B yarn ratio 1 for j<=10");
    tap_close(th[11] / plain[11], 0.925, 1e-12, "671B yarn ratio j=11");
    tap_close(th[16] / plain[16], 0.55, 1e-12, "671B yarn ratio j=16");
    tap_close(th[22] / plain[22], 0.10, 1e-12, "671B yarn ratio j=22");
    tap_close(ratio_err(th, plain, 23, 32, 0.025), 0, 1e-12, "671B yarn ratio 1/40 for j>=23");
    tap_close(sm_mla_softmax_scale(192, &y), 0.1352338, 5e-8, "671B yarn softmax scale");
    tap_close(sm_mla_softmax_scale(192, NULL), pow(192, -0.5), 1e-15, "plain scale dqk^-0.5");
}

static void test_rope_table(void)
{
    double th[3];
    float c[5 * 3], s[5 * 3];
    sm_rope_freqs(th, 6, 100, NULL);
    sm_rope_table(c, s, th, 5, 6);
    double worst = 0;
    for (int p = 0; p < 5; p++)
        for (int j = 0; j < 3; j++)
            worst = fmax(worst, fmax(fabs(c[p * 3 + j] - cos(p * th[j])),
                                     fabs(s[p * 3 + j] - sin(p * th[j]))));
    tap_close(worst, 0, 1e-7, "rope table = cos/sin(s * theta_j)");
}

/* Two heads, one query at position 1 looking at key 0 (position 0, not rotated) and key 1
 * (zero): head 0's q_rope (1,0,0,0) against k_rope (0,1,0,1) scores sin(theta_0) only when
 * x[0] pairs with x[1]; head 1's (0,0,1,0) scores sin(theta_1) only when x[2] pairs with
 * x[3]. A half-split rotation would score 0 for both. Key 0's value is 1, key 1's 0, so the
 * query's output is its probability of key 0. */
static void test_rope_interleaved(void)
{
    sm_mla_dims m = {.B = 1, .S = 2, .H = 2, .dn = 1, .dr = 4, .dv = 1, .dc = 1, .scale = 1};
    float q[2 * 2 * 5] = {0}, kv[2 * 5] = {0}, kvu[2 * 2 * 2] = {0}, o[2 * 2];
    kvu[0 * 4 + 0 * 2 + 1] = kvu[0 * 4 + 1 * 2 + 1] = 1;
    q[1 * 10 + 0 * 5 + 1 + 0] = 1;
    q[1 * 10 + 1 * 5 + 1 + 2] = 1;
    kv[0 * 5 + 1 + 1] = 1;
    kv[0 * 5 + 1 + 3] = 1;
    double th[2];
    float c[2 * 2], s[2 * 2];
    sm_rope_freqs(th, 4, 10000, NULL);
    sm_rope_table(c, s, th, 2, 4);
    sm_mla_attn_fwd(o, q, kv, kvu, c, s, &m);
    for (int h = 0; h < 2; h++) {
        double a = sin(th[h]); /* score of key 0; key 1 scores 0 */
        tap_close(o[1 * 2 + h], 1 / (1 + exp(-a)), 1e-6, h ? "interleaved pair (x2,x3)"
                                                           : "interleaved pair (x0,x1)");
    }
}

/* y = x rotated by pos * theta on interleaved pairs, in double. */
static void ref_rope(double *y, const float *x, int dr, int pos, const double *theta)
{
    for (int j = 0; j < dr / 2; j++) {
        double c = cos(pos * theta[j]), s = sin(pos * theta[j]);
        y[2 * j] = x[2 * j] * c - x[2 * j + 1] * s;
        y[2 * j + 1] = x[2 * j] * s + x[2 * j + 1] * c;
    }
}

/* Per-head k_h[t] = [k_nope | rope(k_rope)] of token t. */
static void ref_key(double *k, const float *kv, const float *kvu, int t, int pos, int h,
                    const double *theta, const sm_mla_dims *m)
{
    const float *kn = kvu + (size_t)t * m->H * (m->dn + m->dv) + (size_t)h * (m->dn + m->dv);
    for (int i = 0; i < m->dn; i++) k[i] = kn[i];
    ref_rope(k + m->dn, kv + (size_t)t * (m->dc + m->dr) + m->dc, m->dr, pos, theta);
}

/* Plain double-precision MLA attention: explicit per-head concatenation, causal softmax, P.V. */
static void ref_attn(double *o, const float *q, const float *kv, const float *kvu,
                     const double *theta, const sm_mla_dims *m)
{
    int dqk = m->dn + m->dr, ldkvu = m->H * (m->dn + m->dv);
    for (int b = 0; b < m->B; b++)
        for (int h = 0; h < m->H; h++)
            for (int s = 0; s < m->S; s++) {
                int ts = b * m->S + s;
                const float *qh = q + (size_t)ts * m->H * dqk + (size_t)h * dqk;
                double qc[MAXW], k[MAXW], sc[MAXW], prow[MAXW], mx = -INFINITY, sum = 0;
                for (int i = 0; i < m->dn; i++) qc[i] = qh[i];
                ref_rope(qc + m->dn, qh + m->dn, m->dr, s, theta);
                for (int t = 0; t <= s; t++) {
                    ref_key(k, kv, kvu, b * m->S + t, t, h, theta, m);
                    sc[t] = 0;
                    for (int i = 0; i < dqk; i++) sc[t] += qc[i] * k[i];
                    sc[t] *= m->scale;
                    mx = fmax(mx, sc[t]);
                }
                for (int t = 0; t <= s; t++) sum += (sc[t] = exp(sc[t] - mx));
                double *orow = o + (size_t)ts * m->H * m->dv + (size_t)h * m->dv;
                for (int t = 0; t < m->S; t++) prow[t] = t <= s ? sc[t] / sum : 0;
                for (int j = 0; j < m->dv; j++) {
                    orow[j] = 0;
                    for (int t = 0; t <= s; t++)
                        orow[j] += prow[t] * kvu[(size_t)(b * m->S + t) * ldkvu +
                                                 (size_t)h * (m->dn + m->dv) + m->dn + j];
                }
            }
}

/* One attention problem: inputs, rope tables and outputs. */
typedef struct problem {
    sm_mla_dims m;
    double theta[MAXW / 2];
    size_t nq, nkv, nkvu, no;
    float *q, *kv, *kvu, *cos_t, *sin_t, *o, *R;
} problem;

static problem problem_make_dv(tu_rng *rng, int S, int dv)
{
    problem p = {.m = {.B = 2, .S = S, .H = 3, .dn = 5, .dr = 6, .dv = dv, .dc = 7}};
    sm_mla_dims *m = &p.m;
    size_t T = (size_t)m->B * S;
    m->scale = (float)sm_mla_softmax_scale(m->dn + m->dr, NULL);
    p.nq = T * m->H * (m->dn + m->dr);
    p.nkv = T * (m->dc + m->dr);
    p.nkvu = T * m->H * (m->dn + m->dv);
    p.no = T * m->H * m->dv;
    p.q = tu_alloc_randn(rng, p.nq, 1);
    p.kv = tu_alloc_randn(rng, p.nkv, 1);
    p.kvu = tu_alloc_randn(rng, p.nkvu, 1);
    p.R = tu_alloc_randn(rng, p.no, 1);
    p.o = tu_alloc_zero(p.no);
    p.cos_t = tu_alloc_zero((size_t)S * m->dr / 2);
    p.sin_t = tu_alloc_zero((size_t)S * m->dr / 2);
    sm_rope_freqs(p.theta, m->dr, 100, NULL); /* base 100: every pair turns visibly in S steps */
    sm_rope_table(p.cos_t, p.sin_t, p.theta, S, m->dr);
    return p;
}

static problem problem_make(tu_rng *rng, int S) { return problem_make_dv(rng, S, 3); }

static void problem_free(problem *p)
{
    float *bufs[] = {p->q, p->kv, p->kvu, p->cos_t, p->sin_t, p->o, p->R};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
}

static void problem_fwd(problem *p)
{
    sm_mla_attn_fwd(p->o, p->q, p->kv, p->kvu, p->cos_t, p->sin_t, &p->m);
}

/* max |a - b| with a float, b double */
static double diff_fd(const float *a, const double *b, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(a[i] - b[i]));
    return worst;
}

static void test_fwd_reference(tu_rng *rng, int S)
{
    problem p = problem_make(rng, S);
    double *o = malloc(p.no * sizeof *o);
    problem_fwd(&p);
    ref_attn(o, p.q, p.kv, p.kvu, p.theta, &p.m);
    tap_ok(diff_fd(p.o, o, p.no) < 2e-6, "fwd o matches the double reference, S=%d (%.2g)", S,
           diff_fd(p.o, o, p.no));
    free(o);
    problem_free(&p);
}

/* Changing token s0 of sequence 0 (its kv and kvu rows) leaves the outputs of tokens s < s0
 * and of sequence 1 bitwise unchanged, and does change token s0's output. */
static void test_causality(tu_rng *rng)
{
    problem p = problem_make(rng, 7);
    int s0 = 4, ldkv = p.m.dc + p.m.dr, ldkvu = p.m.H * (p.m.dn + p.m.dv), ldo = p.m.H * p.m.dv;
    float *o0 = malloc(p.no * sizeof *o0);
    problem_fwd(&p);
    memcpy(o0, p.o, p.no * sizeof *o0);
    tu_fill(rng, p.kv + (size_t)s0 * ldkv, ldkv, 3);
    tu_fill(rng, p.kvu + (size_t)s0 * ldkvu, ldkvu, 3);
    problem_fwd(&p);
    size_t seq = (size_t)p.m.S * ldo;
    tap_ok(memcmp(o0, p.o, (size_t)s0 * ldo * sizeof *o0) == 0,
           "earlier tokens do not see a later token's kv/kvu");
    tap_ok(memcmp(o0 + seq, p.o + seq, seq * sizeof *o0) == 0, "other sequence untouched");
    tap_ok(tu_max_abs_diff(o0 + (size_t)s0 * ldo, p.o + (size_t)s0 * ldo, ldo) > 1e-3,
           "the changed token's own output changes");
    free(o0);
    problem_free(&p);
}

/* Scalar loss sum(o * R) of the current inputs. */
static double loss_oR(void *ctx)
{
    problem *p = ctx;
    problem_fwd(p);
    double l = 0;
    for (size_t i = 0; i < p->no; i++) l += (double)p->o[i] * p->R[i];
    return l;
}

/* Gradients of sum(o * R): dq, dkv (zero latent columns, dkpe in the rope columns), dkvu. */
typedef struct grads { float *dq, *dkpe, *dkv, *dkvu; } grads;

static grads grads_alloc(const problem *p)
{
    size_t T = (size_t)p->m.B * p->m.S;
    grads g = {tu_alloc_zero(p->nq), tu_alloc_zero(T * p->m.dr), tu_alloc_zero(p->nkv),
               tu_alloc_zero(p->nkvu)};
    return g;
}

static void grads_free(grads *g)
{
    free(g->dq);
    free(g->dkpe);
    free(g->dkv);
    free(g->dkvu);
}

static void problem_bwd(problem *p, grads *g)
{
    problem_fwd(p);
    sm_mla_attn_bwd(g->dq, g->dkpe, g->dkvu, p->R, p->q, p->kv, p->kvu, p->cos_t, p->sin_t, &p->m);
    int T = p->m.B * p->m.S, ldkv = p->m.dc + p->m.dr;
    for (int t = 0; t < T; t++)
        memcpy(g->dkv + (size_t)t * ldkv + p->m.dc, g->dkpe + (size_t)t * p->m.dr,
               p->m.dr * sizeof(float));
}

/* Float32 central differences with h = 1e-2: the truncation error is O(h^2) ~ 1e-4 relative
 * (scores of order 1), the rounding error of a loss of ~100 float terms is ~1e-6 absolute, so
 * ~1e-4 after dividing by 2h; 1e-2 relative leaves a wide margin while a wrong term (a missing
 * head sum, a sign, a transposed rotation) gives errors of order 1. */
static void test_bwd_fd(tu_rng *rng, int S, size_t nprobe)
{
    problem p = problem_make(rng, S);
    grads g = grads_alloc(&p);
    problem_bwd(&p, &g);
    double h = 1e-2, tol = 1e-2;
    double eq = tu_fd_check(p.q, g.dq, p.nq, nprobe, h, 1e-3, loss_oR, &p);
    double ek = tu_fd_check(p.kv, g.dkv, p.nkv, nprobe, h, 1e-3, loss_oR, &p);
    double eu = tu_fd_check(p.kvu, g.dkvu, p.nkvu, nprobe, h, 1e-3, loss_oR, &p);
    tap_ok(eq < tol, "S=%d: dq matches finite differences (rel %.2g)", S, eq);
    tap_ok(ek < tol, "S=%d: dkpe (kv rope columns) matches finite differences (rel %.2g)", S, ek);
    tap_ok(eu < tol, "S=%d: dkvu matches finite differences (rel %.2g)", S, eu);
    grads_free(&g);
    problem_free(&p);
}

/* The backward's recomputed probabilities are the forward's, bit for bit. With dv = S, value
 * column j one-hot on key j (o[s, j] = P[s, j]) and dout column j one-hot on query j
 * (dV[t, j] = P[j, t]), each output entry is one product by 1 plus exact zeros, so o and the
 * value part of dkvu hold P and its transpose exactly. */
static void test_bwd_recomputes_p(tu_rng *rng, int S)
{
    problem p = problem_make_dv(rng, S, S);
    const sm_mla_dims *m = &p.m;
    int ldkvu = m->H * (m->dn + m->dv), ldo = m->H * m->dv;
    for (int t = 0; t < m->B * S; t++)
        for (int h = 0; h < m->H; h++)
            for (int j = 0; j < S; j++) {
                p.kvu[(size_t)t * ldkvu + h * (m->dn + m->dv) + m->dn + j] = t % S == j;
                p.R[(size_t)t * ldo + h * m->dv + j] = t % S == j;
            }
    grads g = grads_alloc(&p);
    problem_bwd(&p, &g);
    size_t differ = 0, nonzero = 0;
    for (int b = 0; b < m->B; b++)
        for (int h = 0; h < m->H; h++)
            for (int s = 0; s < S; s++)
                for (int t = 0; t < S; t++) {
                    float fwd = p.o[(size_t)(b * S + s) * ldo + h * m->dv + t];
                    float bwd = g.dkvu[(size_t)(b * S + t) * ldkvu + h * (m->dn + m->dv) + m->dn +
                                       s];
                    differ += memcmp(&fwd, &bwd, sizeof fwd) != 0;
                    nonzero += fwd != 0;
                }
    tap_ok(differ == 0 && nonzero == (size_t)m->B * m->H * S * (S + 1) / 2,
           "S=%d: the backward recomputes the forward's probabilities bitwise (%zu of %zu differ)",
           S, differ, (size_t)m->B * m->H * S * S);
    grads_free(&g);
    problem_free(&p);
}

/* Two runs give identical bytes, even when the outputs start as NaN garbage. */
static void test_determinism(tu_rng *rng)
{
    problem p = problem_make(rng, 9);
    grads a = grads_alloc(&p), b = grads_alloc(&p);
    problem_bwd(&p, &a);
    float *o = malloc(p.no * sizeof *o);
    memcpy(o, p.o, p.no * sizeof *o);
    size_t nkpe = (size_t)p.m.B * p.m.S * p.m.dr;
    memset(p.o, 0xff, p.no * sizeof *o);
    memset(b.dq, 0xff, p.nq * sizeof(float));
    memset(b.dkpe, 0xff, nkpe * sizeof(float));
    memset(b.dkvu, 0xff, p.nkvu * sizeof(float));
    problem_bwd(&p, &b);
    tap_ok(memcmp(o, p.o, p.no * sizeof *o) == 0, "forward is bitwise reproducible");
    tap_ok(memcmp(a.dq, b.dq, p.nq * sizeof(float)) == 0 &&
               memcmp(a.dkpe, b.dkpe, nkpe * sizeof(float)) == 0 &&
               memcmp(a.dkvu, b.dkvu, p.nkvu * sizeof(float)) == 0,
           "backward is bitwise reproducible and overwrites its outputs");
    free(o);
    grads_free(&a);
    grads_free(&b);
    problem_free(&p);
}

int main(void)
{
    tu_rng rng;
    tu_seed(&rng, 20240611);
    test_yarn_tiny();
    test_yarn_671b();
    test_rope_table();
    test_rope_interleaved();
    for (int S = 5; S <= 9; S++) test_fwd_reference(&rng, S);
    /* several causal blocks of 64 queries, the last one partial */
    for (int S = 64; S <= 65; S++) test_fwd_reference(&rng, S);
    test_fwd_reference(&rng, 150);
    test_causality(&rng);
    test_bwd_fd(&rng, 7, (size_t)-1);
    test_bwd_fd(&rng, 130, 200);
    test_bwd_recomputes_p(&rng, 7);
    test_bwd_recomputes_p(&rng, 150);
    test_determinism(&rng);
    return tap_done();
}
