// Activations quantized to int8 blocks of 32 (as llama.cpp's Q8_0), the
// right-hand side of the Q4_0 / Q5_0 / Q8_0 integer kernels.
#pragma once
#include <cstdint>
#include <vector>

#include "formats/tensor.h"

namespace gf::cpu {

struct QActs {
  std::vector<int8_t> q;  // [in]
  std::vector<float> d;   // [in/32] scale per block
};
void quantize_acts(const float* x, int64_t n, QActs& a);

// Decode-sized products (few tokens): y[out] = W · a for one token, W of type
// Q8_0, Q4_0 or Q5_0 with `in` columns, rows [r0, r1). Per row the integer
// and float operations are those of the prefill kernel, so a token's result
// does not depend on the batch it is in. Returns false for other types.
bool matvec_q32(DType t, const uint8_t* w, size_t row_bytes, int64_t r0, int64_t r1, const QActs& a, int64_t in, float* y);

}  // namespace gf::cpu
