#include "model/spec_from_hf_config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/half.h"
#include "core/mapped_file.h"
#include "formats/tensor.h"  // quoted_name: values from the file, one line in messages

namespace gf {
namespace {

using json = nlohmann::json;

// An integer within int's range (get<int>() narrows: 4294967360 became 64).
bool fits_int(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>() <= static_cast<uint64_t>(INT32_MAX);
  return v.is_number_integer() && v.get<int64_t>() >= INT32_MIN && v.get<int64_t>() <= INT32_MAX;
}

// Typed optional getters that treat null as absent and reject wrong types.
struct Reader {
  const json& j;
  Status error;

  bool has(const char* k) const { return j.contains(k) && !j[k].is_null(); }
  double num(const char* k, double def) {
    if (!has(k)) return def;
    if (!j[k].is_number()) { fail(std::string("\"") + k + "\" must be a number"); return def; }
    return j[k].get<double>();
  }
  int integer(const char* k, int def) {
    if (!has(k)) return def;
    if (!fits_int(j[k])) { fail(std::string("\"") + k + "\" must be an integer that fits 32 bits"); return def; }
    return j[k].get<int>();
  }
  bool boolean(const char* k, bool def) {
    if (!has(k)) return def;
    if (!j[k].is_boolean()) { fail(std::string("\"") + k + "\" must be true or false"); return def; }
    return j[k].get<bool>();
  }
  std::string str(const char* k, const std::string& def) {
    if (!has(k)) return def;
    if (!j[k].is_string()) { fail(std::string("\"") + k + "\" must be a string"); return def; }
    return j[k].get<std::string>();
  }
  void fail(const std::string& m) {
    if (error.ok()) error = Err(m);
  }
};

Result<RopeSpec> rope_from_params(const json& p, const RopeSpec& defaults) {
  RopeSpec r = defaults;
  if (!p.is_object()) return Err("rope parameters must be an object");
  Reader rd{p, Ok()};
  r.theta = rd.num("rope_theta", r.theta);
  std::string type = rd.str("rope_type", rd.str("type", r.kind == RopeKind::Default ? "default" : r.kind == RopeKind::Linear ? "linear" : "proportional"));
  if (type == "default") r.kind = RopeKind::Default;
  else if (type == "linear") r.kind = RopeKind::Linear;
  else if (type == "proportional") r.kind = RopeKind::Proportional;
  else return Err("rope_type " + quoted_name(type) + " is not supported (default, linear, proportional)");
  r.factor = rd.num("factor", r.kind == RopeKind::Default ? 1.0 : r.factor);
  r.partial_rotary_factor = rd.num("partial_rotary_factor", r.partial_rotary_factor);
  if (!rd.error.ok()) return rd.error.error();
  if (r.theta <= 0 || r.factor <= 0 || r.partial_rotary_factor <= 0 || r.partial_rotary_factor > 1)
    return Err("rope parameters out of range");
  return r;
}

}  // namespace

Result<ModelSpec> spec_from_hf_config_text(const std::string& text) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {
    return Err(std::string("config.json is not valid JSON: ") + e.what());
  }
  if (!root.is_object()) return Err("config.json is not a JSON object");
  // (json::value() throws on a value of another type: Reader reports it instead.)
  Reader outer{root, Ok()};
  const std::string outer_type = outer.str("model_type", "");
  const std::string outer_dtype = outer.str("torch_dtype", "bfloat16");
  if (!outer.error.ok()) return outer.error.error().with_context("config.json");
  // Multimodal wrappers keep the text decoder's config under text_config.
  const json* cfg = &root;
  if ((outer_type == "gemma3" || outer_type == "gemma4") && root.contains("text_config") && root["text_config"].is_object())
    cfg = &root["text_config"];
  const json& c = *cfg;
  Reader r{c, Ok()};
  ModelSpec s;
  std::string mt = r.str("model_type", outer_type);
  if (mt == "gemma") s.family = Family::Gemma1;
  else if (mt == "gemma2") s.family = Family::Gemma2;
  else if (mt == "gemma3_text" || mt == "gemma3") s.family = Family::Gemma3;
  else if (mt == "gemma4_text" || mt == "gemma4") s.family = Family::Gemma4;
  else return Err("model_type " + quoted_name(mt) + " is not a Gemma text decoder (gemma, gemma2, gemma3, gemma3_text, gemma4, gemma4_text)");
  s.model_type = mt;
  const bool g4 = s.family == Family::Gemma4;

