/* Tests of base/dtype.c: names and sizes, the FP8 E4M3 test vectors of docs/fp8.md in both
 * directions, exhaustive round trips, a brute-force nearest-even reference for the FP8 encoders,
 * BF16 and F16 rounding, and sm_convert_to_f32. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "base/dtype.h"
#include "tests/tap.h"
#include "tests/testutil.h"

static void test_names(void)
{
    int ok = 1;
    for (int t = 0; t < SM_DTYPE_COUNT; t++) {
        sm_dtype back;
        ok &= sm_dtype_parse(sm_dtype_name((sm_dtype)t), &back) == 0 && back == (sm_dtype)t;
        ok &= sm_dtype_size((sm_dtype)t) >= 1;
    }
    tap_ok(ok, "every dtype name parses back to itself");
    sm_dtype t;
    tap_ok(sm_dtype_parse("F33", &t) == -1, "unknown dtype name rejected");
    tap_ok(sm_dtype_parse("f32", &t) == -1, "dtype names are case sensitive");
    tap_ok(sm_dtype_size(SM_F8_E4M3) == 1 && sm_dtype_size(SM_BF16) == 2 &&
               sm_dtype_size(SM_I64) == 8 && sm_dtype_size(SM_BOOL) == 1,
           "dtype sizes");
    tap_ok(strcmp(sm_dtype_name(SM_F8_E4M3), "F8_E4M3") == 0, "F8_E4M3 spelling");
}

/* The saturating FP8 encoders (the GPU satfinite path) with the shape the helpers below take. */
static uint8_t e4m3_sat(float x) { return sm_fp8_e4m3_from_f32(x, 1); }
static uint8_t e5m2_sat(float x) { return sm_fp8_e5m2_from_f32(x, 1); }

static void test_e4m3_vectors(void)
{
    static const struct { float x; uint8_t code; } enc[] = {
        {448.0f, 0x7E}, {464.0f, 0x7E}, {500.0f, 0x7E}, {1.0f, 0x38}, {0.1f, 0x1D},
        {-3.3f, 0xC5}, {17.0f, 0x58}, {240.5f, 0x77}, {0x1p-9f, 0x01}, {0x1p-10f, 0x00},
        {1.5f * 0x1p-10f, 0x01}, {-500.0f, 0xFE}, {INFINITY, 0x7E}, {-INFINITY, 0xFE},
        {0.0f, 0x00}, {-0.0f, 0x80}, {0x1p-6f, 0x08}, {1e-30f, 0x00}, {FLT_MAX, 0x7E},
    };
    for (size_t i = 0; i < sizeof enc / sizeof enc[0]; i++) {
        uint8_t got = e4m3_sat(enc[i].x);
        tap_ok(got == enc[i].code, "e4m3 encode %a -> 0x%02X (got 0x%02X)", enc[i].x,
               enc[i].code, got);
    }
    tap_ok(e4m3_sat(NAN) == 0x7F, "e4m3 encode NaN -> 0x7F");
    static const struct { uint8_t code; float x; } dec[] = {
        {0x7E, 448.0f}, {0x38, 1.0f}, {0x1D, 0.1015625f}, {0xC5, -3.25f}, {0x58, 16.0f},
        {0x77, 240.0f}, {0x01, 0x1p-9f}, {0x08, 0x1p-6f}, {0xFE, -448.0f}, {0x00, 0.0f},
    };
    for (size_t i = 0; i < sizeof dec / sizeof dec[0]; i++)
        tap_ok(sm_fp8_e4m3_to_f32(dec[i].code) == dec[i].x, "e4m3 decode 0x%02X -> %g",
               dec[i].code, dec[i].x);
    tap_ok(isnan(sm_fp8_e4m3_to_f32(0x7F)) && isnan(sm_fp8_e4m3_to_f32(0xFF)),
           "e4m3 0x7F and 0xFF are NaN");
    tap_ok(signbit(sm_fp8_e4m3_to_f32(0x80)) && sm_fp8_e4m3_to_f32(0x80) == 0.0f,
           "e4m3 0x80 is -0");
}

