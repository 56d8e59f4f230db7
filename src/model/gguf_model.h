// GGUF files written by llama.cpp's converter (archs gemma, gemma2, gemma3) mapped onto ModelSpec.
#pragma once
#include <string>

#include "core/status.h"
#include "model/model.h"

namespace gf {

class GgufFile;
Result<ModelSpec> spec_from_gguf(const GgufFile& f);
Result<Model> load_gguf_model(const std::string& path);

}  // namespace gf
