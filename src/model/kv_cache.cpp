#include "model/kv_cache.h"

#include <algorithm>

namespace gf {

Result<std::unique_ptr<PagedKvCache>> PagedKvCache::create(Backend& be, const ModelSpec& spec, int64_t num_blocks, int block_size) {
  if (num_blocks <= 0 || block_size <= 0) return Err("KV cache needs a positive number of blocks and block size");
  std::unique_ptr<PagedKvCache> c(new PagedKvCache(be, num_blocks, block_size));
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const LayerSpec& l = spec.layers[i];
    if (l.kv_source_layer >= 0) {
      c->pool_of_layer_.push_back(c->pool_of_layer_[static_cast<size_t>(l.kv_source_layer)]);
      continue;
    }
    auto pool = be.alloc_kv(num_blocks, block_size, static_cast<int64_t>(l.num_kv_heads) * l.head_dim);
    if (!pool.ok()) return pool.error();
    c->pool_of_layer_.push_back(c->pools_.size());
    c->pools_.push_back(*pool);
  }
  c->refs_.assign(static_cast<size_t>(num_blocks), 0);
  c->free_.reserve(static_cast<size_t>(num_blocks));
  for (int64_t b = num_blocks - 1; b >= 0; --b) c->free_.push_back(static_cast<int32_t>(b));  // pop_back gives 0 first
  return c;
}

PagedKvCache::~PagedKvCache() {
  for (auto& p : pools_) be_->free_kv(p);
}

Status PagedKvCache::reserve(SeqState& seq, int64_t tokens) {
  const int64_t need = (tokens + block_size_ - 1) / block_size_ - static_cast<int64_t>(seq.blocks.size());
  if (need <= 0) return Ok();
  if (need > free_blocks())
    return Err("KV cache is full: " + std::to_string(need) + " more blocks needed, " + std::to_string(free_blocks()) + " free");
  for (int64_t i = 0; i < need; ++i) {
    int32_t b = free_.back();
    free_.pop_back();
    refs_[static_cast<size_t>(b)] = 1;
    seq.blocks.push_back(b);
  }
  return Ok();
}

void PagedKvCache::release(SeqState& seq) {
  for (int32_t b : seq.blocks)
    if (--refs_[static_cast<size_t>(b)] == 0) free_.push_back(b);
  seq.blocks.clear();
  seq.length = 0;
}

void PagedKvCache::share_prefix(const SeqState& src, int64_t tokens, SeqState& dst) {
  const int64_t full = std::min<int64_t>(tokens / block_size_, static_cast<int64_t>(src.blocks.size()));
  for (int64_t i = 0; i < full; ++i) {
    int32_t b = src.blocks[static_cast<size_t>(i)];
    ++refs_[static_cast<size_t>(b)];
    dst.blocks.push_back(b);
  }
  dst.length = full * block_size_;
}

}  // namespace gf
