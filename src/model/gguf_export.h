// A loaded model (any source: Hugging Face folder, GGUF, synthetic) written
// as a GGUF file in llama.cpp's layout for its architecture: the keys and
// tensor names llama.cpp's converter writes, norms stored as the model uses
// them (Gemma 1-3's 1 + w baked in, as llama.cpp does), so llama.cpp and
// gemforge read the same file.
#pragma once
#include <functional>
#include <string>

#include "core/status.h"
#include "model/model.h"

namespace gf {

class GgufWriter;

struct GgufExportOptions {
  // Matrices as: "source" (the dtype they have; quantized GGUF blocks copied),
  // "f32", "f16", "bf16" or "q8_0". Vectors (norms) are always f32.
  std::string type = "source";
  std::string name;  // general.name; default: the source's file name
  // Also write gemforge.embedding_scale / gemforge.rope.bf16_inv_freq, so
  // gemforge reproduces the checkpoint's rounded buffers (llama.cpp ignores
  // them and computes both in float32, as gemforge does without them).
  bool gemforge_keys = true;
  // Writes the tokenizer keys when the source is not a GGUF (whose keys are copied).
  std::function<Status(GgufWriter&)> add_tokenizer;
  // Called after each tensor is prepared: (done, total).
  std::function<void(size_t, size_t)> progress;
};

Status export_gguf(const Model& m, const std::string& path, const GgufExportOptions& opt = {});

}  // namespace gf