  s.vocab_size = r.integer("vocab_size", s.family >= Family::Gemma3 ? 262144 : 256000);
  s.hidden_size = r.integer("hidden_size", 0);
  s.num_layers = r.integer("num_hidden_layers", 0);
  s.intermediate_size = r.integer("intermediate_size", 0);
  s.num_heads = r.integer("num_attention_heads", 0);
  s.num_kv_heads = r.integer("num_key_value_heads", s.num_heads);
  s.head_dim = r.integer("head_dim", s.num_heads ? s.hidden_size / std::max(1, s.num_heads) : 0);
  s.max_position_embeddings = r.integer("max_position_embeddings", 8192);
  s.rms_norm_eps = static_cast<float>(r.num("rms_norm_eps", 1e-6));
  s.tie_word_embeddings = r.boolean("tie_word_embeddings", true);
  s.weights_dtype = r.str("dtype", r.str("torch_dtype", outer_dtype));
  s.bos_token_id = r.integer("bos_token_id", 2);
  s.pad_token_id = r.integer("pad_token_id", 0);
  if (c.contains("eos_token_id") && c["eos_token_id"].is_array()) {
    s.eos_token_ids.clear();
    for (const auto& e : c["eos_token_id"]) {
      if (e.is_number_integer() && !fits_int(e)) return Err("config.json: \"eos_token_id\" has an id that does not fit 32 bits");
      if (e.is_number_integer()) s.eos_token_ids.push_back(e.get<int>());
    }
  } else {
    s.eos_token_ids = {r.integer("eos_token_id", 1)};
  }
  std::string act = r.str("hidden_activation", r.str("hidden_act", "gelu_pytorch_tanh"));
  // Gemma 1 configs say "gelu" but the reference uses the tanh approximation.
  if (act != "gelu_pytorch_tanh" && act != "gelu" && act != "gelu_new" && act != "gelu_tanh")
    return Err("hidden_activation " + quoted_name(act) + " is not supported (Gemma uses gelu_pytorch_tanh)");
  if (!r.error.ok()) return r.error.error().with_context("config.json");
  if (s.hidden_size <= 0 || s.num_layers <= 0 || s.num_heads <= 0 || s.intermediate_size <= 0)
    return Err("config.json: hidden_size, num_hidden_layers, num_attention_heads and intermediate_size are required and must be positive");
  if (s.num_layers > 4096 || s.hidden_size > (1 << 20) || s.vocab_size > (1 << 24))
    return Err("config.json: sizes are implausibly large");

  s.embed_scale = std::sqrt(static_cast<float>(s.hidden_size));
  s.norm_plus_one = !g4;
  s.final_softcap = static_cast<float>(r.num("final_logit_softcapping", 0.0));
  const float attn_softcap = static_cast<float>(r.num("attn_logit_softcapping", 0.0));
  const int window = r.integer("sliding_window", g4 ? 512 : 4096);
  const double qpas = r.num("query_pre_attn_scalar", s.head_dim);

