// Hugging Face config.json -> ModelSpec, for gemma, gemma2, gemma3_text,
// gemma3 (multimodal wrapper: text_config), gemma4_text and gemma4, in both
// the transformers-5 form (rope_parameters, layer_types, per_layer_config,
// dtype) and the published-checkpoint form (rope_theta, rope_local_base_freq,
// rope_scaling, sliding_window_pattern, global_head_dim, torch_dtype).
#pragma once
#include <string>

#include "core/status.h"
#include "model/model_spec.h"

namespace gf {

Result<ModelSpec> spec_from_hf_config_text(const std::string& json_text);
Result<ModelSpec> spec_from_hf_config_file(const std::string& path);

}  // namespace gf
