// Minimal GGUF v3 writer: metadata key/values and tensors, laid out as
// llama.cpp does (header, KVs, tensor infos, aligned data section). Used by
// convert/quantize and by tests that craft files for the reader.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "formats/gguf.h"
#include "formats/tensor.h"

namespace gf {

class GgufWriter {
 public:
  // Alignment of every tensor's data (general.alignment is written when it
  // differs from GGUF's default of 32).
  void set_alignment(uint64_t a) { alignment_ = a; }

  // Any value, including nested arrays (type ARRAY with elem_type and arr).
  void add(const std::string& key, GgufValue v);
  void add_string(const std::string& key, const std::string& s);
  void add_u32(const std::string& key, uint32_t v);
  void add_i32(const std::string& key, int32_t v);
  void add_u64(const std::string& key, uint64_t v);
  void add_f32(const std::string& key, float v);
  void add_bool(const std::string& key, bool v);
  void add_string_array(const std::string& key, const std::vector<std::string>& v);
  void add_f32_array(const std::string& key, const std::vector<float>& v);
  void add_i32_array(const std::string& key, const std::vector<int32_t>& v);

  bool has_key(const std::string& key) const;

  // Tensor of shape outermost-first (written innermost-first, as GGUF wants).
  // copy=false borrows data, which must stay alive until write/serialize.
  Status add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape, const void* data,
                    size_t nbytes, bool copy = true);

  // The whole file as bytes (small files: tests) or streamed to disk.
  Result<std::string> serialize() const;
  Status write(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    const uint8_t* data;
    size_t nbytes;
    std::vector<uint8_t> owned;
  };
  template <class Sink>
  Status emit(Sink& sink) const;

  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace gf
