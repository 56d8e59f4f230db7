// Paged KV cache: per layer one pool of fixed-size blocks; each sequence owns
// a block table. No per-sequence contiguous reservation, so many sequences of
// different lengths share one pool (the server's continuous batching), and
// blocks are reference-counted (BlockPool) so sequences can share a prompt prefix.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "core/status.h"
#include "model/block_pool.h"
#include "model/model_spec.h"

namespace gf {

// The block accounting plus the memory: one KvPool per layer that has its own K/V.
// Under tensor parallelism the cache has a part per rank (each rank's KV
// heads, on its backend) and one block accounting for all: every rank writes
// the same slots.
class PagedKvCache : public BlockPool {
 public:
  struct Part {
    Backend* be;
    const ModelSpec* spec;  // the rank's shard: its layers' KV heads
  };
  static Result<std::unique_ptr<PagedKvCache>> create(const std::vector<Part>& parts, int64_t num_blocks, int block_size);
  static Result<std::unique_ptr<PagedKvCache>> create(Backend& be, const ModelSpec& spec, int64_t num_blocks, int block_size) {
    return create({{&be, &spec}}, num_blocks, block_size);
  }
  ~PagedKvCache();
  PagedKvCache(const PagedKvCache&) = delete;
  PagedKvCache& operator=(const PagedKvCache&) = delete;

  // Called by the destructor (a multi-process leader tells its followers to free theirs).
  void set_on_free(std::function<void()> f) { on_free_ = std::move(f); }

  // The pool layer `layer` reads and writes in part `part` (KV-shared layers map to their source).
  KvPool& pool(size_t layer, size_t part = 0) { return pools_[part][pool_of_layer_[layer]]; }

 private:
  PagedKvCache(std::vector<Part> parts, int64_t n, int bs) : BlockPool(n, bs), parts_(std::move(parts)), pools_(parts_.size()) {}
  std::vector<Part> parts_;
  std::vector<std::vector<KvPool>> pools_;  // per part, per pool
  std::vector<size_t> pool_of_layer_;
  std::function<void()> on_free_;
};

}  // namespace gf
