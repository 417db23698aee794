/* Tests of the FP8 API (<starmoe/fp8.h>, base/fp8_quant.h, tasks/fp8_kernels.h): every code of
 * E4M3 and E5M2 decodes to the value of the format's formula; the encoders against the test
 * vectors of docs/fp8.md and, over every float32 bit pattern, against a reference built here
 * from the formula's grid (nearest, ties to the even code, overflow by the same rule); the
 * quantisers bitwise against a straightforward re-implementation; the reference GEMMs bitwise
 * against this file's loop in the documented order and close to float64; the fast GEMMs within
 * 1e-6 * sum |a_k b_k| of the reference. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#else
#pragma GCC optimize("fp-contract=off") /* the documented order, not an FMA, in ref_gemm */
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/dtype.h"
#include "base/fp8_quant.h"
#include "tasks/fp8_kernels.h"
#include "tests/tap.h"
#include "tests/testutil.h"

/* A format as its formula sees it: mantissa and exponent bits, bias, whether the all-ones
 * exponent is IEEE (inf/NaN) or E4M3fn's (only the top mantissa is NaN). */
typedef struct format {
    const char *name;
    int ebits, mbits, bias, ieee;
    uint8_t (*encode)(float, int);
    float (*decode)(uint8_t);
} format;

static const format e4m3 = {"e4m3", 4, 3, 7, 0, sm_fp8_e4m3_from_f32, sm_fp8_e4m3_to_f32};
static const format e5m2 = {"e5m2", 5, 2, 15, 1, sm_fp8_e5m2_from_f32, sm_fp8_e5m2_to_f32};

/* The magnitude of code c (sign bit ignored) by the formula, without the special codes: code
 * max + 1 gives the grid's next value above the largest finite. */
static double grid_value(const format *f, int c)
{
    int e = c >> f->mbits, m = c & ((1 << f->mbits) - 1);
    return e == 0 ? ldexp(m, 1 - f->bias - f->mbits)
                  : ldexp((1 << f->mbits) + m, e - f->bias - f->mbits);
}

/* The value of code b: the formula, NaN and inf where the format says so. */
static double formula(const format *f, int b)
{
    int mag = b & 0x7F, emax = (1 << f->ebits) - 1, mmax = (1 << f->mbits) - 1;
    int e = mag >> f->mbits, m = mag & mmax;
    double v = grid_value(f, mag);
    if (e == emax && (f->ieee || m == mmax)) v = f->ieee && m == 0 ? INFINITY : NAN;
    return b & 0x80 ? -v : v;
}

/* The largest finite magnitude code: below E4M3's NaN, below E5M2's inf. */
static int max_code(const format *f) { return f->ieee ? 0x7B : 0x7E; }


static void test_decode_all(const format *f)
{
    int bad = 0;
    for (int b = 0; b < 256; b++) {
        float got = f->decode((uint8_t)b);
        double want = formula(f, b);
        if (isnan(want) ? !isnan(got) : (got != want || !signbit(got) != !signbit(want))) {
            if (bad++ < 4) tap_diag("%s 0x%02X: got %a want %a", f->name, b, got, want);
        }
    }
    tap_ok(bad == 0, "%s: all 256 codes decode to the formula's value (%d wrong)", f->name, bad);
}

/* An input and what it encodes to, saturated and not. */
typedef struct vector {
    float x;
    uint8_t sat, nosat;
} vector;

/* How many of the n vectors `encode` gets wrong (each reported). */
static int wrong_vectors(const char *name, uint8_t (*encode)(float, int), const vector *v,
                         size_t n)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t s = encode(v[i].x, 1), u = encode(v[i].x, 0);
        if (s == v[i].sat && u == v[i].nosat) continue;
        bad++;
        tap_diag("%s(%a): saturated 0x%02X want 0x%02X, not 0x%02X want 0x%02X", name, v[i].x, s,
                 v[i].sat, u, v[i].nosat);
    }
    return bad;
}

