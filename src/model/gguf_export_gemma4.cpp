// The gemma4 keys and tensors as llama.cpp's converter writes them (its
// Gemma4Model): per-layer arrays where layers differ, the sliding pattern as
// bools (true = sliding), the global head_dim as key_length and the sliding
// one as key_length_swa, one rope_freqs tensor for proportional RoPE, no v_proj
// where k_eq_v, plain-w norms, fused experts, the router in float32.
#include <cstring>

#include "model/gguf_export_internal.h"

namespace gf::gguf_export {
namespace {

GgufValue per_layer_array(const ModelSpec& s, GgufType type, int (*get)(const LayerSpec&)) {
  GgufValue v;
  v.type = GgufType::ARRAY;
  v.elem_type = type;
  for (const LayerSpec& l : s.layers) v.ints.push_back(get(l));
  return v;
}

bool same_for_all(const ModelSpec& s, int (*get)(const LayerSpec&)) {
  for (const LayerSpec& l : s.layers)
    if (get(l) != get(s.layers.front())) return false;
  return true;
}

// The experts' gate/up (or down) slices back into llama.cpp's fused [E, rows, cols] tensor.
TensorView fuse(const std::vector<LayerTensors::Expert>& experts, bool gate_up, const std::string& name, Exporter& x) {
  std::vector<uint8_t> bytes;
  const TensorView& first = gate_up ? experts.front().gate : experts.front().down;
  for (const auto& e : experts)
    for (const TensorView* t : gate_up ? std::vector<const TensorView*>{&e.gate, &e.up} : std::vector<const TensorView*>{&e.down})
      bytes.insert(bytes.end(), t->data, t->data + t->nbytes);
  const std::vector<uint8_t>& kept = x.keep(std::move(bytes));
  TensorView v;
  v.name = name;
  v.dtype = first.dtype;
  v.shape = {static_cast<int64_t>(experts.size()), gate_up ? first.shape[0] * 2 : first.shape[0], first.shape[1]};
  v.data = kept.data();
  v.nbytes = kept.size();
  return v;
}

}  // namespace

Status add_gemma4(const Model& m, Exporter& x) {
  const ModelSpec& s = m.spec;
  GgufWriter& w = x.writer();
  const std::string a = "gemma4.";
  const LayerSpec* global = nullptr;
  const LayerSpec* local = nullptr;
  for (const LayerSpec& l : s.layers) (l.attention == AttentionKind::Global ? global : local) = &l;
  if (!global) return Err("a Gemma 4 model without a global layer cannot be written as gemma4 GGUF");
  const LayerSpec& g = *global;
  const LayerSpec& sw = local ? *local : g;
  auto ffn = [](const LayerSpec& l) { return l.intermediate_size; };
  auto kv = [](const LayerSpec& l) { return l.num_kv_heads; };
  w.add_u32(a + "block_count", static_cast<uint32_t>(s.num_layers));
  w.add_u32(a + "context_length", static_cast<uint32_t>(s.max_position_embeddings));
  w.add_u32(a + "embedding_length", static_cast<uint32_t>(s.hidden_size));
  if (same_for_all(s, ffn)) w.add_u32(a + "feed_forward_length", static_cast<uint32_t>(s.layers.front().intermediate_size));
  else w.add(a + "feed_forward_length", per_layer_array(s, GgufType::I32, ffn));
  w.add_u32(a + "attention.head_count", static_cast<uint32_t>(s.num_heads));
  if (same_for_all(s, kv)) w.add_u32(a + "attention.head_count_kv", static_cast<uint32_t>(s.layers.front().num_kv_heads));
  else w.add(a + "attention.head_count_kv", per_layer_array(s, GgufType::I32, kv));
  w.add_f32(a + "rope.freq_base", static_cast<float>(g.rope.theta));
  w.add_f32(a + "rope.freq_base_swa", static_cast<float>(sw.rope.theta));
  w.add_f32(a + "attention.layer_norm_rms_epsilon", s.rms_norm_eps);
  if (s.num_experts > 0) {
    w.add_u32(a + "expert_count", static_cast<uint32_t>(s.num_experts));
    w.add_u32(a + "expert_used_count", static_cast<uint32_t>(s.top_k_experts));
  }
  w.add_u32(a + "attention.key_length", static_cast<uint32_t>(g.head_dim));
  w.add_u32(a + "attention.value_length", static_cast<uint32_t>(g.head_dim));
  if (s.final_softcap > 0) w.add_f32(a + "final_logit_softcapping", s.final_softcap);
  w.add_u32(a + "attention.sliding_window", static_cast<uint32_t>(sw.sliding_window));
  w.add_u32(a + "attention.shared_kv_layers", static_cast<uint32_t>(s.num_kv_shared_layers));
  w.add_u32(a + "embedding_length_per_layer_input", static_cast<uint32_t>(s.per_layer_input_dim));
  w.add(a + "attention.sliding_window_pattern",
        per_layer_array(s, GgufType::BOOL, [](const LayerSpec& l) { return l.attention == AttentionKind::Local ? 1 : 0; }));
  w.add_u32(a + "attention.key_length_swa", static_cast<uint32_t>(sw.head_dim));
  w.add_u32(a + "attention.value_length_swa", static_cast<uint32_t>(sw.head_dim));
  if (s.num_experts > 0) w.add_u32(a + "expert_feed_forward_length", static_cast<uint32_t>(s.moe_intermediate_size));
  w.add_u32(a + "rope.dimension_count", static_cast<uint32_t>(g.head_dim));
  w.add_u32(a + "rope.dimension_count_swa", static_cast<uint32_t>(sw.head_dim));

  // Proportional RoPE: the rotated pairs divide by `factor`, the rest by 1e30 (no rotation).
  std::vector<float> freqs(static_cast<size_t>(g.head_dim / 2), 1e30f);
  const int rotated = static_cast<int>(g.rope.partial_rotary_factor * g.head_dim / 2);
  for (int i = 0; i < rotated; ++i) freqs[static_cast<size_t>(i)] = static_cast<float>(g.rope.factor);
  GF_RETURN_IF_ERROR(x.vector("rope_freqs.weight", freqs));
  GF_RETURN_IF_ERROR(x.matrix("token_embd.weight", *m.embed));
  if (s.per_layer_input_dim > 0) {
    GF_RETURN_IF_ERROR(x.matrix("per_layer_token_embd.weight", *m.ple_embed));
    GF_RETURN_IF_ERROR(x.matrix("per_layer_model_proj.weight", *m.ple_model_proj));
    GF_RETURN_IF_ERROR(x.vector("per_layer_proj_norm.weight", m.ple_proj_norm));
  }
  GF_RETURN_IF_ERROR(x.vector("output_norm.weight", m.final_norm));
  for (int i = 0; i < s.num_layers; ++i) {
    const LayerSpec& ls = s.layers[static_cast<size_t>(i)];
    const LayerTensors& L = m.layers[static_cast<size_t>(i)];
    GF_RETURN_IF_ERROR(add_common_layer(m, i, x));
    if (ls.layer_scalar) GF_RETURN_IF_ERROR(x.vector(blk(i, "layer_output_scale"), {L.layer_scalar}));
    if (ls.per_layer_input) {
      GF_RETURN_IF_ERROR(x.matrix(blk(i, "inp_gate"), *L.ple_gate));
      GF_RETURN_IF_ERROR(x.matrix(blk(i, "proj"), *L.ple_proj));
      GF_RETURN_IF_ERROR(x.vector(blk(i, "post_norm"), L.ple_post_norm));
    }
    if (ls.moe) {
      const std::string pre = "blk." + std::to_string(i) + ".";
      GF_RETURN_IF_ERROR(x.matrix(blk(i, "ffn_gate_inp"), *L.router_proj, DType::F32));
      GF_RETURN_IF_ERROR(x.vector(pre + "ffn_gate_inp.scale", L.router_scale));
      GF_RETURN_IF_ERROR(x.vector(pre + "ffn_down_exps.scale", L.per_expert_scale));
      const TensorView gu = fuse(L.experts, true, pre + "ffn_gate_up_exps.weight", x);
      const TensorView dn = fuse(L.experts, false, pre + "ffn_down_exps.weight", x);
      GF_RETURN_IF_ERROR(x.matrix(gu.name, gu));
      GF_RETURN_IF_ERROR(x.matrix(dn.name, dn));
      GF_RETURN_IF_ERROR(x.vector(blk(i, "pre_ffw_norm_2"), L.pre_ffw_norm_2));
      GF_RETURN_IF_ERROR(x.vector(blk(i, "post_ffw_norm_1"), L.post_ffw_norm_1));
      GF_RETURN_IF_ERROR(x.vector(blk(i, "post_ffw_norm_2"), L.post_ffw_norm_2));
    }
  }
  return Ok();
}

}  // namespace gf::gguf_export
