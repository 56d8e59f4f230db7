// Device memory of the CUDA backend: activations with their bf16 shadows, and
// the scratch buffers some ops need. Weights and KV pools are plain
// cudaMalloc'd buffers (memory.cu, the Backend overrides).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <set>
#include <unordered_map>
#include <utility>

#include "backend/backend.h"
#include "backend/cuda/common.cuh"

namespace gf::cuda {

class GraphCache;

// Acts: float32 [rows, cols] followed by a bf16 shadow of the same count (the
// GEMM input, written by the ops that feed a GEMM). Freed blocks are cached by
// size and handed out lowest address first, so the same sequence of
// allocations yields the same pointers (graph reuse).
class ActPool {
 public:
  explicit ActPool(GraphCache& graphs) : graphs_(graphs) {}
  ~ActPool();
  ActPool(const ActPool&) = delete;
  ActPool& operator=(const ActPool&) = delete;

  Act alloc(int64_t rows, int64_t cols, cudaStream_t stream);
  void release(Act& a);
  // The bf16 shadow of an act of this pool (null for other memory).
  void* shadow(const Act& a) const;

  // Which acts hold a valid shadow, and of how many columns.
  bool shadow_ready(const void* p, int64_t cols) const {
    auto it = shadow_valid_.find(const_cast<void*>(p));
    return it != shadow_valid_.end() && it->second == cols;
  }
  void set_shadow(const void* p, int64_t cols) { shadow_valid_[const_cast<void*>(p)] = cols; }
  void drop_shadow(const void* p) { shadow_valid_.erase(const_cast<void*>(p)); }

 private:
  void trim();  // gives the cached blocks back

  GraphCache& graphs_;
  std::map<size_t, std::set<char*>> free_;
  std::unordered_map<char*, std::pair<size_t, size_t>> live_;  // act -> (bytes, offset of its bf16 shadow)
  std::unordered_map<void*, int64_t> shadow_valid_;           // act -> cols of its valid bf16 shadow
};

// Scratch that grows on demand; growing one drops the graphs that point at it.
class Scratch {
 public:
  explicit Scratch(GraphCache& graphs) : graphs_(graphs) {}
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  bf16* bf16s(size_t elems, cudaStream_t stream);     // the bf16 copy of a GEMM input without a shadow
  bf16* weights16(size_t elems, cudaStream_t stream); // a quantized weight decoded for cuBLASLt (quant.cu)
  float* partials(size_t bytes, cudaStream_t stream); // split-K decode attention
  void* acts8(size_t bytes, cudaStream_t stream);     // a quantized GEMV's input rounded to int8 (quant.cu)
  int32_t* sample_out(size_t words, cudaStream_t stream);  // sampled ids (+ log-probs) of the step
  int32_t* sample_host() const { return hsample_; }  // pinned, for their download

 private:
  // p grown to at least `bytes` (twice its capacity at least); never during a capture.
  void* grow(void*& p, size_t& cap, size_t bytes, const char* what, cudaStream_t stream);

  GraphCache& graphs_;
  void* scratch16_ = nullptr;
  size_t scratch16_bytes_ = 0;
  void* weights16_ = nullptr;
  size_t weights16_bytes_ = 0;
  void* part_ = nullptr;
  size_t part_bytes_ = 0;
  void* acts8_ = nullptr;
  size_t acts8_bytes_ = 0;
  int32_t* dsample_ = nullptr;
  int32_t* hsample_ = nullptr;
  size_t sample_words_ = 0;
};

}  // namespace gf::cuda