static void test_vectors(void)
{
    static const vector v[] = {
        {448.0f, 0x7E, 0x7E}, {464.0f, 0x7E, 0x7E}, {500.0f, 0x7E, 0x7F}, {1.0f, 0x38, 0x38},
        {0.1f, 0x1D, 0x1D}, {-3.3f, 0xC5, 0xC5}, {17.0f, 0x58, 0x58}, {240.5f, 0x77, 0x77},
        {0x1p-9f, 0x01, 0x01}, {0x1p-10f, 0x00, 0x00}, {1.5f * 0x1p-10f, 0x01, 0x01},
        {-500.0f, 0xFE, 0xFF}, {INFINITY, 0x7E, 0x7F}, {-INFINITY, 0xFE, 0xFF},
        {-0.0f, 0x80, 0x80}, {0.0f, 0x00, 0x00}, {464.00003f, 0x7E, 0x7F}, {NAN, 0x7F, 0x7F},
    };
    static const vector w[] = {
        {57344.0f, 0x7B, 0x7B}, {61439.996f, 0x7B, 0x7B}, {61440.0f, 0x7B, 0x7C},
        {1e6f, 0x7B, 0x7C}, {-INFINITY, 0xFB, 0xFC}, {INFINITY, 0x7B, 0x7C},
        {1.0f, 0x3C, 0x3C}, {-1.5f, 0xBE, 0xBE}, {0x1p-16f, 0x01, 0x01}, {0x1p-17f, 0x00, 0x00},
        {0x1p-14f, 0x04, 0x04}, {-0.0f, 0x80, 0x80}, {NAN, 0x7F, 0x7F},
    };
    int bad = wrong_vectors("e4m3", sm_fp8_e4m3_from_f32, v, sizeof v / sizeof *v);
    tap_ok(bad == 0, "e4m3: the test vectors of docs/fp8.md, saturated and not (%d wrong)", bad);
    bad = wrong_vectors("e5m2", sm_fp8_e5m2_from_f32, w, sizeof w / sizeof *w);
    tap_ok(bad == 0, "e5m2: max, overflow threshold 61440, inf, subnormals, -0 (%d wrong)", bad);
}

/* What the encoder must give a float whose magnitude rounds to magnitude code c (c may be
 * max + 1: overflow), for sign bit s. */
static uint8_t expected(const format *f, int c, int saturate, int s)
{
    int ovf = f->ieee ? 0x7C : 0x7F;
    if (c > max_code(f)) c = saturate ? max_code(f) : ovf;
    return (uint8_t)(c | (s << 7));
}

/* Counts the patterns in [lo, hi) (and their negatives) that the encoder does not map to
 * `want` (for sign 0; the sign bit added for the negatives). */
static int64_t check_range(const format *f, uint32_t lo, uint32_t hi, int c, int saturate)
{
    int64_t bad = 0;
    uint8_t pos = expected(f, c, saturate, 0), neg = expected(f, c, saturate, 1);
    for (uint32_t u = lo; u < hi; u++) {
        bad += f->encode(sm_bits_f32(u), saturate) != pos;
        bad += f->encode(sm_bits_f32(u | 0x80000000u), saturate) != neg;
    }
    return bad;
}

/* Every float32 bit pattern: the magnitudes between grid values g[c] and g[c + 1] go to c below
 * the midpoint, to c + 1 above it, to the even one of them at it; beyond the last grid value
 * (the one above the largest finite), and infinity, overflow; NaNs give a NaN code. */
