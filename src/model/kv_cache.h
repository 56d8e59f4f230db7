// Paged KV cache: per layer one pool of fixed-size blocks; each sequence owns
// a block table. No per-sequence contiguous reservation, so many sequences of
// different lengths share one pool (the server's continuous batching), and
// blocks are reference-counted (BlockPool) so sequences can share a prompt prefix.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "core/status.h"
#include "model/block_pool.h"
#include "model/model_spec.h"

namespace gf {

// The block accounting plus the memory: one KvPool per layer that has its own K/V.
class PagedKvCache : public BlockPool {
 public:
  static Result<std::unique_ptr<PagedKvCache>> create(Backend& be, const ModelSpec& spec, int64_t num_blocks, int block_size);
  ~PagedKvCache();
  PagedKvCache(const PagedKvCache&) = delete;
  PagedKvCache& operator=(const PagedKvCache&) = delete;

  // The pool layer `layer` reads and writes (KV-shared layers map to their source).
  KvPool& pool(size_t layer) { return pools_[pool_of_layer_[layer]]; }

 private:
  PagedKvCache(Backend& be, int64_t n, int bs) : BlockPool(n, bs), be_(&be) {}
  Backend* be_;
  std::vector<KvPool> pools_;
  std::vector<size_t> pool_of_layer_;
};

}  // namespace gf
