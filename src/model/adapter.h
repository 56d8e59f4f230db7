// An unmerged low-rank adapter (LoRA) on the decoder's projections, as the
// decoder applies it: y = x W^T + scale * (x A^T) B^T, with A [rank, in] and
// B [out, rank]. The training side (src/train) owns adapters and their files;
// this is the view the forward pass needs.
#pragma once
#include <cstdint>
#include <vector>

namespace gf {

enum class Projection : int { Q, K, V, O, Gate, Up, Down };
constexpr int kNumProjections = 7;

struct AdapterMatrix {
  int layer = 0;
  Projection proj = Projection::Q;
  int64_t rank = 0, in = 0, out = 0;
  const float* A = nullptr;  // [rank, in]
  const float* B = nullptr;  // [out, rank]
  float scale = 1.0f;
};

using Adapter = std::vector<AdapterMatrix>;

}  // namespace gf
