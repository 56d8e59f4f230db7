// Internals of LoraModel shared by its forward (lora_model.cpp) and backward
// (lora_backward.cpp) translation units.
#pragma once
#include <array>
#include <vector>

#include "train/lora_model.h"
#include "train/ops.h"

namespace gf::train {

// A weight transposed ([in, out]) for dx = dy W through cpu::matmul.
struct Transposed {
  TensorView view;
  std::vector<uint8_t> bytes;
};

struct LoraModel::Frozen {
  struct Layer {
    std::array<Transposed, kNumProj> wt;  // empty view where the layer has no such projection
    std::array<Transposed, kNumProj> wf;  // float32 copies [out, in] (f32_weights only)
    std::vector<float> inv_freq;
    // Gemma 4 per-layer input step: transposes for the backward, float32 copies (f32_weights only).
    Transposed ple_gate_t, ple_proj_t, ple_gate_f, ple_proj_f;
  };
  std::vector<Layer> layers;
  Transposed lm_head_t;  // [hidden, vocab]
  Transposed lm_head_f;  // float32 copy (f32_weights only)
  Transposed ple_model_proj_f;
  bool f32 = false;
};

struct LayerActs {
  std::vector<float> x_in, r_in, h1;
  std::vector<float> q_raw, k_raw, v_raw, r_q, r_k, r_v;  // projections before the per-head norms
  std::vector<float> q, k, v, p, att;                     // attention inputs (normed, rotated), probabilities, output
  std::vector<float> a, r_a;                              // o_proj output (before the post-attention norm)
  std::vector<float> x_mid, r_mid, h2;
  std::vector<float> g, u, m, d, r_d;                     // MLP: gate, up, gelu(gate) * up, down output
  std::vector<float> ple_g, ple_h, r_ple;                 // Gemma 4 PLE step: gate (before gelu), projection (before its norm)
  std::vector<float> dk_shared, dv_shared;                // gradients into this layer's k, v from layers sharing them
  std::array<LoraSaved, kNumProj> lora;
};

struct LoraModel::Acts {
  int64_t T = 0;
  std::vector<int32_t> ids;
  std::vector<int32_t> pos;  // per-segment positions of a packed sequence (empty: 0..T-1)
  const int32_t* pos_ptr() const { return pos.empty() ? nullptr : pos.data(); }
  std::vector<LayerActs> layers;
  std::vector<std::vector<float>> ple;  // Gemma 4 per-layer inputs [T, P] per layer (constants: they depend on the frozen embedding only)
  std::vector<float> x_last, r_f, xf;  // residual after the last layer, final-norm rstd, final-normed hidden
};

AttnShape attn_shape(const LayerSpec& ls, int64_t T, const int32_t* pos);
const TensorView* proj_weight(const LayerTensors& t, Proj p);

}  // namespace gf::train
