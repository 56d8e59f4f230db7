#include "model/block_pool.h"

#include <string>

namespace gf {

BlockPool::BlockPool(int64_t num_blocks, int block_size) : num_blocks_(num_blocks), block_size_(block_size) {
  refs_.assign(static_cast<size_t>(num_blocks), 0);
  free_.reserve(static_cast<size_t>(num_blocks));
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));  // pop_back gives 0 first
}

Status BlockPool::reserve(SeqState& seq, int64_t tokens) {
  const int64_t need = blocks_for(tokens) - static_cast<int64_t>(seq.blocks.size());
  if (need <= 0) return Ok();
  if (need > free_blocks())
    return Err("KV cache is full: " + std::to_string(need) + " more blocks needed, " + std::to_string(free_blocks()) + " free");
  for (int64_t i = 0; i < need; ++i) {
    const int32_t b = free_.back();
    free_.pop_back();
    refs_[static_cast<size_t>(b)] = 1;
    seq.blocks.push_back(b);
  }
  return Ok();
}

void BlockPool::release(SeqState& seq) {
  for (int32_t b : seq.blocks) release_block(b);
  seq.blocks.clear();
  seq.length = 0;
}

}  // namespace gf
