#include "model/kv_cache.h"

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
  return c;
}

PagedKvCache::~PagedKvCache() {
  for (auto& p : pools_) be_->free_kv(p);
}

}  // namespace gf
