// Paged KV cache: per layer one pool of fixed-size blocks; each sequence owns
// a block table. No per-sequence contiguous reservation, so many sequences of
// different lengths share one pool (the server's continuous batching), and
// blocks are reference-counted so sequences can share a prompt prefix.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "core/status.h"
#include "model/model_spec.h"

namespace gf {

struct SeqState {
  std::vector<int32_t> blocks;  // block table
  int64_t length = 0;           // tokens whose K/V are in the cache
};

class PagedKvCache {
 public:
  static Result<std::unique_ptr<PagedKvCache>> create(Backend& be, const ModelSpec& spec, int64_t num_blocks, int block_size);
  ~PagedKvCache();
  PagedKvCache(const PagedKvCache&) = delete;
  PagedKvCache& operator=(const PagedKvCache&) = delete;

  int block_size() const { return block_size_; }
  int64_t num_blocks() const { return num_blocks_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t capacity_tokens() const { return num_blocks_ * block_size_; }
  // The pool layer `layer` reads and writes (KV-shared layers map to their source).
  KvPool& pool(size_t layer) { return pools_[pool_of_layer_[layer]]; }

  // Grows seq's block table so it can hold `tokens` tokens; an error (and no
  // change) if the pool has too few free blocks.
  Status reserve(SeqState& seq, int64_t tokens);
  // Returns seq's blocks (those no other sequence shares) to the pool.
  void release(SeqState& seq);
  // Makes `dst` share the first `tokens` tokens' full blocks of `src` (prefix caching).
  void share_prefix(const SeqState& src, int64_t tokens, SeqState& dst);
  int refcount(int32_t block) const { return refs_[static_cast<size_t>(block)]; }
  // Extra references held by a prefix cache: a retained block outlives the sequences that used it.
  void retain(int32_t block) { ++refs_[static_cast<size_t>(block)]; }
  void release_block(int32_t block) {
    if (--refs_[static_cast<size_t>(block)] == 0) free_.push_back(block);
  }

 private:
  PagedKvCache(Backend& be, int64_t n, int bs) : be_(&be), num_blocks_(n), block_size_(bs) {}
  Backend* be_;
  int64_t num_blocks_;
  int block_size_;
  std::vector<KvPool> pools_;
  std::vector<size_t> pool_of_layer_;
  std::vector<int32_t> free_;
  std::vector<int> refs_;
};

}  // namespace gf
