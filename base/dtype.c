/* Element types (sizes, safetensors names) and the bit-exact float conversions: BF16 and F16
 * (IEEE, round to nearest even, overflow to inf) and FP8 E4M3fn / E5M2 (round to nearest even;
 * overflow saturates to the largest finite value, as the GPU satfinite path does, or becomes
 * NaN / inf: docs/fp8.md), the public casts of <starmoe/fp8.h>. */
#include "base/dtype.h"

#include <starmoe/fp8.h>

#include <math.h>
#include <string.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "sm_convert_to_f32 reads little-endian data with native loads"
#endif

static const struct { const char *name; size_t size; } dtype_info[SM_DTYPE_COUNT] = {
    [SM_F32] = {"F32", 4},         [SM_F16] = {"F16", 2},   [SM_BF16] = {"BF16", 2},
    [SM_F8_E4M3] = {"F8_E4M3", 1}, [SM_F8_E5M2] = {"F8_E5M2", 1},
    [SM_F64] = {"F64", 8},         [SM_I8] = {"I8", 1},     [SM_U8] = {"U8", 1},
    [SM_I16] = {"I16", 2},         [SM_I32] = {"I32", 4},   [SM_I64] = {"I64", 8},
    [SM_BOOL] = {"BOOL", 1},
};

size_t sm_dtype_size(sm_dtype t) { return (unsigned)t < SM_DTYPE_COUNT ? dtype_info[t].size : 0; }

const char *sm_dtype_name(sm_dtype t)
{
    return (unsigned)t < SM_DTYPE_COUNT ? dtype_info[t].name : "?";
}

int sm_dtype_parse(const char *s, sm_dtype *out)
{
    for (int t = 0; t < SM_DTYPE_COUNT; t++)
        if (strcmp(s, dtype_info[t].name) == 0) {
            *out = (sm_dtype)t;
            return 0;
        }
    return -1;
}


/* A small binary float format: exponent and mantissa widths, bias, the code of the largest
 * finite magnitude, the magnitude code that overflow and infinities get when not saturating
 * (inf, or NaN for E4M3fn which has no inf), the code of NaN, and whether the all-ones exponent
 * means inf/NaN (IEEE) or is a normal binade whose top mantissa code alone is NaN (E4M3fn). */
typedef struct minifloat {
    int ebits, mbits, bias;
    uint32_t max_code, overflow_code, nan_code;
    int ieee;
} minifloat;

static const minifloat fmt_f16 = {5, 10, 15, 0x7BFF, 0x7C00, 0x7E00, 1};
static const minifloat fmt_e4m3 = {4, 3, 7, 0x7E, 0x7F, 0x7F, 0};
static const minifloat fmt_e5m2 = {5, 2, 15, 0x7B, 0x7C, 0x7F, 1};

/* v >> s, rounded to nearest with ties to even (1 <= s <= 40). */
static uint64_t shift_rne(uint64_t v, int s)
{
    uint64_t q = v >> s, rem = v & ((1ull << s) - 1), half = 1ull << (s - 1);
    return q + (rem > half || (rem == half && (q & 1)));
}

/* The magnitude code of a finite f32 magnitude `abs` (bits), before the overflow check. A
 * rounding carry moves into the exponent field by itself. */
static uint32_t minifloat_round(uint32_t abs, const minifloat *m)
{
    int e = (int)(abs >> 23) - 127, emin = 1 - m->bias;
    if ((abs >> 23) == 0) return 0; /* f32 subnormals are far below every target's grid */
    if (e < emin) {
        int s = 23 - m->mbits + (emin - e);
        return s > 25 ? 0 : (uint32_t)shift_rne((abs & 0x7FFFFF) | 0x800000, s);
    }
    uint64_t code = ((uint64_t)(e + m->bias) << 23) | (abs & 0x7FFFFF);
    return (uint32_t)shift_rne(code, 23 - m->mbits);
}

