#include "formats/tensor.h"

#include <array>

namespace gf {

namespace {
constexpr std::array<DTypeInfo, static_cast<size_t>(DType::kCount)> kInfo = {{
    {"F32", 1, 4},     {"F16", 1, 2},    {"BF16", 1, 2},    {"F64", 1, 8},    {"I8", 1, 1},
    {"I16", 1, 2},     {"I32", 1, 4},    {"I64", 1, 8},     {"U8", 1, 1},     {"U16", 1, 2},
    {"U32", 1, 4},     {"U64", 1, 8},    {"BOOL", 1, 1},    {"F8_E4M3", 1, 1}, {"F8_E5M2", 1, 1},
    {"Q4_0", 32, 18},  {"Q4_1", 32, 20}, {"Q5_0", 32, 22},  {"Q5_1", 32, 24}, {"Q8_0", 32, 34},
    {"Q8_1", 32, 36},  {"Q2_K", 256, 84}, {"Q3_K", 256, 110}, {"Q4_K", 256, 144}, {"Q5_K", 256, 176},
    {"Q6_K", 256, 210}, {"Q8_K", 256, 292},
}};
}  // namespace

const DTypeInfo& dtype_info(DType t) { return kInfo[static_cast<size_t>(t)]; }

bool is_quantized(DType t) { return dtype_info(t).block_elems > 1; }

Result<size_t> dtype_bytes(DType t, int64_t n) {
  const auto& info = dtype_info(t);
  if (n < 0) return Err("negative element count");
  if (n % info.block_elems != 0)
    return Err(std::string("row of ") + std::to_string(n) + " elements is not a multiple of the " +
               info.name + " block size " + std::to_string(info.block_elems));
  return static_cast<size_t>(n / info.block_elems) * static_cast<size_t>(info.block_bytes);
}

Result<DType> dtype_from_safetensors_name(std::string_view s) {
  static const std::pair<const char*, DType> kNames[] = {
      {"F32", DType::F32},   {"F16", DType::F16},         {"BF16", DType::BF16},        {"F64", DType::F64},
      {"I8", DType::I8},     {"I16", DType::I16},         {"I32", DType::I32},          {"I64", DType::I64},
      {"U8", DType::U8},     {"U16", DType::U16},         {"U32", DType::U32},          {"U64", DType::U64},
      {"BOOL", DType::BOOL}, {"F8_E4M3", DType::F8_E4M3}, {"F8_E5M2", DType::F8_E5M2},
  };
  for (const auto& [name, t] : kNames)
    if (s == name) return t;
  return Err("unsupported dtype \"" + std::string(s) + "\"");
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string TensorView::shape_str() const { return shape_to_string(shape); }

std::string quoted_name(std::string_view name) {
  constexpr size_t kMax = 200;
  std::string s = "\"";
  for (size_t i = 0; i < name.size() && i < kMax; ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
      static const char* hex = "0123456789abcdef";
      s += "\\x";
      s += hex[c >> 4];
      s += hex[c & 15];
    } else {
      s += static_cast<char>(c);
    }
  }
  if (name.size() > kMax) s += "...";
  return s + "\"";
}

}  // namespace gf
