// Prefix caching: full KV blocks of finished requests, keyed by a hash of
// every token up to the block's end, so a later prompt that starts the same
// way attaches them instead of recomputing. The cache holds one reference to
// each block it keeps (BlockPool::retain); the oldest go first when the pool
// runs short.
#pragma once
#include <cstdint>
#include <deque>
#include <unordered_map>
#include <vector>

#include "model/block_pool.h"

namespace gf {

class PrefixCache {
 public:
  explicit PrefixCache(BlockPool& pool) : pool_(pool) {}

  // Attaches the cached blocks that start `tokens` to the empty `seq`, leaving
  // at least one token to compute (its logits start the reply); sets
  // seq.length to the tokens they hold.
  // `adapter` (EngineRequest::adapter) is part of the key: KV computed under
  // one LoRA adapter is never attached to a sequence of another.
  void attach(const std::vector<int32_t>& tokens, SeqState& seq, int adapter = 0);
  // Keeps seq's full blocks of `tokens` that are in the cache and not yet known.
  void remember(const std::vector<int32_t>& tokens, const SeqState& seq, int adapter = 0);
  // Drops the oldest cached blocks until the pool has `blocks_needed` free; false if it cannot.
  bool evict(int64_t blocks_needed);

  int64_t cached_blocks() const { return static_cast<int64_t>(blocks_.size()); }
  // Cached blocks no sequence uses: free for the taking, so not counted as used.
  int64_t idle_blocks() const;

 private:
  BlockPool& pool_;
  std::unordered_map<uint64_t, int32_t> blocks_;
  std::deque<uint64_t> lru_;  // oldest first
};

}  // namespace gf
