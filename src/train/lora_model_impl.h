// Internals of LoraModel shared by its forward (lora_model.cpp) and backward
// (lora_backward.cpp) translation units.
#pragma once
#include <array>
#include <vector>

#include "train/lora_model.h"
#include "train/ops.h"

namespace gf::train {

struct LoraModel::Frozen {
  struct Layer {
    std::array<int, kNumProj> w{};    // weight ids, -1 where the layer has no such projection
    std::array<int64_t, kNumProj> out{};  // their output widths
    std::vector<float> inv_freq_host;
    TBuf inv_freq;
    TBuf input_norm, post_attn_norm, pre_ffw_norm, post_ffw_norm, q_norm, k_norm, ple_post_norm;
    int ple_gate = -1, ple_proj = -1;  // Gemma 4 per-layer input step
  };
  std::vector<Layer> layers;
  int embed = -1, lm_head = -1, ple_embed = -1, ple_model_proj = -1;
  TBuf final_norm, ple_proj_norm;
};

// The adapter's tensors (and gradients) as the ops' buffers, per LoraAdapter::mats index.
struct LoraModel::Bound {
  std::vector<TBuf> A, B, gA, gB;
};

// What the forward keeps for the backward of one adapted projection.
struct LoraSaved {
  TBuf xd;                    // dropout(x), only when dropout > 0
  std::vector<uint8_t> keep;  // dropout mask (host; empty: no dropout)
  TBuf u;                     // dropout(x) A^T  [T, r]
};

struct LayerActs {
  TBuf x_in, r_in, h1;
  TBuf q_raw, k_raw, v_raw, r_q, r_k, r_v;  // projections before the per-head norms
  TBuf q, k, v, p, att;                     // attention inputs (normed, rotated), saved state, output
  TBuf a, r_a;                              // o_proj output (before the post-attention norm)
  TBuf x_mid, r_mid, h2;
  TBuf g, u, m, d, r_d;                     // MLP: gate, up, gelu(gate) * up, down output
  TBuf ple_g, ple_h, r_ple;                 // Gemma 4 PLE step: gate (before gelu), projection (before its norm)
  TBuf dk_shared, dv_shared;                // gradients into this layer's k, v from layers sharing them
  std::array<LoraSaved, kNumProj> lora;
};

struct LoraModel::Acts {
  int64_t T = 0;
  std::vector<int32_t> ids;
  std::vector<int32_t> pos;  // per-segment positions of a packed sequence (empty: 0..T-1)
  const int32_t* pos_ptr() const { return pos.empty() ? nullptr : pos.data(); }
  std::vector<LayerActs> layers;
  std::vector<TBuf> ple;  // Gemma 4 per-layer inputs [T, P] per layer (constants: they depend on the frozen embedding only)
  TBuf x_last, r_f, xf;   // residual after the last layer, final-norm rstd, final-normed hidden
};

AttnShape attn_shape(const LayerSpec& ls, int64_t T, const int32_t* pos);
const TensorView* proj_weight(const LayerTensors& t, Proj p);
// A norm's weights: null when the buffer is empty (the norm has none).
inline const TBuf* weights_or_null(const TBuf& b) { return b.empty() ? nullptr : &b; }
// A fresh copy of b on the same ops.
TBuf clone(TrainOps& o, const TBuf& b);

}  // namespace gf::train
