// GGUF files written by llama.cpp's converter (archs gemma, gemma2, gemma3, gemma4) mapped onto ModelSpec.
#pragma once
#include <string>

#include "core/status.h"
#include "model/model.h"

namespace gf {

class GgufFile;
Result<ModelSpec> spec_from_gguf(const GgufFile& f);
// The gemma4 arch's per-layer table (gguf_gemma4.cpp); s holds the common keys already.
Status gemma4_layers_from_gguf(const GgufFile& f, ModelSpec& s);
Result<Model> load_gguf_model(const std::string& path);

}  // namespace gf
