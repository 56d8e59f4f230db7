#include "model/gguf_export.h"

#include <cmath>
#include <cstring>

#include "formats/dequant.h"
#include "core/half.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "model/gguf_export_internal.h"

namespace gf {
namespace gguf_export {

const char* arch_name(Family f) {
  static const char* const kArch[] = {"gemma", "gemma2", "gemma3", "gemma4"};
  return kArch[static_cast<int>(f)];
}

std::string blk(int i, const char* what) { return "blk." + std::to_string(i) + "." + what + ".weight"; }

// llama.cpp's general.file_type (llama_ftype) for the matrices' type.
uint32_t file_type(DType t) {
  switch (t) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q4_0: return 2;
    case DType::Q8_0: return 7;
    case DType::Q5_0: return 8;
    case DType::Q4_K: return 15;
    case DType::Q5_K: return 17;
    case DType::Q6_K: return 18;
    case DType::BF16: return 32;
    default: return 0;
  }
}

Result<DType> target_type(const std::string& type, DType source) {
  if (type == "source") return source;
  if (type == "f32") return DType::F32;
  if (type == "f16") return DType::F16;
  if (type == "bf16") return DType::BF16;
  if (type == "q8_0") return DType::Q8_0;
  return Err("unknown --type \"" + type + "\" (source, f32, f16, bf16, q8_0)");
}

Status Exporter::matrix(const std::string& name, const TensorView& t, std::optional<DType> force) {
  GF_ASSIGN_OR_RETURN(DType out, target_type(opt_.type, t.dtype));
  if (force) out = *force;
  if (out == DType::Q8_0 && t.cols() % 32) out = DType::F16;  // as llama.cpp falls back for rows Q8_0 cannot hold
  if (out == t.dtype) return w_.add_tensor(name, t.dtype, t.shape, t.data, t.nbytes, /*copy=*/false);
  GF_ASSIGN_OR_RETURN(size_t row_out, dtype_bytes(out, t.cols()));
  std::vector<uint8_t> bytes(row_out * static_cast<size_t>(t.rows()));
  std::vector<float> row(static_cast<size_t>(t.cols()));
  for (int64_t r = 0; r < t.rows(); ++r) {
    GF_RETURN_IF_ERROR(dequantize_row(t.dtype, t.row(r), row.data(), t.cols()).with_context("tensor " + t.name));
    GF_RETURN_IF_ERROR(quantize_row(out, row.data(), bytes.data() + static_cast<size_t>(r) * row_out, t.cols()));
  }
  return w_.add_tensor(name, out, t.shape, bytes.data(), bytes.size());
}

Status add_common_layer(const Model& m, int i, Exporter& x) {
  const LayerSpec& ls = m.spec.layers[static_cast<size_t>(i)];
  const LayerTensors& L = m.layers[static_cast<size_t>(i)];
  GF_RETURN_IF_ERROR(x.matrix(blk(i, "attn_q"), *L.q));
  if (L.k) GF_RETURN_IF_ERROR(x.matrix(blk(i, "attn_k"), *L.k));
  if (L.v) GF_RETURN_IF_ERROR(x.matrix(blk(i, "attn_v"), *L.v));
  GF_RETURN_IF_ERROR(x.matrix(blk(i, "attn_output"), *L.o));
  GF_RETURN_IF_ERROR(x.matrix(blk(i, "ffn_gate"), *L.gate));
  GF_RETURN_IF_ERROR(x.matrix(blk(i, "ffn_up"), *L.up));
  GF_RETURN_IF_ERROR(x.matrix(blk(i, "ffn_down"), *L.down));
  GF_RETURN_IF_ERROR(x.vector(blk(i, "attn_norm"), L.input_norm));
  GF_RETURN_IF_ERROR(x.vector(blk(i, "ffn_norm"), L.pre_ffw_norm));
  if (ls.sandwich_norms) {
    GF_RETURN_IF_ERROR(x.vector(blk(i, "post_attention_norm"), L.post_attn_norm));
    GF_RETURN_IF_ERROR(x.vector(blk(i, "post_ffw_norm"), L.post_ffw_norm));
  }
  if (ls.qk_norm) {
    GF_RETURN_IF_ERROR(x.vector(blk(i, "attn_q_norm"), L.q_norm));
    if (!L.k_norm.empty()) GF_RETURN_IF_ERROR(x.vector(blk(i, "attn_k_norm"), L.k_norm));
  }
  return Ok();
}

namespace {

// The keys llama.cpp's converter writes for gemma, gemma2 and gemma3, plus
// what gemforge reads beyond them (query_pre_attn_scalar, the local rope base
// and the sliding pattern, which llama.cpp derives from the layer count).
void add_metadata(const Model& m, GgufWriter& w) {
  const ModelSpec& s = m.spec;
  const std::string a = arch_name(s.family);
  w.add_u32(a + ".context_length", static_cast<uint32_t>(s.max_position_embeddings));
  w.add_u32(a + ".embedding_length", static_cast<uint32_t>(s.hidden_size));
  w.add_u32(a + ".block_count", static_cast<uint32_t>(s.num_layers));
  w.add_u32(a + ".feed_forward_length", static_cast<uint32_t>(s.intermediate_size));
  w.add_u32(a + ".attention.head_count", static_cast<uint32_t>(s.num_heads));
  w.add_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(s.num_kv_heads));
  w.add_u32(a + ".attention.key_length", static_cast<uint32_t>(s.head_dim));
  w.add_u32(a + ".attention.value_length", static_cast<uint32_t>(s.head_dim));
  w.add_f32(a + ".attention.layer_norm_rms_epsilon", s.rms_norm_eps);
  const LayerSpec* global = nullptr;
  const LayerSpec* local = nullptr;
  for (const LayerSpec& l : s.layers) {
    if (l.attention == AttentionKind::Global && !global) global = &l;
    if (l.attention == AttentionKind::Local && !local) local = &l;
  }
  const LayerSpec& g = global ? *global : s.layers.front();
  if (s.family != Family::Gemma1) {
    w.add_f32(a + ".attention.query_pre_attn_scalar", 1.0f / (g.attn_scale * g.attn_scale));
    if (local) w.add_u32(a + ".attention.sliding_window", static_cast<uint32_t>(local->sliding_window));
  }
  w.add_f32(a + ".rope.freq_base", static_cast<float>(g.rope.theta));
  if (g.rope.kind == RopeKind::Linear) {
    w.add_string(a + ".rope.scaling.type", "linear");
    w.add_f32(a + ".rope.scaling.factor", static_cast<float>(g.rope.factor));
  }
  if (s.family == Family::Gemma2) w.add_f32(a + ".attn_logit_softcapping", g.attn_softcap);
  if (s.final_softcap > 0) w.add_f32(a + ".final_logit_softcapping", s.final_softcap);
  if (s.family == Family::Gemma3) {
    if (local) w.add_f32(a + ".rope.freq_base_swa", static_cast<float>(local->rope.theta));
    GgufValue v;  // true = sliding, as llama.cpp writes it for gemma3n/gemma4
    v.type = GgufType::ARRAY;
    v.elem_type = GgufType::BOOL;
    for (const LayerSpec& l : s.layers) v.ints.push_back(l.attention == AttentionKind::Local ? 1 : 0);
    w.add(a + ".attention.sliding_window_pattern", v);
  }
}

// The source's tokenizer keys, when it is a GGUF (a Hugging Face tokenizer is
// not converted yet).
Status copy_tokenizer(const Model& m, GgufWriter& w) {
  if (m.tokenizer_path.size() < 5 || m.tokenizer_path.compare(m.tokenizer_path.size() - 5, 5, ".gguf") != 0) return Ok();
  GF_ASSIGN_OR_RETURN(GgufFile f, GgufFile::open(m.tokenizer_path));
  for (const std::string& k : f.keys())
    if (k.rfind("tokenizer.", 0) == 0) w.add(k, *f.find(k));
  return Ok();
}

}  // namespace

}  // namespace gguf_export

