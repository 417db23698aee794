/* Element types of tensors and their conversions to and from float32 (BF16, F16, FP8 E4M3/E5M2).
 * The FP8 casts are public (<starmoe/fp8.h>, docs/fp8.md); base/dtype.c defines them. */
#ifndef STARMOE_DTYPE_H
#define STARMOE_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <starmoe/fp8.h>

typedef enum sm_dtype {
    SM_F32 = 0, SM_F16, SM_BF16, SM_F8_E4M3, SM_F8_E5M2, SM_F64,
    SM_I8, SM_U8, SM_I16, SM_I32, SM_I64, SM_BOOL, SM_DTYPE_COUNT
} sm_dtype;

/* Bytes per element. */
size_t sm_dtype_size(sm_dtype t);
/* The safetensors spelling ("F32", "BF16", "F8_E4M3", ...). */
const char *sm_dtype_name(sm_dtype t);
/* Parses a safetensors dtype string; returns -1 when unknown. */
int sm_dtype_parse(const char *s, sm_dtype *out);

/* A float's bit pattern and back. */
static inline uint32_t sm_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float sm_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float sm_bf16_to_f32(uint16_t h);
uint16_t sm_f32_to_bf16(float f);          /* round to nearest even; NaN stays NaN */
float sm_f16_to_f32(uint16_t h);
uint16_t sm_f32_to_f16(float f);

/* Converts n elements of type t at src (little-endian, any alignment) to float32. Integer and
 * bool types convert by value. */
void sm_convert_to_f32(float *dst, const void *src, sm_dtype t, size_t n);

#endif
