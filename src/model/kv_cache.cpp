#include "model/kv_cache.h"

namespace gf {

Result<std::unique_ptr<PagedKvCache>> PagedKvCache::create(const std::vector<Part>& parts, int64_t num_blocks, int block_size) {
  if (num_blocks <= 0 || block_size <= 0) return Err("KV cache needs a positive number of blocks and block size");
  std::unique_ptr<PagedKvCache> c(new PagedKvCache(parts, num_blocks, block_size));
  // Every part has the same layers (a shard differs in KV heads only).
  const ModelSpec& spec = *parts.front().spec;
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const int src = spec.layers[i].kv_source_layer;
    c->pool_of_layer_.push_back(src >= 0 ? c->pool_of_layer_[static_cast<size_t>(src)] : c->pools_[0].size());
    if (src >= 0) continue;
    for (size_t p = 0; p < parts.size(); ++p) {
      const LayerSpec& l = parts[p].spec->layers[i];
      auto pool = parts[p].be->alloc_kv(num_blocks, block_size, static_cast<int64_t>(l.num_kv_heads) * l.head_dim);
      if (!pool.ok()) return pool.error();
      c->pools_[p].push_back(*pool);
    }
  }
  return c;
}

PagedKvCache::~PagedKvCache() {
  if (on_free_) on_free_();
  for (size_t p = 0; p < parts_.size(); ++p)
    for (auto& pool : pools_[p]) parts_[p].be->free_kv(pool);
}

}  // namespace gf
