// Finds each weight by role, checks its shape against the spec and converts
// norm scales. Errors name the tensor, the shape found and the shape expected.
#include <cstring>

#include "formats/dequant.h"
#include "model/model.h"

namespace gf {
namespace {

struct Names {
  NamingScheme scheme;
  std::string prefix;
  std::string embed() const { return scheme == NamingScheme::Gguf ? "token_embd.weight" : prefix + "embed_tokens.weight"; }
  std::string final_norm() const { return scheme == NamingScheme::Gguf ? "output_norm.weight" : prefix + "norm.weight"; }
  std::string lm_head() const { return scheme == NamingScheme::Gguf ? "output.weight" : "lm_head.weight"; }
  std::string layer(int i, const char* hf, const char* gguf) const {
    return scheme == NamingScheme::Gguf ? "blk." + std::to_string(i) + "." + gguf + ".weight"
                                        : prefix + "layers." + std::to_string(i) + "." + hf + ".weight";
  }
};

Result<const TensorView*> need(const TensorLookup& l, const std::string& name, std::vector<int64_t> shape) {
  const TensorView* t = l.find(name);
  if (!t) return Err("missing tensor " + name + " (expected shape " + shape_to_string(shape) + ")");
  if (t->shape != shape)
    return Err("tensor " + name + " has shape " + t->shape_str() + ", config says " + shape_to_string(shape));
  return t;
}

Result<std::vector<float>> norm_vector(const TensorLookup& l, const std::string& name, int64_t n, bool plus_one) {
  GF_ASSIGN_OR_RETURN(const TensorView* t, need(l, name, {n}));
  std::vector<float> v(static_cast<size_t>(n));
  GF_RETURN_IF_ERROR(dequantize_row(t->dtype, t->data, v.data(), n).with_context("tensor " + name));
  if (plus_one)
    for (auto& x : v) x += 1.0f;  // HF Gemma 1-3 store w, the model uses 1 + w
  return v;
}

// One float read from a tensor of one element (Gemma 4's layer_scalar).
Result<float> scalar(const TensorLookup& l, const std::string& name) {
  GF_ASSIGN_OR_RETURN(std::vector<float> v, norm_vector(l, name, 1, false));
  return v[0];
}

// A [rows, cols] slice of a 3-D [E, R, cols] tensor: expert e, rows [r0, r0 + rows).
TensorView expert_slice(const TensorView& t, int64_t e, int64_t r0, int64_t rows, const std::string& what) {
  TensorView v;
  v.name = t.name + "[" + std::to_string(e) + "]." + what;
  v.dtype = t.dtype;
  v.shape = {rows, t.shape[2]};
  const size_t row_bytes = t.nbytes / static_cast<size_t>(t.shape[0] * t.shape[1]);
  v.data = t.data + static_cast<size_t>(e * t.shape[1] + r0) * row_bytes;
  v.nbytes = static_cast<size_t>(rows) * row_bytes;
  return v;
}

// Gemma 4's extras of one layer, under Hugging Face's or llama.cpp's names.
Status bind_gemma4_layer(const TensorLookup& lookup, const Names& n, const ModelSpec& s, int i, LayerTensors& L) {
  const bool gguf = n.scheme == NamingScheme::Gguf;
  const std::string pre = gguf ? "blk." + std::to_string(i) + "." : n.prefix + "layers." + std::to_string(i) + ".";
  auto name = [&](const char* hf, const char* gg) { return pre + (gguf ? gg : hf); };
  const int64_t H = s.hidden_size;
  if (lookup.find(name("layer_scalar", "layer_output_scale.weight"))) {
    GF_ASSIGN_OR_RETURN(L.layer_scalar, scalar(lookup, name("layer_scalar", "layer_output_scale.weight")));
  }
  if (s.per_layer_input_dim > 0) {
    const int64_t P = s.per_layer_input_dim;
    GF_ASSIGN_OR_RETURN(L.ple_gate, need(lookup, name("per_layer_input_gate.weight", "inp_gate.weight"), {P, H}));
    GF_ASSIGN_OR_RETURN(L.ple_proj, need(lookup, name("per_layer_projection.weight", "proj.weight"), {H, P}));
    GF_ASSIGN_OR_RETURN(L.ple_post_norm, norm_vector(lookup, name("post_per_layer_input_norm.weight", "post_norm.weight"), H, false));
  }
  if (s.layers[static_cast<size_t>(i)].moe) {
    const int64_t E = s.num_experts, I = s.moe_intermediate_size;
    GF_ASSIGN_OR_RETURN(const TensorView* gu, need(lookup, name("experts.gate_up_proj", "ffn_gate_up_exps.weight"), {E, 2 * I, H}));
    GF_ASSIGN_OR_RETURN(const TensorView* dn, need(lookup, name("experts.down_proj", "ffn_down_exps.weight"), {E, H, I}));
    if (is_quantized(gu->dtype) || is_quantized(dn->dtype)) return Err("tensor " + gu->name + ": quantized experts are not supported yet");
    for (int64_t e = 0; e < E; ++e)
      L.experts.push_back({expert_slice(*gu, e, 0, I, "gate"), expert_slice(*gu, e, I, I, "up"), expert_slice(*dn, e, 0, H, "down")});
    GF_ASSIGN_OR_RETURN(L.router_proj, need(lookup, name("router.proj.weight", "ffn_gate_inp.weight"), {E, H}));
    GF_ASSIGN_OR_RETURN(L.router_scale, norm_vector(lookup, name("router.scale", "ffn_gate_inp.scale"), H, false));
    GF_ASSIGN_OR_RETURN(L.per_expert_scale, norm_vector(lookup, name("router.per_expert_scale", "ffn_down_exps.scale"), E, false));
    GF_ASSIGN_OR_RETURN(L.post_ffw_norm_1, norm_vector(lookup, name("post_feedforward_layernorm_1.weight", "post_ffw_norm_1.weight"), H, false));
    GF_ASSIGN_OR_RETURN(L.pre_ffw_norm_2, norm_vector(lookup, name("pre_feedforward_layernorm_2.weight", "pre_ffw_norm_2.weight"), H, false));
    GF_ASSIGN_OR_RETURN(L.post_ffw_norm_2, norm_vector(lookup, name("post_feedforward_layernorm_2.weight", "post_ffw_norm_2.weight"), H, false));
  }
  return Ok();
}

}  // namespace

Status bind_weights(const TensorLookup& lookup, NamingScheme naming, const std::string& prefix, Model& m) {
  const ModelSpec& s = m.spec;
  Names n{naming, prefix};
  const int64_t H = s.hidden_size;
  GF_ASSIGN_OR_RETURN(m.embed, need(lookup, n.embed(), {s.vocab_size, H}));
  m.lm_head = m.embed;
  if (!s.tie_word_embeddings || lookup.find(n.lm_head())) {
    GF_ASSIGN_OR_RETURN(m.lm_head, need(lookup, n.lm_head(), {s.vocab_size, H}));
  }
  const bool p1 = s.norm_plus_one;
  GF_ASSIGN_OR_RETURN(m.final_norm, norm_vector(lookup, n.final_norm(), H, p1));
  m.layers.resize(static_cast<size_t>(s.num_layers));
  for (int i = 0; i < s.num_layers; ++i) {
    const LayerSpec& ls = s.layers[static_cast<size_t>(i)];
    LayerTensors& L = m.layers[static_cast<size_t>(i)];
    const int64_t qd = static_cast<int64_t>(ls.num_heads) * ls.head_dim;
    const int64_t kvd = static_cast<int64_t>(ls.num_kv_heads) * ls.head_dim;
    const int64_t I = ls.intermediate_size;
    GF_ASSIGN_OR_RETURN(L.q, need(lookup, n.layer(i, "self_attn.q_proj", "attn_q"), {qd, H}));
    const bool shares_kv = ls.kv_source_layer >= 0;  // Gemma 4: no k/v projections of its own
    if (!shares_kv) {
      GF_ASSIGN_OR_RETURN(L.k, need(lookup, n.layer(i, "self_attn.k_proj", "attn_k"), {kvd, H}));
    }
    if (!shares_kv && !ls.k_eq_v) {
      GF_ASSIGN_OR_RETURN(L.v, need(lookup, n.layer(i, "self_attn.v_proj", "attn_v"), {kvd, H}));
    }
    GF_ASSIGN_OR_RETURN(L.o, need(lookup, n.layer(i, "self_attn.o_proj", "attn_output"), {H, qd}));
    GF_ASSIGN_OR_RETURN(L.gate, need(lookup, n.layer(i, "mlp.gate_proj", "ffn_gate"), {I, H}));
    GF_ASSIGN_OR_RETURN(L.up, need(lookup, n.layer(i, "mlp.up_proj", "ffn_up"), {I, H}));
    GF_ASSIGN_OR_RETURN(L.down, need(lookup, n.layer(i, "mlp.down_proj", "ffn_down"), {H, I}));
    GF_ASSIGN_OR_RETURN(L.input_norm, norm_vector(lookup, n.layer(i, "input_layernorm", "attn_norm"), H, p1));
    if (ls.sandwich_norms) {
      GF_ASSIGN_OR_RETURN(L.post_attn_norm, norm_vector(lookup, n.layer(i, "post_attention_layernorm", "post_attention_norm"), H, p1));
      GF_ASSIGN_OR_RETURN(L.pre_ffw_norm, norm_vector(lookup, n.layer(i, "pre_feedforward_layernorm", "ffn_norm"), H, p1));
      GF_ASSIGN_OR_RETURN(L.post_ffw_norm, norm_vector(lookup, n.layer(i, "post_feedforward_layernorm", "post_ffw_norm"), H, p1));
    } else {
      // Gemma 1: the tensor called post_attention_layernorm is the pre-MLP norm.
      GF_ASSIGN_OR_RETURN(L.pre_ffw_norm, norm_vector(lookup, n.layer(i, "post_attention_layernorm", "ffn_norm"), H, p1));
    }
    if (ls.qk_norm) {
      GF_ASSIGN_OR_RETURN(L.q_norm, norm_vector(lookup, n.layer(i, "self_attn.q_norm", "attn_q_norm"), ls.head_dim, p1));
      if (!shares_kv) {
        GF_ASSIGN_OR_RETURN(L.k_norm, norm_vector(lookup, n.layer(i, "self_attn.k_norm", "attn_k_norm"), ls.head_dim, p1));
      }
    }
    if (s.family == Family::Gemma4) GF_RETURN_IF_ERROR(bind_gemma4_layer(lookup, n, s, i, L));
  }
  if (s.per_layer_input_dim > 0) {
    const bool gguf = naming == NamingScheme::Gguf;
    const int64_t LP = static_cast<int64_t>(s.num_layers) * s.per_layer_input_dim;
    GF_ASSIGN_OR_RETURN(m.ple_embed, need(lookup, gguf ? "per_layer_token_embd.weight" : prefix + "embed_tokens_per_layer.weight",
                                          {s.vocab_size_per_layer_input, LP}));
    GF_ASSIGN_OR_RETURN(m.ple_model_proj, need(lookup, gguf ? "per_layer_model_proj.weight" : prefix + "per_layer_model_projection.weight", {LP, H}));
    GF_ASSIGN_OR_RETURN(m.ple_proj_norm, norm_vector(lookup, gguf ? "per_layer_proj_norm.weight" : prefix + "per_layer_projection_norm.weight",
                                                     s.per_layer_input_dim, false));
  }
  return Ok();
}

uint64_t Model::weight_bytes() const {
  uint64_t b = 0;
  for (const auto* t : tensors) b += t->nbytes;
  return b;
}

}  // namespace gf
