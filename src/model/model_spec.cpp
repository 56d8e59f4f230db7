#include "model/model_spec.h"

#include <cmath>
#include "core/half.h"
#include <cstdio>
#include <cstring>
#include <sstream>

namespace gf {

const char* family_name(Family f) {
  switch (f) {
    case Family::Gemma1: return "gemma1";
    case Family::Gemma2: return "gemma2";
    case Family::Gemma3: return "gemma3";
    case Family::Gemma4: return "gemma4";
  }
  return "?";
}

std::vector<float> RopeSpec::inv_freq(int head_dim) const {
  const int half = head_dim / 2;
  std::vector<float> f(static_cast<size_t>(half), 0.0f);
  // Proportional (Gemma 4 global): only the first int(p * d / 2) pairs rotate,
  // with exponents over the full head_dim; the rest have frequency 0.
  const int rotated = kind == RopeKind::Proportional ? static_cast<int>(partial_rotary_factor * head_dim / 2) : half;
  for (int i = 0; i < rotated; ++i) {
    // HF: 1 / base ** (arange(0, d, 2).float() / d), computed in float32.
    float expo = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    float v = 1.0f / std::pow(static_cast<float>(theta), expo);
    if (kind != RopeKind::Default) v /= static_cast<float>(factor);
    f[static_cast<size_t>(i)] = v;
  }
  // Hugging Face keeps inv_freq as a buffer that is cast with the model: a
  // bf16 checkpoint loaded by transformers rotates with bf16-rounded frequencies.
  if (bf16_inv_freq)
    for (auto& x : f) x = bf16_to_f32(f32_to_bf16(x));
  return f;
}

Status ModelSpec::validate() const {
  auto bad = [](const std::string& m) { return Err("invalid model config: " + m); };
  if (vocab_size <= 0 || hidden_size <= 0 || num_layers <= 0) return bad("vocab_size, hidden_size and num_hidden_layers must be positive");
  if (static_cast<int>(layers.size()) != num_layers) return bad("layer table has " + std::to_string(layers.size()) + " rows for " + std::to_string(num_layers) + " layers");
  for (int i = 0; i < num_layers; ++i) {
    const LayerSpec& l = layers[static_cast<size_t>(i)];
    std::string at = "layer " + std::to_string(i) + ": ";
    if (l.num_heads <= 0 || l.num_kv_heads <= 0 || l.head_dim <= 0) return bad(at + "heads, kv heads and head_dim must be positive");
    if (l.head_dim % 2) return bad(at + "head_dim " + std::to_string(l.head_dim) + " must be even for RoPE");
    if (l.num_heads % l.num_kv_heads) return bad(at + std::to_string(l.num_heads) + " query heads are not a multiple of " + std::to_string(l.num_kv_heads) + " KV heads");
    if (l.attention == AttentionKind::Local && l.sliding_window <= 0) return bad(at + "local attention needs a positive sliding_window");
    if (l.intermediate_size <= 0) return bad(at + "intermediate_size must be positive");
    if (l.kv_source_layer >= i) return bad(at + "shares KV with a later layer");
  }
  if (rms_norm_eps <= 0) return bad("rms_norm_eps must be positive");
  return Ok();
}

Status ModelSpec::check_supported() const {
  for (size_t i = 0; i < layers.size(); ++i)
    if (layers[i].kv_source_layer >= static_cast<int>(i))
      return Err("layer " + std::to_string(i) + " shares the KV of a later layer (" + std::to_string(layers[i].kv_source_layer) + ")");
  return Ok();
}

std::string ModelSpec::summary() const {
  std::ostringstream o;
  o << "family:               " << family_name(family) << " (model_type " << model_type << ")\n"
    << "vocab_size:           " << vocab_size << "\n"
    << "hidden_size:          " << hidden_size << "\n"
    << "num_layers:           " << num_layers << "\n"
    << "heads / kv heads:     " << num_heads << " / " << num_kv_heads << " (head_dim " << head_dim << ")\n"
    << "intermediate_size:    " << intermediate_size << "\n"
    << "max_position:         " << max_position_embeddings << "\n"
    << "rms_norm_eps:         " << rms_norm_eps << (norm_plus_one ? "  (norm weights used as 1 + w)" : "  (norm weights used as w)") << "\n"
    << "embed_scale:          " << embed_scale << "\n"
    << "final_softcap:        " << (final_softcap > 0 ? std::to_string(final_softcap) : std::string("none")) << "\n"
    << "tied embeddings:      " << (tie_word_embeddings ? "yes" : "no") << "\n"
    << "weights dtype:        " << weights_dtype << "\n"
    << "bos / eos / pad:      " << bos_token_id << " / ";
  for (size_t i = 0; i < eos_token_ids.size(); ++i) o << (i ? "," : "") << eos_token_ids[i];
  o << " / " << pad_token_id << "\n";
  if (num_experts) o << "experts:              " << num_experts << " (top " << top_k_experts << ", intermediate " << moe_intermediate_size << ")\n";
  if (per_layer_input_dim) o << "per-layer input dim:  " << per_layer_input_dim << " (vocab " << vocab_size_per_layer_input << ")\n";
  if (num_kv_shared_layers) o << "kv-shared layers:     " << num_kv_shared_layers << "\n";
  return o.str();
}

std::string ModelSpec::layer_table() const {
  std::ostringstream o;
  o << "layer  attn    window  heads  kv  head_dim  rope                          scale     softcap  qk_norm  ffn      extras\n";
  for (int i = 0; i < num_layers; ++i) {
    const LayerSpec& l = layers[static_cast<size_t>(i)];
    char rope[64];
    const char* kind = l.rope.kind == RopeKind::Default ? "default" : l.rope.kind == RopeKind::Linear ? "linear" : "proportional";
    if (l.rope.kind == RopeKind::Proportional)
      std::snprintf(rope, sizeof rope, "%s %.0f p=%.2f x%.0f", kind, l.rope.theta, l.rope.partial_rotary_factor, l.rope.factor);
    else if (l.rope.kind == RopeKind::Linear)
      std::snprintf(rope, sizeof rope, "%s %.0f x%.1f", kind, l.rope.theta, l.rope.factor);
    else
      std::snprintf(rope, sizeof rope, "%s %.0f", kind, l.rope.theta);
    if (l.rope.bf16_inv_freq) std::strncat(rope, " bf16", sizeof rope - std::strlen(rope) - 1);
    std::string extras;
    if (l.v_norm) extras += "v_norm ";
    if (l.k_eq_v) extras += "k_eq_v ";
    if (l.kv_source_layer >= 0) extras += "kv_from=" + std::to_string(l.kv_source_layer) + " ";
    if (l.moe) extras += "moe ";
    if (l.per_layer_input) extras += "ple ";
    if (l.layer_scalar) extras += "scalar ";
    char line[320];
    std::snprintf(line, sizeof line, "%5d  %-6s  %6d  %5d  %2d  %8d  %-28s  %8.5f  %7.2f  %-7s  %-7d  %s\n", i,
                  l.attention == AttentionKind::Local ? "local" : "global", l.sliding_window, l.num_heads, l.num_kv_heads,
                  l.head_dim, rope, l.attn_scale, l.attn_softcap, l.qk_norm ? "yes" : "no", l.intermediate_size, extras.c_str());
    o << line;
  }
  return o.str();
}

}  // namespace gf
