// Activations quantized to int8 blocks of 32 (as llama.cpp's Q8_0), the
// right-hand side of the Q4_0 / Q5_0 / Q8_0 integer kernels.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend/cpu/isa.h"
#include "formats/tensor.h"

namespace gf::cpu {

struct QActs {
  std::vector<int8_t> q;  // [in]
  std::vector<float> d;   // [in/32] scale per block
};

// Q5_0 rows copied as Q8_0 (each 5-bit value stored as its int8, same fp16
// scale): dot products are bit-identical, and the Q8_0 kernel of the SIMD
// variants needs no bit unpacking; the Q5_0 matvec is compute-bound where
// AVX2 lacks VNNI, so the 1.5x larger copy is still faster per weight (repack.cpp).
bool prefer_q8_0_copy(DType t);
size_t q8_0_bytes(const TensorView& w);
void repack_to_q8_0(const TensorView& w, uint8_t* dst);

}  // namespace gf::cpu

GF_CPU_BEGIN

void quantize_acts(const float* x, int64_t n, QActs& a);

// Decode-sized products (few tokens): y[out] = W · a for one token, W of type
// Q8_0, Q4_0 or Q5_0 with `in` columns, rows [r0, r1). Per row the integer
// and float operations are those of the prefill kernel, so a token's result
// does not depend on the batch it is in. Returns false for other types (and
// in the baseline variant).
bool matvec_q32(DType t, const uint8_t* w, size_t row_bytes, int64_t r0, int64_t r1, const QActs& a, int64_t in, float* y);

// A Q8_0 / Q4_0 / Q5_0 row as signed int8 values q[n] and one scale per 32
// d[n/32] (AVX2 and AVX-512 variants; false for other types).
bool unpack_row_i8(DType t, const uint8_t* w, int64_t n, int8_t* q, float* d);

// Prefill (T >= 4) of a Q8_0 / Q4_0 / Q5_0 weight with 512-bit VNNI: y[T, out]
// with exactly the bits of the AVX2 kernels (and so of decode). False outside
// the AVX-512 variant or where the type is not one of these.
bool prefill_q32_avx512(const TensorView& W, const std::vector<QActs>& acts, int64_t T, float* y);

GF_CPU_END
