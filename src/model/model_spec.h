// ModelSpec: one description for every Gemma generation. The forward pass
// reads these fields; it never branches on a model name. A per-layer table
// carries everything that may differ between layers (Gemma 2's alternation,
// Gemma 3's 5:1 pattern and per-type rope, Gemma 4's global head_dim, KV heads,
// KV sharing, double-wide MLP, MoE, per-layer embeddings).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace gf {

enum class Family { Gemma1, Gemma2, Gemma3, Gemma4 };
enum class AttentionKind { Global, Local };
enum class RopeKind { Default, Linear, Proportional };

const char* family_name(Family f);

struct RopeSpec {
  RopeKind kind = RopeKind::Default;
  double theta = 10000.0;
  double factor = 1.0;                 // linear / proportional scaling: inv_freq /= factor
  double partial_rotary_factor = 1.0;  // proportional: fraction of dims that rotate
  bool bf16_inv_freq = false;          // round inv_freq to bf16 as transformers does for bf16 checkpoints
  // inv_freq[i] for i in [0, head_dim/2): 0 for unrotated pairs.
  std::vector<float> inv_freq(int head_dim) const;
  bool operator==(const RopeSpec&) const = default;
};

struct LayerSpec {
  AttentionKind attention = AttentionKind::Global;
  int sliding_window = 0;  // local layers: keys j with i - W < j <= i; 0 = unlimited
  int head_dim = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  RopeSpec rope;
  float attn_scale = 1.0f;     // multiplies q·k
  float attn_softcap = 0.0f;   // 0 = none
  bool qk_norm = false;        // RMSNorm over head_dim on q and k
  bool v_norm = false;         // RMSNorm without weight on v (Gemma 4)
  bool k_eq_v = false;         // no v_proj; v is the raw k projection (Gemma 4 global)
  bool sandwich_norms = false; // post-attention and pre/post-feedforward norms (Gemma 2+)
  int kv_source_layer = -1;    // >= 0: reuse that layer's K/V (Gemma 4 KV sharing)
  int intermediate_size = 0;
  bool moe = false;            // Gemma 4 MoE block beside the dense MLP
  bool per_layer_input = false;// Gemma 4 per-layer embeddings
  bool layer_scalar = false;   // Gemma 4: x *= layer_scalar at the end of the layer
  bool operator==(const LayerSpec&) const = default;
};

struct ModelSpec {
  Family family = Family::Gemma1;
  std::string model_type;           // as in config.json / GGUF arch
  int vocab_size = 0;
  int hidden_size = 0;
  int num_layers = 0;
  int intermediate_size = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  float embed_scale = 1.0f;         // sqrt(hidden), rounded to a half-precision checkpoint's dtype as transformers rounds its buffer
  float final_softcap = 0.0f;       // 0 = none
  bool norm_plus_one = true;        // HF Gemma 1-3 checkpoints store w, used as (1 + w)
  bool tie_word_embeddings = true;
  std::string weights_dtype = "bfloat16";
  int bos_token_id = 2;
  std::vector<int> eos_token_ids = {1};
  int pad_token_id = 0;
  // Gemma 4 extras
  int num_experts = 0;
  int top_k_experts = 0;
  int moe_intermediate_size = 0;
  int per_layer_input_dim = 0;      // hidden_size_per_layer_input
  int vocab_size_per_layer_input = 0;
  int num_kv_shared_layers = 0;

  std::vector<LayerSpec> layers;

  // Checks internal consistency (head counts divide, windows positive, ...).
  Status validate() const;
  // Whether the forward pass of this build implements every feature used.
  Status check_supported() const;
  std::string summary() const;     // multi-line, for `inspect`
  std::string layer_table() const; // one line per layer
  bool operator==(const ModelSpec&) const = default;
};

}  // namespace gf