/* Every finite code survives decode then encode (inf saturates: checked separately). */
static int roundtrip_all(float (*dec)(uint8_t), uint8_t (*enc)(float))
{
    int bad = 0;
    for (int b = 0; b < 256; b++) {
        float v = dec((uint8_t)b);
        if (isfinite(v) && enc(v) != b) bad++;
    }
    return bad;
}

/* Reference encoder: the finite code nearest to x (ties to the even code), saturating. */
static uint8_t nearest_code(float x, float (*dec)(uint8_t))
{
    int best = -1;
    double bestd = INFINITY;
    for (int b = 0; b < 256; b++) {
        float v = dec((uint8_t)b);
        if (!isfinite(v) || signbit(v) != signbit(x)) continue;
        double d = fabs((double)v - (double)x);
        if (d < bestd || (d == bestd && (b & 1) == 0)) best = b, bestd = d;
    }
    return (uint8_t)best;
}

static int brute_force(float (*dec)(uint8_t), uint8_t (*enc)(float), float range, uint64_t seed)
{
    tu_rng r;
    tu_seed(&r, seed);
    int bad = 0;
    for (int i = 0; i < 20000; i++) {
        double lr = log2(range), mag = exp2(-(lr + 4) + tu_uniform(&r) * (2 * lr + 5));
        float x = (float)(tu_uniform(&r) < 0.5 ? -mag : mag);
        if (i % 4 == 0) { /* exact midpoints between neighbouring codes */
            int b = (int)(tu_uniform(&r) * 255);
            float a = dec((uint8_t)b), c = dec((uint8_t)(b + 1));
            if (!isfinite(a) || !isfinite(c) || signbit(a) != signbit(c)) continue;
            x = (float)(((double)a + (double)c) / 2);
        }
        if (enc(x) != nearest_code(x, dec)) bad++;
    }
    return bad;
}

static void test_fp8_exhaustive(void)
{
    tap_ok(roundtrip_all(sm_fp8_e4m3_to_f32, e4m3_sat) == 0,
           "e4m3: all 254 non-NaN codes round-trip");
    tap_ok(roundtrip_all(sm_fp8_e5m2_to_f32, e5m2_sat) == 0,
           "e5m2: all finite codes round-trip");
    tap_ok(brute_force(sm_fp8_e4m3_to_f32, e4m3_sat, 448, 1) == 0,
           "e4m3 encoder equals brute-force nearest-even with saturation");
    tap_ok(brute_force(sm_fp8_e5m2_to_f32, e5m2_sat, 57344, 2) == 0,
           "e5m2 encoder equals brute-force nearest-even with saturation");
}

static void test_e5m2(void)
{
    tap_ok(e5m2_sat(1.0f) == 0x3C, "e5m2 1.0 -> 0x3C");
    tap_ok(e5m2_sat(57344.0f) == 0x7B, "e5m2 max finite 57344 -> 0x7B");
    tap_ok(e5m2_sat(1e6f) == 0x7B && e5m2_sat(-INFINITY) == 0xFB,
           "e5m2 saturates overflow and inf");
    tap_ok(e5m2_sat(0x1p-16f) == 0x01 && e5m2_sat(0x1p-14f) == 0x04,
           "e5m2 min subnormal 0x01, min normal 0x04");
    tap_ok(e5m2_sat(-1.5f) == 0xBE, "e5m2 -1.5 -> 0xBE");
    tap_ok(isinf(sm_fp8_e5m2_to_f32(0x7C)) && isnan(sm_fp8_e5m2_to_f32(0x7D)) &&
               e5m2_sat(NAN) == 0x7F,
           "e5m2 0x7C is inf, 0x7D NaN, NaN encodes to 0x7F");
    tap_ok(sm_fp8_e5m2_to_f32(0x7B) == 57344.0f && sm_fp8_e5m2_to_f32(0x01) == 0x1p-16f,
           "e5m2 decode 0x7B and 0x01");
}

