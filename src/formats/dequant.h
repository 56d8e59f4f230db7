// Dequantization of one row of any supported weight type to float32, straight
// from ggml's definitions: the oracle the CPU kernels are tested against.
#pragma once
#include <cstdint>

#include "core/status.h"
#include "formats/tensor.h"

namespace gf {

// Dequantizes n elements (a multiple of the block size) of type t into dst.
Status dequantize_row(DType t, const void* src, float* dst, int64_t n);

// The inverse for the types gemforge writes: F32, F16, BF16 and Q8_0
// (llama.cpp's reference rounding); n a multiple of the block size.
Status quantize_row(DType t, const float* src, void* dst, int64_t n);

}  // namespace gf
