// LoRA adapters in PEFT's on-disk format: DIR/adapter_config.json and
// DIR/adapter_model.safetensors with PEFT's key names,
//   base_model.model.<module path>.layers.<i>.<self_attn|mlp>.<proj>.lora_A.weight  [r, in]
//   base_model.model.<module path>.layers.<i>.<self_attn|mlp>.<proj>.lora_B.weight  [out, r]
// where <module path> is transformers' path to the text decoder: "model" for
// Gemma*ForCausalLM, "model.language_model" for the multimodal wrappers
// (Gemma 3 4B+, Gemma 4), whatever the checkpoint's own tensor names.
#pragma once
#include <string>

#include "core/status.h"
#include "model/model.h"
#include "runtime/adapters.h"
#include "train/lora.h"

namespace gf::train {

// "model" or "model.language_model", from the model's tensor names.
std::string peft_module_path(const Model& m);

struct AdapterMeta {
  std::string base_model;   // base_model_name_or_path
  std::string module_path;  // see peft_module_path
};

// Writes both files into dir (which must exist).
Status save_adapter(const std::string& dir, const LoraAdapter& a, const AdapterMeta& meta);
// Reads an adapter saved by gemforge or PEFT for this model (shapes checked against the spec).
Result<LoraAdapter> load_adapter(const std::string& dir, const ModelSpec& spec);
// The same, as the decoder takes it (Decoder::create, Engine::add_adapter). (adapter_view.cpp)
Result<LoadedAdapter> load_adapter_view(const std::string& dir, const ModelSpec& spec);

}  // namespace gf::train
