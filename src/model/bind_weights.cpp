// Finds each weight by role, checks its shape against the spec and converts
// norm scales. Errors name the tensor, the shape found and the shape expected.
#include <cstring>

#include "backend/cpu/matmul.h"
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
  GF_RETURN_IF_ERROR(cpu::dequantize_row(t->dtype, t->data, v.data(), n).with_context("tensor " + name));
  if (plus_one)
    for (auto& x : v) x += 1.0f;  // HF Gemma 1-3 store w, the model uses 1 + w
  return v;
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
    GF_ASSIGN_OR_RETURN(L.k, need(lookup, n.layer(i, "self_attn.k_proj", "attn_k"), {kvd, H}));
    if (!ls.k_eq_v) {
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
      GF_ASSIGN_OR_RETURN(L.k_norm, norm_vector(lookup, n.layer(i, "self_attn.k_norm", "attn_k_norm"), ls.head_dim, p1));
    }
  }
  return Ok();
}

uint64_t Model::weight_bytes() const {
  uint64_t b = 0;
  for (const auto* t : tensors) b += t->nbytes;
  return b;
}

}  // namespace gf
