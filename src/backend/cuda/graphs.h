// CUDA graphs of decode steps. A pure decode step (one token per sequence) is
// recorded as a list of Cmds; the list (with the metadata size and table
// stride) is the step's signature. The first time a signature is seen the step
// runs eagerly, the second time it is captured into a graph, and from then on
// the graph is replayed (cuda_backend.cu, finish_step).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "backend/cuda/ops.h"

namespace gf::cuda {

struct Graph {
  std::vector<Cmd> cmds;
  int64_t meta_ints = 0;
  int64_t stride = 0;
  cudaGraphExec_t exec = nullptr;
  uint64_t last_use = 0;
};

class GraphCache {
 public:
  // Most graphs kept; past it the least recently used goes.
  static constexpr size_t kMaxGraphs = 48;

  GraphCache() = default;
  ~GraphCache() { invalidate(); }
  GraphCache(const GraphCache&) = delete;
  GraphCache& operator=(const GraphCache&) = delete;

  // Drops every graph (their pointers into buffers that move or go).
  void invalidate();
  // True while a capture runs: nothing may allocate or grow then.
  bool capturing() const { return capturing_; }

  // The graph (captured or not yet) of this signature, or null.
  Graph* find(const std::vector<Cmd>& cmds, int64_t meta_ints, int64_t stride);
  // A new entry for a signature seen the first time (evicting the least recently used).
  Graph* add(const std::vector<Cmd>& cmds, int64_t meta_ints, int64_t stride);
  // Captures what run() issues on `stream` into g and launches it once.
  void capture(Graph& g, cudaStream_t stream, const std::function<void()>& run);
  void launch(Graph& g, cudaStream_t stream) const;
  uint64_t next_tick() { return ++tick_; }

 private:
  std::vector<std::unique_ptr<Graph>> graphs_;
  uint64_t tick_ = 0;
  bool capturing_ = false;
};

}  // namespace gf::cuda