  // Which layers are local: layer_types if given, else each generation's rule.
  std::vector<AttentionKind> kinds(static_cast<size_t>(s.num_layers), AttentionKind::Global);
  if (c.contains("layer_types") && c["layer_types"].is_array()) {
    const json& lt = c["layer_types"];
    if (static_cast<int>(lt.size()) != s.num_layers)
      return Err("config.json: layer_types has " + std::to_string(lt.size()) + " entries for " + std::to_string(s.num_layers) + " layers");
    for (int i = 0; i < s.num_layers; ++i) {
      std::string t = lt[static_cast<size_t>(i)].is_string() ? lt[static_cast<size_t>(i)].get<std::string>() : "";
      if (t == "sliding_attention") kinds[static_cast<size_t>(i)] = AttentionKind::Local;
      else if (t != "full_attention") return Err("config.json: layer_types[" + std::to_string(i) + "] is " + quoted_name(t));
    }
  } else if (s.family == Family::Gemma2) {
    for (int i = 0; i < s.num_layers; i += 2) kinds[static_cast<size_t>(i)] = AttentionKind::Local;
  } else if (s.family == Family::Gemma3 || g4) {
    int pattern = r.integer("sliding_window_pattern", r.integer("_sliding_window_pattern", 6));
    if (pattern <= 0) return Err("config.json: sliding_window_pattern must be positive");
    for (int i = 0; i < s.num_layers; ++i)
      if ((i + 1) % pattern != 0) kinds[static_cast<size_t>(i)] = AttentionKind::Local;
    if (g4) kinds.back() = AttentionKind::Global;
  }

  // RoPE per layer type.
  RopeSpec global_rope, local_rope;
  global_rope.theta = r.num("rope_theta", s.family >= Family::Gemma3 ? 1e6 : 1e4);
  local_rope.theta = r.num("rope_local_base_freq", 1e4);
  if (g4) {
    global_rope.kind = RopeKind::Proportional;
    global_rope.partial_rotary_factor = 0.25;
  }
  if (s.family == Family::Gemma1 || s.family == Family::Gemma2) local_rope = global_rope;
  if (c.contains("rope_scaling") && c["rope_scaling"].is_object()) {
    auto rs = rope_from_params(c["rope_scaling"], global_rope);
    if (!rs.ok()) return rs.error().with_context("config.json rope_scaling");
    global_rope = *rs;
  }
  if (c.contains("rope_parameters") && c["rope_parameters"].is_object()) {
    const json& rp = c["rope_parameters"];
    if (rp.contains("full_attention") || rp.contains("sliding_attention")) {
      if (rp.contains("full_attention")) {
        auto g = rope_from_params(rp["full_attention"], global_rope);
        if (!g.ok()) return g.error().with_context("config.json rope_parameters.full_attention");
        global_rope = *g;
      }
      if (rp.contains("sliding_attention")) {
        auto l = rope_from_params(rp["sliding_attention"], local_rope);
        if (!l.ok()) return l.error().with_context("config.json rope_parameters.sliding_attention");
        local_rope = *l;
      }
    } else {  // one set for every layer (Gemma 1/2)
      auto g = rope_from_params(rp, global_rope);
      if (!g.ok()) return g.error().with_context("config.json rope_parameters");
      global_rope = local_rope = *g;
    }
  }

  // Gemma 4 extras.
  int global_head_dim = r.integer("global_head_dim", s.head_dim);
  int global_kv_heads = r.integer("num_global_key_value_heads", s.num_kv_heads);
  bool k_eq_v = r.boolean("attention_k_eq_v", false);
  if (g4) {
    s.num_kv_shared_layers = r.integer("num_kv_shared_layers", 0);
    s.per_layer_input_dim = r.integer("hidden_size_per_layer_input", 0);
    s.vocab_size_per_layer_input = s.per_layer_input_dim > 0 ? r.integer("vocab_size_per_layer_input", s.vocab_size) : 0;
    if (r.boolean("enable_moe_block", false)) {
      s.num_experts = r.integer("num_experts", 0);
      s.top_k_experts = r.integer("top_k_experts", 0);
      s.moe_intermediate_size = r.integer("moe_intermediate_size", 0);
      if (s.num_experts <= 0 || s.top_k_experts <= 0 || s.top_k_experts > s.num_experts || s.moe_intermediate_size <= 0)
        return Err("config.json: enable_moe_block needs num_experts, top_k_experts <= num_experts and moe_intermediate_size");
    }
  }
  const bool double_wide = g4 && r.boolean("use_double_wide_mlp", false);
  if (!r.error.ok()) return r.error.error().with_context("config.json");
  if (s.num_kv_shared_layers < 0 || s.num_kv_shared_layers >= s.num_layers)
    return Err("config.json: num_kv_shared_layers must be in [0, num_hidden_layers)");

