/* Converts a Hugging Face model folder to another precision (`starmoe convert`, docs/fp8.md):
 * to FP8 as DeepSeek-V3 is released (linear weights F8_E4M3 in 128x128 blocks with F32
 * `_scale_inv`, the rest as it is, a quantization_config in config.json), or every weight to
 * BF16 or F32 (FP8 weights dequantised, scales and quantization_config dropped). FP8 weights of
 * other blocks than 128x128 are quantised again in 128x128 blocks. */
#ifndef STARMOE_IO_CONVERT_H
#define STARMOE_IO_CONVERT_H

#include <starmoe/error.h>

/* Reads src (config.json + model.safetensors or shards with model.safetensors.index.json) and
 * writes dst with `to` = "fp8", "bf16" or "f32": the same shard files (and an index when src
 * has one), config.json edited, the tokenizer files (tokenizer*, special_tokens_map.json)
 * copied. dst must not exist or be an empty folder; it is filled under a temporary name and
 * renamed at the end, so a failure leaves no half-converted dst. Errors name file and tensor. */
int sm_hf_convert(const char *src, const char *to, const char *dst, sm_error *err);

/* 1 when a 2-D tensor of that name is a linear weight DeepSeek-V3 stores in FP8: the MLA
 * projections and the gate/up/down projections of dense FFNs and experts. */
int sm_hf_is_fp8_linear(const char *name);

#endif
