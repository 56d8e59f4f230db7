// Models with random weights of published shapes, generated in memory, for
// benchmarks without downloads (speed does not depend on weight values).
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "core/half.h"
#include "core/thread_pool.h"
#include "model/spec_from_hf_config.h"
#include "model/model.h"

namespace gf {
namespace {

using json = nlohmann::json;

struct Shape {
  const char* type;
  int hidden, layers, heads, kv, inter, head_dim;
  double qpas;
  int window;
  double rope_scale;  // Gemma 3 4B+: linear x8 on global layers
};

const std::map<std::string, Shape>& shapes() {
  static const std::map<std::string, Shape> m = {
      {"gemma-2b", {"gemma", 2048, 18, 8, 1, 16384, 256, 256, 0, 0}},
      {"gemma-7b", {"gemma", 3072, 28, 16, 16, 24576, 256, 256, 0, 0}},
      {"gemma2-2b", {"gemma2", 2304, 26, 8, 4, 9216, 256, 256, 4096, 0}},
      {"gemma2-9b", {"gemma2", 3584, 42, 16, 8, 14336, 256, 256, 4096, 0}},
      {"gemma2-27b", {"gemma2", 4608, 46, 32, 16, 36864, 128, 144, 4096, 0}},
      {"gemma3-270m", {"gemma3_text", 640, 18, 4, 1, 2048, 256, 256, 512, 0}},
      {"gemma3-1b", {"gemma3_text", 1152, 26, 4, 1, 6912, 256, 256, 512, 0}},
      {"gemma3-4b", {"gemma3_text", 2560, 34, 8, 4, 10240, 256, 256, 1024, 8}},
      {"gemma3-12b", {"gemma3_text", 3840, 48, 16, 8, 15360, 256, 256, 1024, 8}},
      {"gemma3-27b", {"gemma3_text", 5376, 62, 32, 16, 21504, 128, 168, 1024, 8}},
  };
  return m;
}

// Gemma 4 (transformers' convert_gemma4_weights.py variants): head_dim 256
// local / 512 global, vocab 262,144, final soft-cap 30.
struct Gemma4Shape {
  int hidden, layers, heads, kv, global_kv, inter, window, ple_dim, kv_shared;
  int local_per_global;  // layers per global one: E2B 4 local + 1 global, others 5 + 1
  bool k_eq_v, double_wide;
  int experts, top_k, moe_inter;
};

const std::map<std::string, Gemma4Shape>& gemma4_shapes() {
  static const std::map<std::string, Gemma4Shape> m = {
      {"gemma4-e2b", {1536, 35, 8, 1, 1, 4 * 1536, 512, 256, 20, 4, false, true, 0, 0, 0}},
      {"gemma4-e4b", {2560, 42, 8, 2, 2, 4 * 2560, 512, 256, 18, 5, false, false, 0, 0, 0}},
      {"gemma4-31b", {5376, 60, 32, 16, 4, 4 * 5376, 1024, 0, 0, 5, true, false, 0, 0, 0}},
      {"gemma4-26b-a4b", {2816, 30, 16, 8, 2, 2112, 1024, 0, 0, 5, true, false, 128, 8, 704}},
  };
  return m;
}

json gemma4_config(const Gemma4Shape& g) {
  json types = json::array();
  for (int i = 0; i < g.layers; ++i)
    types.push_back((i + 1) % (g.local_per_global + 1) == 0 ? "full_attention" : "sliding_attention");
  json c = {{"model_type", "gemma4_text"}, {"hidden_size", g.hidden}, {"num_hidden_layers", g.layers},
            {"num_attention_heads", g.heads}, {"num_key_value_heads", g.kv}, {"num_global_key_value_heads", g.global_kv},
            {"head_dim", 256}, {"global_head_dim", 512}, {"intermediate_size", g.inter}, {"sliding_window", g.window},
            {"layer_types", types}, {"attention_k_eq_v", g.k_eq_v}, {"hidden_size_per_layer_input", g.ple_dim},
            {"vocab_size_per_layer_input", 262144}, {"num_kv_shared_layers", g.kv_shared},
            {"use_double_wide_mlp", g.double_wide}, {"vocab_size", 262144}, {"max_position_embeddings", 131072},
            {"final_logit_softcapping", 30.0}, {"rms_norm_eps", 1e-6}, {"bos_token_id", 2}, {"eos_token_id", 1},
            {"pad_token_id", 0}, {"torch_dtype", "bfloat16"}, {"tie_word_embeddings", true},
            {"hidden_activation", "gelu_pytorch_tanh"},
            {"rope_parameters", {{"full_attention", {{"rope_type", "proportional"}, {"rope_theta", 1000000.0}, {"partial_rotary_factor", 0.25}}},
                                 {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}}}}};
  if (g.experts > 0) {
    c["enable_moe_block"] = true;
    c["num_experts"] = g.experts;
    c["top_k_experts"] = g.top_k;
    c["moe_intermediate_size"] = g.moe_inter;
  }
  return c;
}

// Owns the random tensors; views point into it.
struct SyntheticStore final : TensorLookup {
  std::map<std::string, TensorView> views;
  std::vector<std::unique_ptr<uint8_t[]>> buffers;
  const TensorView* find(const std::string& name) const override {
    auto it = views.find(name);
    return it == views.end() ? nullptr : &it->second;
  }
};

inline uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

void add_tensor(SyntheticStore& st, const std::string& name, std::vector<int64_t> shape, DType dt, float amplitude,
                float offset, uint64_t seed) {
  TensorView t;
  t.name = name;
  t.dtype = dt;
  t.shape = std::move(shape);
  const int64_t n = t.numel();
  t.nbytes = static_cast<size_t>(n) * static_cast<size_t>(dtype_info(dt).block_bytes);
  auto buf = std::unique_ptr<uint8_t[]>(new uint8_t[t.nbytes]);
  uint8_t* p = buf.get();
  const uint64_t base = mix(seed ^ std::hash<std::string>{}(name));
  parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float u = static_cast<float>(mix(base + static_cast<uint64_t>(i)) >> 40) / static_cast<float>(1 << 24);  // [0,1)
      float v = offset + amplitude * (2.0f * u - 1.0f);
      if (dt == DType::F32) std::memcpy(p + i * 4, &v, 4);
      else {
        uint16_t h = dt == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
        std::memcpy(p + i * 2, &h, 2);
      }
    }
  }, 1 << 16);
  t.data = p;
  st.buffers.push_back(std::move(buf));
  st.views[t.name] = std::move(t);
}

}  // namespace

