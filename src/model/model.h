// A loaded model: its spec and views of its weights by role, whatever the
// source (Hugging Face folder, GGUF file, or synthetic random weights). Norm
// scales are converted to float32 with the checkpoint's convention applied
// (1 + w for Hugging Face Gemma 1-3), so the forward pass always multiplies.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "formats/tensor.h"
#include "model/model_spec.h"

namespace gf {

struct LayerTensors {
  const TensorView* q = nullptr;
  const TensorView* k = nullptr;
  const TensorView* v = nullptr;  // null when k_eq_v
  const TensorView* o = nullptr;
  const TensorView* gate = nullptr;
  const TensorView* up = nullptr;
  const TensorView* down = nullptr;
  std::vector<float> input_norm, post_attn_norm, pre_ffw_norm, post_ffw_norm, q_norm, k_norm;
  // Gemma 4
  float layer_scalar = 1.0f;                         // x *= layer_scalar at the end of the layer
  const TensorView* ple_gate = nullptr;              // per_layer_input_gate [P, H]
  const TensorView* ple_proj = nullptr;              // per_layer_projection [H, P]
  std::vector<float> ple_post_norm;                  // post_per_layer_input_norm [H]
  struct Expert {
    TensorView gate, up, down;                       // slices of experts.gate_up_proj / down_proj
  };
  std::vector<Expert> experts;                       // MoE layers only
  const TensorView* router_proj = nullptr;           // [E, H]
  std::vector<float> router_scale, per_expert_scale; // [H], [E]
  std::vector<float> post_ffw_norm_1, pre_ffw_norm_2, post_ffw_norm_2;
};

struct Model {
  ModelSpec spec;
  std::string source;                       // path, or "synthetic:<name>"
  std::string format;                       // "safetensors", "gguf", "synthetic"
  const TensorView* embed = nullptr;        // [vocab, hidden]
  const TensorView* lm_head = nullptr;      // == embed when tied
  std::vector<float> final_norm;
  std::vector<LayerTensors> layers;
  // Gemma 4 per-layer embeddings (PLE), when spec.per_layer_input_dim > 0.
  const TensorView* ple_embed = nullptr;    // embed_tokens_per_layer [vocab_per_layer, L * P]
  const TensorView* ple_model_proj = nullptr; // per_layer_model_projection [L * P, H]
  std::vector<float> ple_proj_norm;         // per_layer_projection_norm [P]
  std::vector<const TensorView*> tensors;   // every tensor of the source, for inspect
  std::vector<std::shared_ptr<const void>> keep_alive;  // mmaps and owned buffers behind the views
  std::string tokenizer_path;               // tokenizer.json folder or GGUF; empty if none
  bool has_chat_template = false;           // instruction-tuned: the source ships a chat template
  // Tensor parallelism (model/shard.h): this Model is rank `rank` of
  // `world`'s part of the full one; embed and lm_head hold the vocabulary
  // rows from vocab_begin on.
  struct TensorSlice {
    int rank = 0;
    int world = 1;
    int64_t vocab_begin = 0;
  } tp;

  uint64_t weight_bytes() const;
};

// MODEL is a Hugging Face folder (config.json + safetensors) or a .gguf file.
// A path ending in .json is taken as the config file of the folder it sits in.
Result<Model> load_model(const std::string& path);
// A Hugging Face folder with an explicit config file (e.g. config.hub-style.json).
Result<Model> load_hf_model(const std::string& dir, const std::string& config_file);

// Random weights of a published shape (see synthetic_model_names()).
Result<Model> synthetic_model(const std::string& name, uint64_t seed = 1, DType dtype = DType::BF16);
std::vector<std::string> synthetic_model_names();
// The hub-style config.json of a synthetic shape (for tests and inspect).
Result<std::string> synthetic_config_json(const std::string& name);

// Binds a Model's weights from a tensor lookup (shared by every format).
class TensorLookup {
 public:
  virtual ~TensorLookup() = default;
  virtual const TensorView* find(const std::string& name) const = 0;
};
enum class NamingScheme { HuggingFace, Gguf };
Status bind_weights(const TensorLookup& lookup, NamingScheme naming, const std::string& prefix, Model& model);
// Every bound weight finite and of a dtype the kernels read; errors name the tensor.
Status check_weights(const Model& model);

}  // namespace gf