static void test_every_pattern(const format *f, int saturate)
{
    int64_t bad = 0, nan_bad = 0;
    int top = max_code(f);
    for (int c = 0; c <= top; c++) {
        float g0 = (float)grid_value(f, c), g1 = (float)grid_value(f, c + 1);
        uint32_t mid = sm_f32_bits((float)((grid_value(f, c) + grid_value(f, c + 1)) / 2));
        bad += check_range(f, sm_f32_bits(g0), mid, c, saturate);
        bad += check_range(f, mid, mid + 1, (c & 1) ? c + 1 : c, saturate);
        bad += check_range(f, mid + 1, sm_f32_bits(g1), c + 1, saturate);
    }
    bad += check_range(f, sm_f32_bits((float)grid_value(f, top + 1)), 0x7F800001u, top + 1, saturate);
    for (uint32_t u = 0x7F800001u; u <= 0x7FFFFFFFu; u++) {
        nan_bad += !isnan(f->decode(f->encode(sm_bits_f32(u), saturate)));
        nan_bad += !isnan(f->decode(f->encode(sm_bits_f32(u | 0x80000000u), saturate)));
    }
    tap_ok(bad == 0 && nan_bad == 0,
           "%s saturate=%d: all 2^32 float32 bit patterns encode to the nearest grid code, ties "
           "to even (%lld wrong, %lld NaNs not NaN)", f->name, saturate, (long long)bad,
           (long long)nan_bad);
}

/* The same rule for one float: the code the encoder must give x. */
static uint8_t reference_code(const format *f, float x, int saturate)
{
    if (isnan(x)) return 0x7F;
    double ax = fabs((double)x);
    int lo = 0, hi = max_code(f) + 1; /* grid_value(lo) <= ax, unless ax >= grid_value(hi) */
    if (ax >= grid_value(f, hi)) return expected(f, hi, saturate, signbit(x) != 0);
    while (hi - lo > 1) {
        int c = (lo + hi) / 2;
        if (grid_value(f, c) <= ax) lo = c;
        else hi = c;
    }
    double mid = (grid_value(f, lo) + grid_value(f, lo + 1)) / 2;
    int c = ax < mid ? lo : ax > mid ? lo + 1 : (lo & 1) ? lo + 1 : lo;
    return expected(f, c, saturate, signbit(x) != 0);
}

static int64_t check_one(const format *f, uint32_t u, int saturate)
{
    float x = sm_bits_f32(u);
    uint8_t got = f->encode(x, saturate), want = reference_code(f, x, saturate);
    if (isnan(x)) return !isnan(f->decode(got));
    return got != want;
}

/* 2^24 bit patterns spread evenly over all 2^32, and every pattern within 2 ulps of every grid
 * value and every midpoint between neighbours (the one above the largest finite included),
 * both signs. */
static void test_sampled_patterns(const format *f, int saturate)
{
    int64_t bad = 0;
    for (uint32_t i = 0; i < (1u << 24); i++)
        bad += check_one(f, i << 8 | (i * 37 & 0xFF), saturate);
    for (int c = 0; c <= max_code(f) + 1; c++) {
        uint32_t g = sm_f32_bits((float)grid_value(f, c));
        uint32_t mid = sm_f32_bits((float)((grid_value(f, c) + grid_value(f, c + 1)) / 2));
        for (int d = -2; d <= 2; d++)
            for (uint32_t s = 0; s <= 1; s++) {
                if (c > 0 || d >= 0) bad += check_one(f, (g + (uint32_t)d) | s << 31, saturate);
                bad += check_one(f, (mid + (uint32_t)d) | s << 31, saturate);
            }
    }
    tap_ok(bad == 0, "%s saturate=%d: 2^24 spread bit patterns and all within 2 ulps of grid "
           "values and midpoints encode to the nearest grid code, ties to even (%lld wrong)",
           f->name, saturate, (long long)bad);
}

/* ---- quantisers: a straightforward re-implementation of the rule ---- */

static float rule_scale(float amax) { return fmaxf(amax, 1e-4f) / 448.0f; }

static void naive_tiles(const float *x, int64_t rows, int64_t cols, uint8_t *codes,
                        float *scales)
{
    int64_t nt = (cols + 127) / 128;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t t = 0; t < nt; t++) {
            int64_t c1 = t * 128 + 128 < cols ? t * 128 + 128 : cols;
            float amax = 0.0f;
            for (int64_t c = t * 128; c < c1; c++) amax = fmaxf(amax, fabsf(x[r * cols + c]));
            float s = scales[r * nt + t] = rule_scale(amax);
            for (int64_t c = t * 128; c < c1; c++)
                codes[r * cols + c] = sm_fp8_e4m3_from_f32(x[r * cols + c] / s, 1);
        }
}

