// CPU matrix products over weights of any supported dtype (float or GGML
// block-quantized), with float32 activations. The float32 reference path
// (dequantize a row, dot in float32) is what the fused kernels are tested against.
#pragma once
#include <cstdint>
#include <functional>

#include "backend/cpu/isa.h"
#include "core/status.h"
#include "formats/dequant.h"
#include "formats/tensor.h"

namespace gf::cpu {

// Whether the CPU kernels know this weight dtype (reference.cpp).
bool matmul_supported(DType t);

// The slow, obviously-correct version: dequantize each row, dot in double.
void matmul_reference(const TensorView& W, const float* x, int64_t T, float* y);

}  // namespace gf::cpu

GF_CPU_BEGIN

// y[T, out] = x[T, in] · W[out, in]^T, multithreaded over the global pool.
// W.shape = [out, in]; x and y are dense row-major float32.
void matmul(const TensorView& W, const float* x, int64_t T, float* y);

// Runs fn(r0, r1, t0, t1) over blocks of rows of W (~256 KB of weights, kept
// in L2) x groups of `toks` tokens, the tokens innermost, rows split across
// the thread pool.
void for_row_blocks(const TensorView& W, int64_t T, int64_t toks, const std::function<void(int64_t, int64_t, int64_t, int64_t)>& fn);

// BF16 weights with AVX512-BF16 (bf16_matmul_avx512.cpp): activations split
// into hi + lo bf16 parts; false in the variants without AVX512-BF16 or where
// W is not BF16.
bool matmul_bf16_split(const TensorView& W, const float* x, int64_t T, float* y);

// Float32 dot product (AVX2 + FMA where available), for attention and friends.
float dot_f32(const float* a, const float* b, int64_t n);

GF_CPU_END
