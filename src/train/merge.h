// A LoRA adapter merged into its base model: W' = W + scale * B A for every
// adapted projection, written as a Hugging Face folder (safetensors shards
// with an index when there are several, config, generation config, tokenizer
// and chat template copied), which transformers loads as a plain model.
#pragma once
#include <functional>
#include <string>

#include "core/status.h"
#include "model/model.h"
#include "train/lora.h"

namespace gf::train {

struct MergeOptions {
  std::string dtype = "source";         // merged matrices as: source (the checkpoint's), bfloat16, float16, float32
  uint64_t shard_bytes = 2ull << 30;    // a new shard past this many bytes
  std::function<void(size_t, size_t)> progress;  // (tensors done, total)
};

// The merged weight of one projection as float32 [out, in].
Result<std::vector<float>> merged_weight(const TensorView& w, const LoraMatrix& m, float scale);

// model must be a Hugging Face folder (model.source); out is created.
Status merge_to_folder(const Model& model, const LoraAdapter& adapter, const std::string& out, const MergeOptions& opt = {});

}  // namespace gf::train
