// Block accounting of a paged KV cache: a free list and reference counts, no
// memory. The scheduler plans with it (what fits, what to evict) without the
// model; PagedKvCache adds the per-layer pools the blocks index.
#pragma once
#include <cstdint>
#include <vector>

#include "core/status.h"

namespace gf {

// One sequence's view of the cache.
struct SeqState {
  std::vector<int32_t> blocks;  // block table
  int64_t length = 0;           // tokens whose K/V are in the cache
};

class BlockPool {
 public:
  // num_blocks and block_size must be positive.
  BlockPool(int64_t num_blocks, int block_size);

  int block_size() const { return block_size_; }
  int64_t num_blocks() const { return num_blocks_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t capacity_tokens() const { return num_blocks_ * block_size_; }
  // Blocks a sequence needs to hold `tokens` tokens (rounded up).
  int64_t blocks_for(int64_t tokens) const { return (tokens + block_size_ - 1) / block_size_; }

  // Grows seq's block table so it can hold `tokens` tokens; an error (and no
  // change) if the pool has too few free blocks.
  Status reserve(SeqState& seq, int64_t tokens);
  // Drops seq's references (a block no one else holds goes back to the pool); empties seq.
  void release(SeqState& seq);
  int refcount(int32_t block) const { return refs_[static_cast<size_t>(block)]; }
  // Extra references held by a prefix cache: a retained block outlives the sequences that used it.
  void retain(int32_t block) { ++refs_[static_cast<size_t>(block)]; }
  void release_block(int32_t block) {
    if (--refs_[static_cast<size_t>(block)] == 0) free_.push_back(block);
  }

 private:
  int64_t num_blocks_;
  int block_size_;
  std::vector<int32_t> free_;
  std::vector<int> refs_;
};

}  // namespace gf
