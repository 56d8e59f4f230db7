// The gemma4 GGUF architecture as llama.cpp's converter writes it, mapped onto
// the per-layer table: a bool array says which layers slide (true = sliding),
// key_length / key_length_swa give the global and sliding head_dim,
// head_count_kv and feed_forward_length may be per-layer arrays, a missing
// attn_v on a global layer means k_eq_v, the last shared_kv_layers layers
// reuse K/V, and one rope_freqs tensor (1 for rotated pairs, 1e30 for the
// rest) carries proportional RoPE. Gemma 4 norms are plain w (no +1).
#include <cmath>

#include "formats/gguf.h"
#include "model/gguf_model.h"

namespace gf {
namespace {

// A key that is a scalar or an array of one value per layer.
Result<std::vector<int64_t>> per_layer_ints(const GgufFile& f, const std::string& key, int layers, std::optional<int64_t> def) {
  const GgufValue* v = f.find(key);
  if (!v) {
    if (!def) return Err(f.path() + ": missing key " + key);
    return std::vector<int64_t>(static_cast<size_t>(layers), *def);
  }
  if (v->type == GgufType::ARRAY) {
    GF_ASSIGN_OR_RETURN(std::vector<int64_t> a, f.get_int_array(key));
    if (static_cast<int>(a.size()) != layers)
      return Err(f.path() + ": " + key + " has " + std::to_string(a.size()) + " entries for " + std::to_string(layers) + " layers");
    return a;
  }
  GF_ASSIGN_OR_RETURN(int64_t x, f.get_int(key));
  return std::vector<int64_t>(static_cast<size_t>(layers), x);
}

}  // namespace

Status gemma4_layers_from_gguf(const GgufFile& f, ModelSpec& s) {
  const std::string a = "gemma4.";
  const int L = s.num_layers;
  auto opt_int = [&](const char* k, int64_t def) { auto r = f.get_int(a + k); return r.ok() ? *r : def; };
  auto opt_float = [&](const char* k, double def) { auto r = f.get_float(a + k); return r.ok() ? *r : def; };
  GF_ASSIGN_OR_RETURN(std::vector<int64_t> sliding, per_layer_ints(f, a + "attention.sliding_window_pattern", L, std::nullopt));
  GF_ASSIGN_OR_RETURN(std::vector<int64_t> kv_heads, per_layer_ints(f, a + "attention.head_count_kv", L, s.num_heads));
  GF_ASSIGN_OR_RETURN(std::vector<int64_t> ffn, per_layer_ints(f, a + "feed_forward_length", L, std::nullopt));
  GF_ASSIGN_OR_RETURN(int64_t window, f.get_int(a + "attention.sliding_window"));
  const int64_t global_hd = opt_int("attention.key_length", s.hidden_size / std::max(1, s.num_heads));
  const int64_t local_hd = opt_int("attention.key_length_swa", global_hd);
  s.head_dim = static_cast<int>(local_hd);
  s.num_kv_heads = static_cast<int>(kv_heads.front());
  s.intermediate_size = static_cast<int>(ffn.front());
  // llama.cpp caps logits at 30 when the key is absent.
  s.final_softcap = static_cast<float>(opt_float("final_logit_softcapping", 30.0));
  s.num_kv_shared_layers = static_cast<int>(opt_int("attention.shared_kv_layers", 0));
  s.per_layer_input_dim = static_cast<int>(opt_int("embedding_length_per_layer_input", 0));
  s.num_experts = static_cast<int>(opt_int("expert_count", 0));
  s.top_k_experts = static_cast<int>(opt_int("expert_used_count", 0));
  s.moe_intermediate_size = static_cast<int>(opt_int("expert_feed_forward_length", 0));
  if (s.num_kv_shared_layers < 0 || s.num_kv_shared_layers >= L) return Err(f.path() + ": " + a + "attention.shared_kv_layers out of range");
  if (s.per_layer_input_dim > 0) {
    const TensorView* ple = f.find_tensor("per_layer_token_embd.weight");
    if (!ple || ple->shape.size() != 2) return Err(f.path() + ": no 2-D per_layer_token_embd.weight tensor");
    s.vocab_size_per_layer_input = static_cast<int>(ple->shape[0]);
  }

  // Proportional RoPE on global layers: rope_freqs[i] = factor for rotated pairs, 1e30 (no rotation) for the rest.
  RopeSpec global_rope, local_rope;
  global_rope.kind = RopeKind::Proportional;
  global_rope.theta = opt_float("rope.freq_base", 1e6);
  local_rope.theta = opt_float("rope.freq_base_swa", 1e4);
  global_rope.partial_rotary_factor = 1.0;
  if (const TensorView* rf = f.find_tensor("rope_freqs.weight")) {
    if (rf->dtype != DType::F32 || rf->numel() != global_hd / 2)
      return Err(f.path() + ": rope_freqs.weight must be " + std::to_string(global_hd / 2) + " float32 values");
    const float* ff = reinterpret_cast<const float*>(rf->data);
    int64_t rotated = 0;
    while (rotated < rf->numel() && ff[rotated] < 1e20f) ++rotated;
    global_rope.partial_rotary_factor = 2.0 * static_cast<double>(rotated) / static_cast<double>(global_hd);
    if (rotated > 0) global_rope.factor = ff[0];
  }
  const bool bf16_inv_freq = f.get_bool("gemforge.rope.bf16_inv_freq").ok() && *f.get_bool("gemforge.rope.bf16_inv_freq");
  global_rope.bf16_inv_freq = local_rope.bf16_inv_freq = bf16_inv_freq;

  s.layers.resize(static_cast<size_t>(L));
  const int first_shared = L - s.num_kv_shared_layers;
  for (int i = 0; i < L; ++i) {
    LayerSpec& l = s.layers[static_cast<size_t>(i)];
    const bool local = sliding[static_cast<size_t>(i)] != 0;
    const std::string blk = "blk." + std::to_string(i) + ".";
    l.attention = local ? AttentionKind::Local : AttentionKind::Global;
    l.sliding_window = local ? static_cast<int>(window) : 0;
    l.num_heads = s.num_heads;
    l.num_kv_heads = static_cast<int>(kv_heads[static_cast<size_t>(i)]);
    l.head_dim = static_cast<int>(local ? local_hd : global_hd);
    l.rope = local ? local_rope : global_rope;
    l.attn_scale = 1.0f;
    l.qk_norm = true;
    l.v_norm = true;
    l.sandwich_norms = true;
    l.intermediate_size = static_cast<int>(ffn[static_cast<size_t>(i)]);
    l.moe = f.find_tensor(blk + "ffn_gate_inp.weight") != nullptr;
    l.per_layer_input = s.per_layer_input_dim > 0;
    l.layer_scalar = f.find_tensor(blk + "layer_output_scale.weight") != nullptr;
    if (i >= first_shared) {
      for (int j = first_shared - 1; j >= 0; --j)
        if (s.layers[static_cast<size_t>(j)].attention == l.attention) { l.kv_source_layer = j; break; }
      if (l.kv_source_layer < 0) return Err(f.path() + ": KV-shared layer " + std::to_string(i) + " has no earlier layer of its kind");
    } else {
      l.k_eq_v = f.find_tensor(blk + "attn_v.weight") == nullptr;
    }
  }
  if (s.num_experts > 0 && (s.top_k_experts <= 0 || s.top_k_experts > s.num_experts || s.moe_intermediate_size <= 0))
    return Err(f.path() + ": MoE layers need gemma4.expert_used_count <= expert_count and expert_feed_forward_length");
  return Ok();
}

}  // namespace gf
