#include "runtime/prefix_cache.h"

#include <algorithm>

namespace gf {
namespace {

constexpr uint64_t kSeed = 0x12345;

uint64_t chain_hash(uint64_t h, const int32_t* t, int n) {
  for (int i = 0; i < n; ++i) {
    h ^= static_cast<uint32_t>(t[i]) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdull;
  }
  return h;
}

// The chain's start: the adapter's id, so chains of different adapters never meet.
uint64_t seed(int adapter) { return chain_hash(kSeed, &adapter, 1); }

}  // namespace

void PrefixCache::attach(const std::vector<int32_t>& tokens, SeqState& seq, int adapter) {
  const int bs = pool_.block_size();
  const int64_t full = (static_cast<int64_t>(tokens.size()) - 1) / bs;
  uint64_t h = seed(adapter);
  for (int64_t b = 0; b < full; ++b) {
    h = chain_hash(h, tokens.data() + b * bs, bs);
    auto it = blocks_.find(h);
    if (it == blocks_.end()) break;
    pool_.retain(it->second);
    seq.blocks.push_back(it->second);
  }
  seq.length = static_cast<int64_t>(seq.blocks.size()) * bs;
}

void PrefixCache::remember(const std::vector<int32_t>& tokens, const SeqState& seq, int adapter) {
  const int bs = pool_.block_size();
  const int64_t full = std::min<int64_t>(seq.length, static_cast<int64_t>(tokens.size())) / bs;
  uint64_t h = seed(adapter);
  for (int64_t b = 0; b < full && b < static_cast<int64_t>(seq.blocks.size()); ++b) {
    h = chain_hash(h, tokens.data() + b * bs, bs);
    if (blocks_.count(h)) continue;
    const int32_t block = seq.blocks[static_cast<size_t>(b)];
    pool_.retain(block);
    blocks_[h] = block;
    lru_.push_back(h);
  }
}

bool PrefixCache::evict(int64_t blocks_needed) {
  while (pool_.free_blocks() < blocks_needed && !lru_.empty()) {
    const uint64_t h = lru_.front();
    lru_.pop_front();
    auto it = blocks_.find(h);
    if (it == blocks_.end()) continue;
    pool_.release_block(it->second);
    blocks_.erase(it);
  }
  return pool_.free_blocks() >= blocks_needed;
}

int64_t PrefixCache::idle_blocks() const {
  int64_t n = 0;
  for (const auto& [h, b] : blocks_) n += pool_.refcount(b) == 1;
  return n;
}

}  // namespace gf
