// Internal to gguf_export*.cpp: the tensor writer shared by every architecture.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "formats/gguf_writer.h"
#include "model/gguf_export.h"

namespace gf::gguf_export {

// llama.cpp's general.file_type (llama_ftype) for the matrices' type.
uint32_t file_type(DType t);
// The --type option's dtype ("source": the tensor's own).
Result<DType> target_type(const std::string& type, DType source);

// Matrices converted to the chosen type; vectors always float32.
class Exporter {
 public:
  explicit Exporter(const GgufExportOptions& opt) : opt_(opt) {}

  // A matrix (any dtype the CPU reads) under `name`, converted to the target
  // type, or to `force` (llama.cpp keeps some matrices in float32).
  Status matrix(const std::string& name, const TensorView& t, std::optional<DType> force = std::nullopt);
  Status vector(const std::string& name, const std::vector<float>& v) {
    return w_.add_tensor(name, DType::F32, {static_cast<int64_t>(v.size())}, v.data(), v.size() * 4);
  }
  GgufWriter& writer() { return w_; }
  // Bytes that must live until the file is written (tensors assembled here).
  const std::vector<uint8_t>& keep(std::vector<uint8_t> bytes) { return *kept_.emplace_back(std::make_unique<std::vector<uint8_t>>(std::move(bytes))); }

 private:
  const GgufExportOptions& opt_;
  GgufWriter w_;
  std::vector<std::unique_ptr<std::vector<uint8_t>>> kept_;
};

// "gemma", "gemma2", "gemma3", "gemma4": llama.cpp's architecture names.
const char* arch_name(Family f);
// "blk.<i>.<what>.weight".
std::string blk(int i, const char* what);
// The tensors of layer i every generation has (projections, norms, q/k norms).
Status add_common_layer(const Model& m, int i, Exporter& x);

// The gemma4 keys and tensors (gguf_export_gemma4.cpp).
Status add_gemma4(const Model& m, Exporter& x);

}  // namespace gf::gguf_export