std::vector<std::string> synthetic_model_names() {
  std::vector<std::string> n;
  for (const auto& [k, v] : shapes()) n.push_back(k);
  for (const auto& [k, v] : gemma4_shapes()) n.push_back(k);
  return n;
}

Result<std::string> synthetic_config_json(const std::string& name) {
  if (auto g = gemma4_shapes().find(name); g != gemma4_shapes().end()) return gemma4_config(g->second).dump(1);
  auto it = shapes().find(name);
  if (it == shapes().end()) {
    std::string all;
    for (const auto& n : synthetic_model_names()) all += (all.empty() ? "" : ", ") + n;
    return Err("unknown synthetic model \"" + name + "\"; known: " + all);
  }
  const Shape& s = it->second;
  const std::string type = s.type;
  json c = {{"model_type", type}, {"hidden_size", s.hidden}, {"num_hidden_layers", s.layers},
            {"num_attention_heads", s.heads}, {"num_key_value_heads", s.kv}, {"intermediate_size", s.inter},
            {"head_dim", s.head_dim}, {"rms_norm_eps", 1e-6}, {"bos_token_id", 2}, {"eos_token_id", 1},
            {"pad_token_id", 0}, {"torch_dtype", "bfloat16"}, {"tie_word_embeddings", true},
            {"hidden_activation", "gelu_pytorch_tanh"}};
  if (type == "gemma") {
    c["vocab_size"] = 256000;
    c["max_position_embeddings"] = 8192;
    c["rope_theta"] = 10000.0;
  } else if (type == "gemma2") {
    c["vocab_size"] = 256000;
    c["max_position_embeddings"] = 8192;
    c["rope_theta"] = 10000.0;
    c["query_pre_attn_scalar"] = s.qpas;
    c["sliding_window"] = s.window;
    c["attn_logit_softcapping"] = 50.0;
    c["final_logit_softcapping"] = 30.0;
  } else {
    c["vocab_size"] = 262144;
    c["max_position_embeddings"] = s.rope_scale > 0 ? 131072 : 32768;
    c["rope_theta"] = 1000000.0;
    c["rope_local_base_freq"] = 10000.0;
    c["query_pre_attn_scalar"] = s.qpas;
    c["sliding_window"] = s.window;
    c["sliding_window_pattern"] = 6;
    if (s.rope_scale > 0) c["rope_scaling"] = {{"rope_type", "linear"}, {"factor", s.rope_scale}};
  }
  return c.dump(1);
}

