// GGUF (llama.cpp) -> ModelSpec. The converter bakes Gemma's (1 + w) into norm
// weights, so GGUF norms are used as plain w. Gemma 3's local rope base and 5:1
// pattern are implied by the arch, as in llama.cpp.
#include "model/gguf_model.h"

#include <cmath>

#include "formats/gguf.h"

namespace gf {
namespace {

class GgufLookup final : public TensorLookup {
 public:
  explicit GgufLookup(const GgufFile& f) : f_(f) {}
  const TensorView* find(const std::string& name) const override { return f_.find_tensor(name); }

 private:
  const GgufFile& f_;
};

}  // namespace

Result<ModelSpec> spec_from_gguf(const GgufFile& f) {
  GF_ASSIGN_OR_RETURN(std::string arch, f.get_string("general.architecture"));
  ModelSpec s;
  if (arch == "gemma") s.family = Family::Gemma1;
  else if (arch == "gemma2") s.family = Family::Gemma2;
  else if (arch == "gemma3") s.family = Family::Gemma3;
  else if (arch == "gemma4") s.family = Family::Gemma4;
  else return Err(f.path() + ": GGUF architecture \"" + arch + "\" is not a Gemma text decoder (gemma, gemma2, gemma3, gemma4)");
  s.model_type = arch;
  auto key = [&](const char* k) { return arch + "." + k; };
  auto get_int = [&](const char* k) -> Result<int64_t> { return f.get_int(key(k)); };
  auto opt_int = [&](const char* k, int64_t def) { auto r = f.get_int(key(k)); return r.ok() ? *r : def; };
  auto opt_float = [&](const char* k, double def) { auto r = f.get_float(key(k)); return r.ok() ? *r : def; };
  GF_ASSIGN_OR_RETURN(int64_t hidden, get_int("embedding_length"));
  GF_ASSIGN_OR_RETURN(int64_t layers, get_int("block_count"));
  // Gemma 4 may give feed_forward_length per layer (gguf_gemma4.cpp reads it).
  int64_t ffn = 0;
  if (s.family != Family::Gemma4) {
    GF_ASSIGN_OR_RETURN(ffn, get_int("feed_forward_length"));
  }
  GF_ASSIGN_OR_RETURN(int64_t heads, get_int("attention.head_count"));
  s.hidden_size = static_cast<int>(hidden);
  s.num_layers = static_cast<int>(layers);
  s.intermediate_size = static_cast<int>(ffn);
  s.num_heads = static_cast<int>(heads);
  s.num_kv_heads = static_cast<int>(opt_int("attention.head_count_kv", heads));
  s.head_dim = static_cast<int>(opt_int("attention.key_length", heads ? hidden / heads : 0));
  s.max_position_embeddings = static_cast<int>(opt_int("context_length", 8192));
  s.rms_norm_eps = static_cast<float>(opt_float("attention.layer_norm_rms_epsilon", 1e-6));
  s.final_softcap = static_cast<float>(opt_float("final_logit_softcapping", 0.0));
  const float attn_softcap = static_cast<float>(opt_float("attn_logit_softcapping", 0.0));
  s.norm_plus_one = false;
  s.embed_scale = std::sqrt(static_cast<float>(s.hidden_size));
  // gemforge convert keeps a Hugging Face checkpoint's rounded values (see gguf_export.cpp).
  if (auto es = f.get_float("gemforge.embedding_scale"); es.ok()) s.embed_scale = static_cast<float>(*es);
  const bool bf16_inv_freq = f.get_bool("gemforge.rope.bf16_inv_freq").ok() && *f.get_bool("gemforge.rope.bf16_inv_freq");
  const TensorView* embd = f.find_tensor("token_embd.weight");
  if (!embd || embd->shape.size() != 2) return Err(f.path() + ": no 2-D token_embd.weight tensor");
  s.vocab_size = static_cast<int>(embd->shape[0]);
  s.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;
  s.weights_dtype = dtype_name(embd->dtype);
  s.bos_token_id = static_cast<int>(f.get_int("tokenizer.ggml.bos_token_id").ok() ? *f.get_int("tokenizer.ggml.bos_token_id") : 2);
  s.eos_token_ids = {static_cast<int>(f.get_int("tokenizer.ggml.eos_token_id").ok() ? *f.get_int("tokenizer.ggml.eos_token_id") : 1)};
  s.pad_token_id = static_cast<int>(f.get_int("tokenizer.ggml.padding_token_id").ok() ? *f.get_int("tokenizer.ggml.padding_token_id") : 0);
  if (s.family == Family::Gemma4) {
    GF_RETURN_IF_ERROR(gemma4_layers_from_gguf(f, s));
    GF_RETURN_IF_ERROR(s.validate().with_context(f.path()));
    return s;
  }

  const int window = static_cast<int>(opt_int("attention.sliding_window", s.family == Family::Gemma2 ? 4096 : 512));
  // llama.cpp: the 27B models scale by 1/sqrt(hidden/heads), the others by 1/sqrt(head_dim).
  const bool is_27b = (s.family == Family::Gemma2 && s.num_layers == 46) || (s.family == Family::Gemma3 && s.num_layers == 62);
  const double qpas = opt_float("attention.query_pre_attn_scalar", is_27b ? static_cast<double>(hidden / heads) : s.head_dim);
  RopeSpec global_rope;
  global_rope.theta = opt_float("rope.freq_base", s.family == Family::Gemma3 ? 1e6 : 1e4);
  auto scaling = f.get_string(key("rope.scaling.type"));
  if (scaling.ok() && *scaling == "linear") {
    global_rope.kind = RopeKind::Linear;
    global_rope.factor = opt_float("rope.scaling.factor", 1.0);
  }
  global_rope.bf16_inv_freq = bf16_inv_freq;
  RopeSpec local_rope = global_rope;
  if (s.family == Family::Gemma3) local_rope = RopeSpec{RopeKind::Default, opt_float("rope.freq_base_swa", 10000.0), 1.0, 1.0, bf16_inv_freq};
  // Written by gemforge convert (llama.cpp derives the pattern from the arch).
  std::vector<int64_t> sliding;
  if (f.find(key("attention.sliding_window_pattern"))) {
    GF_ASSIGN_OR_RETURN(sliding, f.get_int_array(key("attention.sliding_window_pattern")));
    if (static_cast<int64_t>(sliding.size()) != layers)
      return Err(f.path() + ": " + key("attention.sliding_window_pattern") + " has " + std::to_string(sliding.size()) +
                 " entries for " + std::to_string(layers) + " layers");
  }
  s.layers.resize(static_cast<size_t>(s.num_layers));
  for (int i = 0; i < s.num_layers; ++i) {
    LayerSpec& l = s.layers[static_cast<size_t>(i)];
    bool local = (s.family == Family::Gemma2 && i % 2 == 0) || (s.family == Family::Gemma3 && (i + 1) % 6 != 0);
    if (!sliding.empty()) local = sliding[static_cast<size_t>(i)] != 0;
    l.attention = local ? AttentionKind::Local : AttentionKind::Global;
    l.sliding_window = local ? window : 0;
    l.num_heads = s.num_heads;
    l.num_kv_heads = s.num_kv_heads;
    l.head_dim = s.head_dim;
    l.rope = local ? local_rope : global_rope;
    l.attn_scale = static_cast<float>(1.0 / std::sqrt(s.family == Family::Gemma1 ? static_cast<double>(s.head_dim) : qpas));
    l.attn_softcap = s.family == Family::Gemma2 ? attn_softcap : 0.0f;
    l.qk_norm = s.family == Family::Gemma3;
    l.sandwich_norms = s.family != Family::Gemma1;
    l.intermediate_size = s.intermediate_size;
  }
  GF_RETURN_IF_ERROR(s.validate().with_context(f.path()));
  return s;
}

Result<Model> load_gguf_model(const std::string& path) {
  auto opened = GgufFile::open(path);
  if (!opened.ok()) return opened.error();
  auto file = std::make_shared<GgufFile>(std::move(opened).value());
  Model m;
  m.source = path;
  m.format = "gguf";
  m.tokenizer_path = path;
  m.has_chat_template = file->find("tokenizer.chat_template") != nullptr;
  GF_ASSIGN_OR_RETURN(m.spec, spec_from_gguf(*file));
  for (const auto& t : file->tensors()) m.tensors.push_back(&t);
  m.keep_alive.push_back(file);
  if (!m.spec.check_supported().ok()) return m;
  GgufLookup lookup(*file);
  GF_RETURN_IF_ERROR(bind_weights(lookup, NamingScheme::Gguf, "", m).with_context(path));
  // The vocabulary must name every embedding row (llama.cpp requires the same).
  if (const GgufValue* toks = file->find("tokenizer.ggml.tokens"); toks && static_cast<int64_t>(toks->array_size()) != m.spec.vocab_size)
    return Err(path + ": tokenizer.ggml.tokens has " + std::to_string(toks->array_size()) + " entries but token_embd.weight has " +
               std::to_string(m.spec.vocab_size) + " rows");
  GF_RETURN_IF_ERROR(check_weights(m).with_context(path));
  return m;
}

}  // namespace gf