  s.layers.resize(static_cast<size_t>(s.num_layers));
  const int first_shared = s.num_layers - s.num_kv_shared_layers;
  for (int i = 0; i < s.num_layers; ++i) {
    LayerSpec& l = s.layers[static_cast<size_t>(i)];
    l.attention = kinds[static_cast<size_t>(i)];
    const bool local = l.attention == AttentionKind::Local;
    l.sliding_window = local ? window : 0;
    l.num_heads = s.num_heads;
    l.head_dim = (g4 && !local) ? global_head_dim : s.head_dim;
    l.num_kv_heads = (g4 && !local && k_eq_v) ? global_kv_heads : s.num_kv_heads;
    l.rope = local ? local_rope : global_rope;
    l.attn_softcap = s.family == Family::Gemma2 ? attn_softcap : 0.0f;
    l.attn_scale = g4 ? 1.0f
                      : static_cast<float>(1.0 / std::sqrt(s.family == Family::Gemma1 ? static_cast<double>(s.head_dim) : qpas));
    l.qk_norm = s.family >= Family::Gemma3;
    l.v_norm = g4;
    l.k_eq_v = g4 && k_eq_v && !local;
    l.sandwich_norms = s.family != Family::Gemma1;
    l.intermediate_size = s.intermediate_size;
    l.moe = s.num_experts > 0;
    l.per_layer_input = s.per_layer_input_dim > 0;
    l.layer_scalar = g4;
    if (g4 && i >= first_shared) {
      // Shared layers reuse the K/V of the last non-shared layer of the same kind.
      for (int j = first_shared - 1; j >= 0; --j)
        if (kinds[static_cast<size_t>(j)] == l.attention) { l.kv_source_layer = j; break; }
      if (l.kv_source_layer < 0) return Err("config.json: KV-shared layer " + std::to_string(i) + " has no earlier layer of the same attention kind");
      if (double_wide) l.intermediate_size = 2 * s.intermediate_size;
    }
  }
  // transformers 5 writes per-layer overrides (keys may be zero-padded: "05").
  if (c.contains("per_layer_config") && c["per_layer_config"].is_object()) {
    for (auto it = c["per_layer_config"].begin(); it != c["per_layer_config"].end(); ++it) {
      int idx = -1;
      try {
        idx = std::stoi(it.key());
      } catch (...) {
      }
      if (idx < 0 || idx >= s.num_layers) return Err("config.json: per_layer_config key " + quoted_name(it.key()) + " is not a layer index");
      Reader pr{it.value(), Ok()};
      LayerSpec& l = s.layers[static_cast<size_t>(idx)];
      l.head_dim = pr.integer("head_dim", l.head_dim);
      l.num_kv_heads = pr.integer("num_key_value_heads", l.num_kv_heads);
      l.intermediate_size = pr.integer("intermediate_size", l.intermediate_size);
      if (!pr.error.ok()) return pr.error.error().with_context("config.json per_layer_config." + it.key());
    }
  }
  // Rule: buffers of a half-precision checkpoint are rounded as transformers
  // rounds them. It keeps the embedding normaliser sqrt(hidden) and the rotary
  // inv_freq as buffers, cast with the model on load, so a bf16 checkpoint
  // scales embeddings by bf16(sqrt(hidden)) (sqrt(96) = 9.798 -> 9.8125) and
  // rotates with bf16 frequencies even when the compute is float32.
  if (s.weights_dtype == "bfloat16") {
    s.embed_scale = bf16_to_f32(f32_to_bf16(s.embed_scale));
    for (auto& l : s.layers) l.rope.bf16_inv_freq = true;
  } else if (s.weights_dtype == "float16") {
    s.embed_scale = f16_to_f32(f32_to_f16(s.embed_scale));
  }
  GF_RETURN_IF_ERROR(s.validate());
  return s;
}

Result<ModelSpec> spec_from_hf_config_file(const std::string& path) {
  GF_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  auto s = spec_from_hf_config_text(text);
  if (!s.ok()) return s.error().with_context(path);
  return s;
}

}  // namespace gf