/* Overflow (a rounded magnitude above the largest finite) and infinities give the largest
 * finite magnitude when saturating, else the overflow code; the sign is kept (NaN aside). */
static uint32_t minifloat_encode(float f, const minifloat *m, int saturate)
{
    uint32_t u = sm_f32_bits(f), abs = u & 0x7FFFFFFF;
    uint32_t sign = (u >> 31) << (m->ebits + m->mbits);
    if (abs > 0x7F800000) return m->nan_code;
    uint32_t code = abs == 0x7F800000 ? UINT32_MAX : minifloat_round(abs, m);
    if (code > m->max_code) code = saturate ? m->max_code : m->overflow_code;
    return sign | code;
}

static float minifloat_decode(uint32_t b, const minifloat *m)
{
    uint32_t emax = (1u << m->ebits) - 1, mmax = (1u << m->mbits) - 1;
    uint32_t sign = (b >> (m->ebits + m->mbits)) & 1, e = (b >> m->mbits) & emax, mant = b & mmax;
    float v;
    if (e == emax && (m->ieee || mant == mmax))
        v = m->ieee && mant == 0 ? INFINITY : NAN;
    else if (e == 0)
        v = ldexpf((float)mant, 1 - m->bias - m->mbits);
    else
        v = sm_bits_f32(((e - m->bias + 127) << 23) | (mant << (23 - m->mbits)));
    return sign ? -v : v;
}

float sm_bf16_to_f32(uint16_t h) { return sm_bits_f32((uint32_t)h << 16); }

uint16_t sm_f32_to_bf16(float f)
{
    uint32_t u = sm_f32_bits(f);
    if ((u & 0x7FFFFFFF) > 0x7F800000) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

float sm_f16_to_f32(uint16_t h) { return minifloat_decode(h, &fmt_f16); }
uint16_t sm_f32_to_f16(float f) { return (uint16_t)minifloat_encode(f, &fmt_f16, 0); }
float sm_fp8_e4m3_to_f32(uint8_t code) { return minifloat_decode(code, &fmt_e4m3); }
float sm_fp8_e5m2_to_f32(uint8_t code) { return minifloat_decode(code, &fmt_e5m2); }

uint8_t sm_fp8_e4m3_from_f32(float x, int saturate)
{
    return (uint8_t)minifloat_encode(x, &fmt_e4m3, saturate);
}

uint8_t sm_fp8_e5m2_from_f32(float x, int saturate)
{
    return (uint8_t)minifloat_encode(x, &fmt_e5m2, saturate);
}

/* One element of type t at p, as float. */
static float load_f32(const unsigned char *p, sm_dtype t)
{
    union { float f; double d; int8_t i8; uint8_t u8; int16_t i16; uint16_t u16; int32_t i32;
            int64_t i64; } v;
    memcpy(&v, p, sm_dtype_size(t));
    switch (t) {
    case SM_F32: return v.f;
    case SM_F16: return sm_f16_to_f32(v.u16);
    case SM_BF16: return sm_bf16_to_f32(v.u16);
    case SM_F8_E4M3: return sm_fp8_e4m3_to_f32(v.u8);
    case SM_F8_E5M2: return sm_fp8_e5m2_to_f32(v.u8);
    case SM_F64: return (float)v.d;
    case SM_I8: return v.i8;
    case SM_U8: case SM_BOOL: return v.u8;
    case SM_I16: return v.i16;
    case SM_I32: return (float)v.i32;
    case SM_I64: return (float)v.i64;
    default: return NAN;
    }
}

void sm_convert_to_f32(float *dst, const void *src, sm_dtype t, size_t n)
{
    const unsigned char *p = src;
    size_t sz = sm_dtype_size(t);
    if (n == 0) return;
    if (t == SM_F32) {
        memcpy(dst, src, n * sizeof *dst);
        return;
    }
    for (size_t i = 0; i < n; i++) dst[i] = load_f32(p + i * sz, t);
}