static void test_bf16(void)
{
    tap_ok(sm_f32_to_bf16(1.0f) == 0x3F80, "bf16 1.0 -> 0x3F80");
    tap_ok(sm_f32_to_bf16(1.0f + 0x1p-8f) == 0x3F80, "bf16 tie rounds down to even");
    tap_ok(sm_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3F82, "bf16 tie rounds up to even");
    tap_ok(sm_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3F81, "bf16 above tie rounds up");
    tap_ok(sm_f32_to_bf16(-2.0f) == 0xC000, "bf16 -2.0");
    tap_ok(sm_f32_to_bf16(FLT_MAX) == 0x7F80, "bf16 FLT_MAX rounds to inf");
    tap_ok(isnan(sm_bf16_to_f32(sm_f32_to_bf16(NAN))), "bf16 NaN stays NaN");
    uint32_t payload_nan = 0x7F800001;
    float f;
    memcpy(&f, &payload_nan, sizeof f);
    tap_ok(isnan(sm_bf16_to_f32(sm_f32_to_bf16(f))), "bf16 low-payload NaN stays NaN");
    tap_ok(sm_bf16_to_f32(0x4049) == 3.140625f, "bf16 decode 0x4049 = 3.140625");
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float v = sm_bf16_to_f32((uint16_t)h);
        if (!isnan(v) && sm_f32_to_bf16(v) != h) bad++;
    }
    tap_ok(bad == 0, "bf16: every non-NaN code round-trips (%d bad)", bad);
}

static void test_f16(void)
{
    tap_ok(sm_f32_to_f16(1.0f) == 0x3C00 && sm_f16_to_f32(0x3C00) == 1.0f, "f16 1.0");
    tap_ok(sm_f32_to_f16(65504.0f) == 0x7BFF && sm_f32_to_f16(65520.0f) == 0x7C00,
           "f16 max finite, overflow to inf");
    tap_ok(sm_f32_to_f16(0x1p-24f) == 0x0001 && sm_f32_to_f16(0x1p-25f) == 0x0000,
           "f16 smallest subnormal, tie to even at half of it");
    tap_ok(sm_f32_to_f16(1.0f + 0x1p-11f) == 0x3C00 && sm_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3C02,
           "f16 ties to even");
    tap_ok(isinf(sm_f16_to_f32(0xFC00)) && sm_f16_to_f32(0xFC00) < 0 &&
               isnan(sm_f16_to_f32(0x7E00)),
           "f16 -inf and NaN decode");
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float v = sm_f16_to_f32((uint16_t)h);
        if (!isnan(v) && sm_f32_to_f16(v) != h) bad++;
    }
    tap_ok(bad == 0, "f16: every non-NaN code round-trips (%d bad)", bad);
}

static void test_convert(void)
{
    unsigned char buf[1 + 3 * 8];
    int64_t i64[3] = {-5, 0, 1 << 20};
    uint16_t bf[3] = {0x3F80, 0xC000, 0x4049};
    float out[3];
    memcpy(buf + 1, i64, sizeof i64);
    sm_convert_to_f32(out, buf + 1, SM_I64, 3);
    tap_ok(out[0] == -5 && out[1] == 0 && out[2] == 1 << 20, "convert I64 (unaligned)");
    memcpy(buf + 1, bf, sizeof bf);
    sm_convert_to_f32(out, buf + 1, SM_BF16, 3);
    tap_ok(out[0] == 1 && out[1] == -2 && out[2] == 3.140625f, "convert BF16 (unaligned)");
    uint8_t fp8[3] = {0x38, 0xC5, 0x01};
    sm_convert_to_f32(out, fp8, SM_F8_E4M3, 3);
    tap_ok(out[0] == 1 && out[1] == -3.25f && out[2] == 0x1p-9f, "convert F8_E4M3");
    double d[3] = {0.5, -1e10, 3};
    sm_convert_to_f32(out, d, SM_F64, 3);
    tap_ok(out[0] == 0.5f && out[1] == -1e10f && out[2] == 3, "convert F64");
    int8_t i8[3] = {-128, 1, 127};
    sm_convert_to_f32(out, i8, SM_I8, 3);
    tap_ok(out[0] == -128 && out[1] == 1 && out[2] == 127, "convert I8");
}

int main(void)
{
    test_names();
    test_e4m3_vectors();
    test_fp8_exhaustive();
    test_e5m2();
    test_bf16();
    test_f16();
    test_convert();
    return tap_done();
}