Result<Model> synthetic_model(const std::string& name, uint64_t seed, DType dtype) {
  GF_ASSIGN_OR_RETURN(std::string cfg, synthetic_config_json(name));
  Model m;
  GF_ASSIGN_OR_RETURN(m.spec, spec_from_hf_config_text(cfg));
  m.source = "synthetic:" + name;
  m.format = "synthetic";
  m.spec.weights_dtype = dtype_name(dtype);
  auto st = std::make_shared<SyntheticStore>();
  const ModelSpec& s = m.spec;
  const int64_t H = s.hidden_size;
  // Amplitudes keep activations O(1): uniform with std ~ 1/sqrt(fan_in).
  auto amp = [](int64_t fan_in) { return static_cast<float>(std::sqrt(3.0 / static_cast<double>(fan_in))); };
  // Norm weights near their identity: w ~ 0 where the model uses 1 + w (Gemma 1-3), w ~ 1 for Gemma 4.
  const float norm_at = s.norm_plus_one ? 0.0f : 1.0f;
  auto norm = [&](const std::string& n, int64_t dim) { add_tensor(*st, n, {dim}, DType::F32, 0.1f, norm_at, seed); };
  add_tensor(*st, "model.embed_tokens.weight", {s.vocab_size, H}, dtype, 0.05f, 0.0f, seed);
  norm("model.norm.weight", H);
  for (int i = 0; i < s.num_layers; ++i) {
    const LayerSpec& l = s.layers[static_cast<size_t>(i)];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    const int64_t qd = static_cast<int64_t>(l.num_heads) * l.head_dim, kvd = static_cast<int64_t>(l.num_kv_heads) * l.head_dim;
    const bool own_kv = l.kv_source_layer < 0;
    add_tensor(*st, p + "self_attn.q_proj.weight", {qd, H}, dtype, amp(H), 0, seed);
    if (own_kv) add_tensor(*st, p + "self_attn.k_proj.weight", {kvd, H}, dtype, amp(H), 0, seed);
    if (own_kv && !l.k_eq_v) add_tensor(*st, p + "self_attn.v_proj.weight", {kvd, H}, dtype, amp(H), 0, seed);
    add_tensor(*st, p + "self_attn.o_proj.weight", {H, qd}, dtype, amp(qd), 0, seed);
    add_tensor(*st, p + "mlp.gate_proj.weight", {l.intermediate_size, H}, dtype, amp(H), 0, seed);
    add_tensor(*st, p + "mlp.up_proj.weight", {l.intermediate_size, H}, dtype, amp(H), 0, seed);
    add_tensor(*st, p + "mlp.down_proj.weight", {H, l.intermediate_size}, dtype, amp(l.intermediate_size), 0, seed);
    for (const char* nm : {"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"})
      norm(p + nm + ".weight", H);
    if (l.qk_norm) {
      norm(p + "self_attn.q_norm.weight", l.head_dim);
      if (own_kv) norm(p + "self_attn.k_norm.weight", l.head_dim);
    }
    if (l.layer_scalar) add_tensor(*st, p + "layer_scalar", {1}, DType::F32, 0.0f, 1.0f, seed);
    if (l.per_layer_input) {
      const int64_t P = s.per_layer_input_dim;
      add_tensor(*st, p + "per_layer_input_gate.weight", {P, H}, dtype, amp(H), 0, seed);
      add_tensor(*st, p + "per_layer_projection.weight", {H, P}, dtype, amp(P), 0, seed);
      norm(p + "post_per_layer_input_norm.weight", H);
    }
    if (l.moe) {
      const int64_t E = s.num_experts, I = s.moe_intermediate_size;
      add_tensor(*st, p + "experts.gate_up_proj", {E, 2 * I, H}, dtype, amp(H), 0, seed);
      add_tensor(*st, p + "experts.down_proj", {E, H, I}, dtype, amp(I), 0, seed);
      add_tensor(*st, p + "router.proj.weight", {E, H}, dtype, amp(H), 0, seed);
      norm(p + "router.scale", H);
      norm(p + "router.per_expert_scale", E);
      for (const char* nm : {"post_feedforward_layernorm_1", "pre_feedforward_layernorm_2", "post_feedforward_layernorm_2"})
        norm(p + nm + ".weight", H);
    }
  }
  if (s.per_layer_input_dim > 0) {
    const int64_t LP = static_cast<int64_t>(s.num_layers) * s.per_layer_input_dim;
    add_tensor(*st, "model.embed_tokens_per_layer.weight", {s.vocab_size_per_layer_input, LP}, dtype, 0.05f, 0.0f, seed);
    add_tensor(*st, "model.per_layer_model_projection.weight", {LP, H}, dtype, amp(H), 0, seed);
    norm("model.per_layer_projection_norm.weight", s.per_layer_input_dim);
  }
  for (const auto& [k, v] : st->views) m.tensors.push_back(&v);
  GF_RETURN_IF_ERROR(bind_weights(*st, NamingScheme::HuggingFace, "model.", m));
  m.keep_alive.push_back(st);
  return m;
}

}  // namespace gf
