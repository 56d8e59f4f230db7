// LoRA adapters for the linear projections of a Gemma decoder, as PEFT
// defines them: y = x W^T + s * (dropout(x) A^T) B^T with A [r, in] and
// B [out, r], s = alpha / r (alpha / sqrt(r) with rsLoRA). A starts
// Kaiming-uniform (PEFT's default, bound 1/sqrt(in)), B at zero, so a fresh
// adapter leaves the model unchanged.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/adapter.h"
#include "model/model_spec.h"

namespace gf::train {

// The decoder's projection ids (model/adapter.h), shared with inference.
using Proj = Projection;
constexpr int kNumProj = kNumProjections;
// PEFT / transformers module name: "q_proj", ..., "down_proj".
const char* proj_module(Proj p);
// "self_attn" or "mlp".
const char* proj_block(Proj p);

struct LoraConfig {
  int rank = 8;
  float alpha = 16.0f;
  float dropout = 0.0f;
  bool rslora = false;
  std::vector<Proj> targets = {Proj::Q, Proj::K, Proj::V, Proj::O, Proj::Gate, Proj::Up, Proj::Down};
  float scaling() const;
};

// "all" / "all-linear", or a comma list of q,k,v,o,gate,up,down (with or without "_proj").
Result<std::vector<Proj>> parse_targets(const std::string& s);

struct LoraMatrix {
  int layer = 0;
  Proj proj = Proj::Q;
  int64_t in = 0, out = 0;
  std::vector<float> A;  // [r, in]
  std::vector<float> B;  // [out, r]
};

struct LoraAdapter {
  LoraConfig cfg;
  std::vector<LoraMatrix> mats;
  std::vector<int> index;  // layer * kNumProj + proj -> mats index, -1 if not adapted

  const LoraMatrix* find(int layer, Proj p) const {
    const int i = index[static_cast<size_t>(layer * kNumProj + static_cast<int>(p))];
    return i < 0 ? nullptr : &mats[static_cast<size_t>(i)];
  }
  // Parameter tensors in a fixed order (A then B of each matrix): the optimizer's and checkpoints' view.
  size_t num_tensors() const { return mats.size() * 2; }
  std::vector<float>& tensor(size_t i) { return i % 2 ? mats[i / 2].B : mats[i / 2].A; }
  const std::vector<float>& tensor(size_t i) const { return i % 2 ? mats[i / 2].B : mats[i / 2].A; }
  int64_t num_params() const;
};

// in/out of projection p in layer `layer` of the spec; out = 0 when the layer has no such projection (k_eq_v's v).
void proj_shape(const ModelSpec& s, int layer, Proj p, int64_t& in, int64_t& out);

// An adapter on cfg.targets of every layer, initialised as PEFT does from `seed`.
// Layers without a projection (Gemma 4 k_eq_v: no v_proj) are skipped.
Result<LoraAdapter> make_adapter(const ModelSpec& s, const LoraConfig& cfg, uint64_t seed);

// Gradients shaped like an adapter's tensors.
struct LoraGrads {
  std::vector<std::vector<float>> g;
  static LoraGrads zeros_like(const LoraAdapter& a);
  void zero();
  std::vector<float>& A(size_t mat) { return g[mat * 2]; }
  std::vector<float>& B(size_t mat) { return g[mat * 2 + 1]; }
};

// Deterministic random numbers from a 64-bit state (splitmix64): the same on every platform.
struct Rng {
  uint64_t state;
  explicit Rng(uint64_t seed) : state(seed) {}
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
};
uint64_t mix_seed(uint64_t a, uint64_t b);

}  // namespace gf::train
