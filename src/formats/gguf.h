// GGUF reader (versions 2 and 3): metadata key/values of every type, tensor
// infos, alignment; tensor data stays in the mmap'd file. Every offset and size
// is validated so a corrupt or truncated file is an error, never a crash.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "core/mapped_file.h"
#include "core/status.h"
#include "formats/tensor.h"

namespace gf {

enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7, STRING = 8, ARRAY = 9,
  U64 = 10, I64 = 11, F64 = 12,
};

struct GgufValue {
  GgufType type = GgufType::U8;
  // Scalars: integers and bools in i, floats in f, strings in s.
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0;
  std::string s;
  // Arrays: the element type; elements of scalar type are stored compactly
  // (a 262k-token vocabulary as GgufValues took 75 MB), arrays of arrays in arr.
  GgufType elem_type = GgufType::U8;
  std::vector<int64_t> ints;          // integer and bool elements (unsigned ones as their bits)
  std::vector<double> floats;         // F32 / F64 elements
  std::vector<std::string> strings;   // STRING elements
  std::vector<GgufValue> arr;         // ARRAY elements
  size_t array_size() const;
  GgufValue element(size_t k) const;  // element k as a scalar (or array) value
};

class GgufFile {
 public:
  static Result<GgufFile> open(const std::string& path);
  // The same reader over bytes already in memory (see MappedFile::borrow).
  static Result<GgufFile> open_mapped(std::shared_ptr<MappedFile> file);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return file_->path(); }
  const std::vector<std::string>& keys() const { return key_order_; }
  const GgufValue* find(const std::string& key) const;

  // Typed getters: an error names the key and what was found instead.
  Result<std::string> get_string(const std::string& key) const;
  Result<int64_t> get_int(const std::string& key) const;      // any integer type
  Result<double> get_float(const std::string& key) const;     // F32/F64 (or integer)
  Result<bool> get_bool(const std::string& key) const;
  Result<std::vector<std::string>> get_string_array(const std::string& key) const;
  Result<std::vector<double>> get_float_array(const std::string& key) const;
  Result<std::vector<int64_t>> get_int_array(const std::string& key) const;

  // Tensors in file order; shapes are outermost-first (GGUF dims reversed).
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find_tensor(const std::string& name) const;

  // Keeps the mapping alive for views handed out.
  std::shared_ptr<MappedFile> mapping() const { return file_; }

 private:
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue> kv_;
  std::vector<std::string> key_order_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// GGML type ids (ggml.h) <-> our DType; unknown ids and dtypes are errors.
Result<DType> dtype_from_ggml_type(uint32_t id);
Result<uint32_t> ggml_type_id(DType t);

// Human-readable value for `inspect` (arrays abbreviated).
std::string gguf_value_to_string(const GgufValue& v, size_t max_items = 8);

}  // namespace gf
