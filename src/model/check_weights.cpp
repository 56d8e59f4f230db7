// Rejects weights that would silently poison every logit: NaN or Inf values
// (a bad conversion or a corrupt download) and dtypes no kernel reads. One
// pass over the bound tensors, split over the thread pool; for block-quantized
// types only the float16 scales can be non-finite, so only they are read.
#include <atomic>
#include <cmath>
#include <cstring>

#include "core/thread_pool.h"
#include "model/model.h"

namespace gf {
namespace {

inline bool f16_finite(uint16_t h) { return (h & 0x7c00) != 0x7c00; }
inline bool bf16_finite(uint16_t h) { return (h & 0x7f80) != 0x7f80; }
inline bool f32_finite(uint32_t b) { return (b & 0x7f800000u) != 0x7f800000u; }
inline uint16_t load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Byte offsets of the float16 scales inside one block of a GGML quantized type.
struct ScaleFields {
  int n = 0;
  int at[2] = {0, 0};
};
ScaleFields scale_fields(DType t) {
  switch (t) {
    case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: return {1, {0, 0}};
    case DType::Q4_1: case DType::Q5_1: case DType::Q8_1: return {2, {0, 2}};
    case DType::Q2_K: return {2, {80, 82}};
    case DType::Q3_K: return {1, {108, 0}};
    case DType::Q4_K: case DType::Q5_K: return {2, {0, 2}};
    case DType::Q6_K: return {1, {208, 0}};
    default: return {};
  }
}

// Index of the first non-finite element (or block) in [begin, end), or -1.
int64_t first_bad(const TensorView& t, int64_t begin, int64_t end) {
  const uint8_t* d = t.data;
  switch (t.dtype) {
    case DType::F32:
      for (int64_t i = begin; i < end; ++i) {
        uint32_t b;
        std::memcpy(&b, d + 4 * i, 4);
        if (!f32_finite(b)) return i;
      }
      return -1;
    case DType::BF16:
      for (int64_t i = begin; i < end; ++i)
        if (!bf16_finite(load16(d + 2 * i))) return i;
      return -1;
    case DType::F16:
      for (int64_t i = begin; i < end; ++i)
        if (!f16_finite(load16(d + 2 * i))) return i;
      return -1;
    default: {
      const ScaleFields f = scale_fields(t.dtype);
      const int bb = dtype_info(t.dtype).block_bytes;
      for (int64_t i = begin; i < end; ++i)
        for (int k = 0; k < f.n; ++k)
          if (!f16_finite(load16(d + i * bb + f.at[k]))) return i;
      return -1;
    }
  }
}

bool readable_matrix_dtype(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 || scale_fields(t).n > 0;
}

Status check_tensor(const TensorView& t) {
  if (!readable_matrix_dtype(t.dtype))
    return Err("tensor " + quoted_name(t.name) + " has dtype " + dtype_name(t.dtype) +
               ", which is not a weight type gemforge reads (F32, F16, BF16 or a GGML block type)");
  const bool plain = !is_quantized(t.dtype);
  const int64_t units = plain ? t.numel() : t.numel() / dtype_info(t.dtype).block_elems;
  std::atomic<int64_t> bad{-1};
  parallel_for(units, [&](int64_t b, int64_t e) {
    if (bad.load(std::memory_order_relaxed) >= 0) return;
    const int64_t i = first_bad(t, b, e);
    if (i >= 0) bad.store(i);
  }, 1 << 16);
  if (bad.load() < 0) return Ok();
  const int64_t i = bad.load();
  return Err("tensor " + quoted_name(t.name) + " holds NaN or Inf " +
             (plain ? "at element " + std::to_string(i) : "in the scale of block " + std::to_string(i)) +
             ": the file is corrupt or was converted wrongly");
}

Status check_vector(const std::vector<float>& v, const std::string& what) {
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i])) return Err(what + " holds NaN or Inf at element " + std::to_string(i));
  return Ok();
}

}  // namespace

Status check_weights(const Model& m) {
  GF_RETURN_IF_ERROR(check_tensor(*m.embed));
  if (m.lm_head != m.embed) GF_RETURN_IF_ERROR(check_tensor(*m.lm_head));
  GF_RETURN_IF_ERROR(check_vector(m.final_norm, "the final norm"));
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const LayerTensors& L = m.layers[i];
    for (const TensorView* t : {L.q, L.k, L.v, L.o, L.gate, L.up, L.down, L.ple_gate, L.ple_proj, L.router_proj})
      if (t) GF_RETURN_IF_ERROR(check_tensor(*t));
    for (const auto& e : L.experts)
      for (const TensorView* t : {&e.gate, &e.up, &e.down}) GF_RETURN_IF_ERROR(check_tensor(*t));
    const std::string layer = "layer " + std::to_string(i) + " ";
    const std::vector<float> scalar = {L.layer_scalar};
    const std::pair<const std::vector<float>*, const char*> vectors[] = {
        {&L.input_norm, "input norm"}, {&L.post_attn_norm, "post-attention norm"}, {&L.pre_ffw_norm, "pre-feedforward norm"},
        {&L.post_ffw_norm, "post-feedforward norm"}, {&L.q_norm, "q norm"}, {&L.k_norm, "k norm"}, {&scalar, "layer_scalar"},
        {&L.ple_post_norm, "post per-layer-input norm"}, {&L.router_scale, "router scale"},
        {&L.per_expert_scale, "per-expert scale"}, {&L.post_ffw_norm_1, "post-feedforward norm 1"},
        {&L.pre_ffw_norm_2, "pre-feedforward norm 2"}, {&L.post_ffw_norm_2, "post-feedforward norm 2"}};
    for (const auto& [v, what] : vectors) GF_RETURN_IF_ERROR(check_vector(*v, layer + what));
  }
  for (const TensorView* t : {m.ple_embed, m.ple_model_proj})
    if (t) GF_RETURN_IF_ERROR(check_tensor(*t));
  GF_RETURN_IF_ERROR(check_vector(m.ple_proj_norm, "the per-layer projection norm"));
  return Ok();
}

}  // namespace gf
