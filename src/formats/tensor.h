// A typed, shaped, non-owning view of tensor bytes (usually inside an mmap'd
// file). Shapes are outermost-first (row-major, as PyTorch and safetensors write
// them); the GGUF reader reverses GGUF's innermost-first dims into this order.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace gf {

enum class DType : uint8_t {
  F32, F16, BF16, F64, I8, I16, I32, I64, U8, U16, U32, U64, BOOL, F8_E4M3, F8_E5M2,
  // GGML block-quantized types (numbers are not GGML's ids; see gguf.cpp).
  Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K,
  kCount
};

struct DTypeInfo {
  const char* name;
  int block_elems;  // elements per block (1 for plain types)
  int block_bytes;  // bytes per block
};

const DTypeInfo& dtype_info(DType t);
inline const char* dtype_name(DType t) { return dtype_info(t).name; }
bool is_quantized(DType t);
// Bytes for n elements along a row; n must be a multiple of the block size.
Result<size_t> dtype_bytes(DType t, int64_t n);
Result<DType> dtype_from_safetensors_name(std::string_view s);

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const;
  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
  int64_t rows() const { return cols() == 0 ? 0 : numel() / cols(); }
  size_t row_bytes() const { return rows() == 0 ? 0 : nbytes / static_cast<size_t>(rows()); }
  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes(); }
  std::string shape_str() const;
};

std::string shape_to_string(const std::vector<int64_t>& shape);

// A name read from a file, in double quotes for a one-line error message:
// control bytes and quotes escaped, names over 200 bytes cut with "...".
std::string quoted_name(std::string_view name);

}  // namespace gf