static void naive_blocks(const float *w, int64_t rows, int64_t cols, uint8_t *codes,
                         float *scales)
{
    int64_t nr = (rows + 127) / 128, nc = (cols + 127) / 128;
    for (int64_t i = 0; i < nr; i++)
        for (int64_t j = 0; j < nc; j++) {
            int64_t r1 = i * 128 + 128 < rows ? i * 128 + 128 : rows;
            int64_t c1 = j * 128 + 128 < cols ? j * 128 + 128 : cols;
            float amax = 0.0f;
            for (int64_t r = i * 128; r < r1; r++)
                for (int64_t c = j * 128; c < c1; c++) amax = fmaxf(amax, fabsf(w[r * cols + c]));
            float s = scales[i * nc + j] = rule_scale(amax);
            for (int64_t r = i * 128; r < r1; r++)
                for (int64_t c = j * 128; c < c1; c++)
                    codes[r * cols + c] = sm_fp8_e4m3_from_f32(w[r * cols + c] / s, 1);
        }
}

/* Random N(0, 1) data with row 1 all zero (when there is one) and one huge value in row 0. */
static float *test_matrix(int64_t rows, int64_t cols, uint64_t seed)
{
    tu_rng r;
    tu_seed(&r, seed);
    float *x = tu_alloc_randn(&r, (size_t)(rows * cols), 1.0f);
    if (rows > 1) memset(x + cols, 0, (size_t)cols * sizeof *x);
    x[cols / 2] = 3e7f;
    return x;
}

static void test_quantizers(int64_t rows, int64_t cols)
{
    size_t n = (size_t)(rows * cols), nt = (size_t)(rows * sm_fp8_groups(cols));
    size_t nb = (size_t)(sm_fp8_groups(rows) * sm_fp8_groups(cols));
    size_t ntt = (size_t)(cols * sm_fp8_groups(rows));
    float *x = test_matrix(rows, cols, (uint64_t)(rows * 1000 + cols));
    float *xt = malloc(n * sizeof *xt), *back = malloc(n * sizeof *back);
    float *s1 = malloc(nt * sizeof *s1), *s2 = malloc(nt * sizeof *s2);
    float *b1 = malloc(nb * sizeof *b1), *b2 = malloc(nb * sizeof *b2);
    float *t1 = malloc(ntt * sizeof *t1), *t2 = malloc(ntt * sizeof *t2);
    uint8_t *q1 = malloc(n), *q2 = malloc(n);
    sm_fp8_quantize_tiles(x, rows, cols, q1, s1);
    naive_tiles(x, rows, cols, q2, s2);
    tap_ok(!memcmp(q1, q2, n) && !memcmp(s1, s2, nt * sizeof *s1),
           "[%lld, %lld] in 1x128 tiles: codes and scales bitwise those of the rule",
           (long long)rows, (long long)cols);
    int zero_ok = rows < 2 || s1[sm_fp8_groups(cols)] == 1e-4f / 448.0f;
    tap_ok(zero_ok && s1[(cols / 2) / 128] == 3e7f / 448.0f && q1[cols / 2] == 0x7E,
           "[%lld, %lld]: an all-zero tile has scale 1e-4/448, the huge value's tile 3e7/448 "
           "and code 448", (long long)rows, (long long)cols);
    int64_t bad = 0;
    sm_fp8_dequantize_tiles(back, q1, s1, rows, cols);
    for (int64_t i = 0; i < rows * cols; i++)
        bad += back[i] != sm_fp8_e4m3_to_f32(q1[i]) * s1[(i / cols) * sm_fp8_groups(cols) +
                                                       (i % cols) / 128];
    tap_ok(bad == 0, "[%lld, %lld]: dequantised tiles are code * scale (%lld wrong)",
           (long long)rows, (long long)cols, (long long)bad);

    sm_fp8_quantize_blocks(x, rows, cols, q1, b1);
    naive_blocks(x, rows, cols, q2, b2);
    tap_ok(!memcmp(q1, q2, n) && !memcmp(b1, b2, nb * sizeof *b1),
           "[%lld, %lld] in 128x128 blocks: codes and scales bitwise those of the rule",
           (long long)rows, (long long)cols);

    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) xt[c * rows + r] = x[r * cols + c];
    sm_fp8_quantize_tiles_t(x, rows, cols, q1, t1);
    naive_tiles(xt, cols, rows, q2, t2);
    tap_ok(!memcmp(q1, q2, n) && !memcmp(t1, t2, ntt * sizeof *t1),
           "[%lld, %lld] in 128x1 tiles, transposed: bitwise the 1x128 tiles of x^T",
           (long long)rows, (long long)cols);
    free(x), free(xt), free(back), free(s1), free(s2), free(b1), free(b2), free(t1), free(t2);
    free(q1), free(q2);
}

