// safetensors reader: single file or sharded (model.safetensors.index.json),
// memory-mapped. Header, offsets, sizes and dtypes are validated: a truncated,
// corrupt or hostile file is an error naming the file and the problem.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "core/status.h"
#include "formats/tensor.h"

namespace gf {

class SafetensorsFile {
 public:
  static Result<SafetensorsFile> open(const std::string& path);
  // The same reader over bytes already in memory (see MappedFile::borrow).
  static Result<SafetensorsFile> open_mapped(std::shared_ptr<MappedFile> file);

  const std::string& path() const { return file_->path(); }
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::shared_ptr<MappedFile> mapping() const { return file_; }

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint: one file, or the shards an index names.
class SafetensorsCheckpoint {
 public:
  // path: a .safetensors file, a model.safetensors.index.json, or a folder holding either.
  static Result<SafetensorsCheckpoint> open(const std::string& path);
  const TensorView* find(const std::string& name) const;
  std::vector<const TensorView*> tensors() const;
  const std::vector<SafetensorsFile>& files() const { return files_; }

 private:
  std::vector<SafetensorsFile> files_;
  std::map<std::string, const TensorView*> index_;
};

// Writes tensors (F32/F16/BF16/I32...) to a .safetensors file (for --logits-out).
struct OwnedTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
Status write_safetensors(const std::string& path, const std::vector<OwnedTensor>& tensors);

}  // namespace gf