Status export_gguf(const Model& m, const std::string& path, const GgufExportOptions& opt) {
  using namespace gguf_export;
  const ModelSpec& s = m.spec;
  GF_ASSIGN_OR_RETURN(DType matrices, target_type(opt.type, m.embed->dtype));
  Exporter x(opt);
  GgufWriter& w = x.writer();
  std::string name = opt.name;
  if (name.empty()) name = m.source.substr(m.source.find_last_of('/') + 1);
  w.add_string("general.architecture", arch_name(s.family));
  w.add_string("general.name", name);
  w.add_u32("general.file_type", file_type(matrices));
  // Where transformers rounds what llama.cpp computes in float32 (the
  // embedding normaliser and inv_freq of bf16 checkpoints), gemforge keeps the
  // checkpoint's numbers so the GGUF gives the logits the folder gives;
  // llama.cpp ignores these keys.
  if (opt.gemforge_keys) {
    w.add_f32("gemforge.embedding_scale", s.embed_scale);
    w.add_bool("gemforge.rope.bf16_inv_freq", s.layers.front().rope.bf16_inv_freq);
  }
  GF_RETURN_IF_ERROR(copy_tokenizer(m, w));
  if (opt.add_tokenizer && !w.has_key("tokenizer.ggml.model")) GF_RETURN_IF_ERROR(opt.add_tokenizer(w));
  if (s.family == Family::Gemma4) {
    GF_RETURN_IF_ERROR(add_gemma4(m, x));
    return w.write(path).with_context(path);
  }
  add_metadata(m, w);
  const size_t total = 3 + m.layers.size();
  size_t done = 0;
  auto tick = [&] { if (opt.progress) opt.progress(++done, total); };
  GF_RETURN_IF_ERROR(x.matrix("token_embd.weight", *m.embed));
  tick();
  if (m.lm_head != m.embed) GF_RETURN_IF_ERROR(x.matrix("output.weight", *m.lm_head));
  tick();
  GF_RETURN_IF_ERROR(x.vector("output_norm.weight", m.final_norm));
  tick();
  for (int i = 0; i < s.num_layers; ++i) {
    GF_RETURN_IF_ERROR(add_common_layer(m, i, x));
    tick();
  }
  return w.write(path).with_context(path);
}

}  // namespace gf
