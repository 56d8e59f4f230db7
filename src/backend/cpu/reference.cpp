// The variant-independent part of the CPU matmul: which dtypes the kernels
// know, and the reference product they are tested against.
#include <vector>

#include "backend/cpu/matmul.h"

namespace gf::cpu {

bool matmul_supported(DType t) {
  switch (t) {
    case DType::F32: case DType::F16: case DType::BF16: case DType::Q4_0: case DType::Q4_1: case DType::Q5_0:
    case DType::Q5_1: case DType::Q8_0: case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K:
    case DType::Q6_K: case DType::Q8_K:
      return true;
    default:
      return false;
  }
}

void matmul_reference(const TensorView& W, const float* x, int64_t T, float* y) {
  const int64_t out = W.rows(), in = W.cols();
  std::vector<float> row(static_cast<size_t>(in));
  for (int64_t r = 0; r < out; ++r) {
    (void)dequantize_row(W.dtype, W.row(r), row.data(), in);
    for (int64_t t = 0; t < T; ++t) {
      double s = 0;
      for (int64_t i = 0; i < in; ++i) s += static_cast<double>(row[static_cast<size_t>(i)]) * x[t * in + i];
      y[t * out + r] = static_cast<float>(s);
    }
  }
}

}  // namespace gf::cpu