/* ---- GEMMs ---- */

/* The documented order, written out: per K block the exact products summed in increasing k,
 * then acc += (P * a_scale) * b_scale; b_group rows of B share a scale row. */
static void ordered_gemm(const uint8_t *a, const float *as, const uint8_t *b, const float *bs,
                         int64_t M, int64_t N, int64_t K, int64_t b_group, float *y)
{
    int64_t nkb = (K + 127) / 128;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            float acc = 0.0f;
            for (int64_t kb = 0; kb < nkb; kb++) {
                float p = 0.0f;
                for (int64_t k = kb * 128; k < K && k < kb * 128 + 128; k++)
                    p += sm_fp8_e4m3_to_f32(a[m * K + k]) * sm_fp8_e4m3_to_f32(b[n * K + k]);
                acc += (p * as[m * nkb + kb]) * bs[(n / b_group) * nkb + kb];
            }
            y[m * N + n] = acc;
        }
}

typedef struct gemm_case {
    int64_t M, N, K;
    uint8_t *a, *b;
    float *as, *bs;
    double *exact, *abs_sum;     /* float64 dequantised product and sum_k |a_k b_k| */
} gemm_case;

/* A in tiles, B in blocks (b_group 128) or tiles (1), from random data; the float64 product
 * of the dequantised operands. */
static void make_case(gemm_case *g, int64_t M, int64_t N, int64_t K, int64_t b_group)
{
    int64_t nkb = sm_fp8_groups(K), nbr = b_group == 1 ? N : sm_fp8_groups(N);
    float *x = test_matrix(M, K, (uint64_t)(M * 7 + K)), *w = test_matrix(N, K, (uint64_t)N);
    *g = (gemm_case){M, N, K, malloc((size_t)(M * K)), malloc((size_t)(N * K)),
                     malloc((size_t)(M * nkb) * sizeof(float)),
                     malloc((size_t)(nbr * nkb) * sizeof(float)),
                     malloc((size_t)(M * N) * sizeof(double)),
                     malloc((size_t)(M * N) * sizeof(double))};
    sm_fp8_quantize_tiles(x, M, K, g->a, g->as);
    if (b_group == 1) sm_fp8_quantize_tiles(w, N, K, g->b, g->bs);
    else sm_fp8_quantize_blocks(w, N, K, g->b, g->bs);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double e = 0, s = 0;
            for (int64_t k = 0; k < K; k++) {
                double av = (double)sm_fp8_e4m3_to_f32(g->a[m * K + k]) * g->as[m * nkb + k / 128];
                double bv = (double)sm_fp8_e4m3_to_f32(g->b[n * K + k]) *
                            g->bs[(n / b_group) * nkb + k / 128];
                e += av * bv;
                s += fabs(av * bv);
            }
            g->exact[m * N + n] = e;
            g->abs_sum[m * N + n] = s;
        }
    free(x);
    free(w);
}

static void free_case(gemm_case *g)
{
    free(g->a), free(g->b), free(g->as), free(g->bs), free(g->exact), free(g->abs_sum);
}

typedef void gemm_fn(const uint8_t *, const float *, const uint8_t *, const float *, int64_t,
                     int64_t, int64_t, float *);

static void test_gemm(const char *name, gemm_fn *ref, gemm_fn *fast, int64_t b_group,
                      int64_t M, int64_t N, int64_t K)
{
    gemm_case g;
    make_case(&g, M, N, K, b_group);
    size_t mn = (size_t)(M * N);
    float *y = malloc(mn * sizeof *y), *yo = malloc(mn * sizeof *yo), *yf = malloc(mn * sizeof *yf);
    ref(g.a, g.as, g.b, g.bs, M, N, K, y);
    ordered_gemm(g.a, g.as, g.b, g.bs, M, N, K, b_group, yo);
    fast(g.a, g.as, g.b, g.bs, M, N, K, yf);
    tap_ok(!memcmp(y, yo, mn * sizeof *y), "%s [%lld x %lld x %lld]: bitwise the documented order",
           name, (long long)M, (long long)N, (long long)K);
    /* float32 rounding: <= 128 adds in a block, two scale multiplies, one add per block */
    double gamma = (128 + 2 + (double)sm_fp8_groups(K)) * 0x1p-24, worst = 0, worst_fast = 0;
    for (size_t i = 0; i < mn; i++) {
        double den = g.abs_sum[i] > 0 ? g.abs_sum[i] : 1;
        worst = fmax(worst, fabs(y[i] - g.exact[i]) / den);
        worst_fast = fmax(worst_fast, fabs((double)yf[i] - y[i]) / den);
    }
    tap_ok(worst <= gamma, "%s [%lld x %lld x %lld]: |y - float64| <= %.2g sum|a b| (%.2g)", name,
           (long long)M, (long long)N, (long long)K, gamma, worst);
    tap_ok(worst_fast <= 1e-6, "%s fast [%lld x %lld x %lld]: |y_fast - y| <= 1e-6 sum|a b| "
           "(%.2g)", name, (long long)M, (long long)N, (long long)K, worst_fast);
    free(y), free(yo), free(yf);
    free_case(&g);
}

int main(void)
{
    alarm(120);
    clock_t t0 = clock();
    test_decode_all(&e4m3);
    test_decode_all(&e5m2);
    test_vectors();
    test_every_pattern(&e4m3, 1);
    tap_diag("every pattern of e4m3 checked in %.1f s of CPU",
             (double)(clock() - t0) / CLOCKS_PER_SEC);
    test_sampled_patterns(&e4m3, 0);
    test_sampled_patterns(&e5m2, 1);
    test_sampled_patterns(&e5m2, 0);
    static const int64_t quant_shapes[][2] = {{3, 300}, {130, 257}, {1, 1}, {128, 128}, {257, 5}};
    for (size_t i = 0; i < sizeof quant_shapes / sizeof quant_shapes[0]; i++)
        test_quantizers(quant_shapes[i][0], quant_shapes[i][1]);
    static const int64_t gemm_shapes[][3] = {
        {3, 5, 300}, {130, 129, 257}, {1, 1, 1}, {64, 200, 128}, {17, 140, 1000}, {2, 3, 129},
    };
    for (size_t i = 0; i < sizeof gemm_shapes / sizeof gemm_shapes[0]; i++) {
        const int64_t *s = gemm_shapes[i];
        test_gemm("gemm", sm_fp8_gemm, sm_fp8_gemm_fast, 128, s[0], s[1], s[2]);
        test_gemm("gemm_tiles", sm_fp8_gemm_tiles, sm_fp8_gemm_tiles_fast, 1, s[0], s[1], s[2]);
    }
    return tap_done();
}
