// The one Gemma decoder: the forward pass written once against the Backend
// ops, driven by the ModelSpec's per-layer table.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "core/status.h"
#include "model/model.h"

namespace gf {

// K/V history of one sequence, one entry per layer.
class KvCache {
 public:
  KvCache(Backend& be, std::vector<KvLayer> layers, int64_t capacity) : be_(&be), layers_(std::move(layers)), capacity_(capacity) {}
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;
  ~KvCache();
  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }  // tokens already in the cache
  void reset() { length_ = 0; }
  // Keeps the first n tokens (drops the rest), e.g. to rewind after an edit.
  void truncate(int64_t n) { if (n < length_) length_ = n; }
  KvLayer& layer(size_t i) { return layers_[i]; }

 private:
  friend class Decoder;
  Backend* be_;
  std::vector<KvLayer> layers_;
  int64_t capacity_;
  int64_t length_ = 0;
};

class Decoder {
 public:
  // Uploads the model's weights to the backend. The model must outlive the decoder.
  static Result<std::unique_ptr<Decoder>> create(const Model& model, Backend& backend);
  ~Decoder();

  const ModelSpec& spec() const { return model_->spec; }
  Backend& backend() { return *be_; }

  Result<std::unique_ptr<KvCache>> new_cache(int64_t capacity);

  // Runs ids at positions [cache.length(), cache.length() + n), appending to
  // the cache. Returns logits [n, vocab] if all_logits, else the last row [1, vocab].
  Result<std::vector<float>> forward(const std::vector<int32_t>& ids, KvCache& cache, bool all_logits);

  // Largest chunk of prompt tokens processed in one pass (bounds scratch memory).
  void set_max_chunk(int64_t n) { max_chunk_ = n; }

 private:
  struct LayerWeights {
    Weight q, k, v, o, gate, up, down;
    Weight input_norm, post_attn_norm, pre_ffw_norm, post_ffw_norm, q_norm, k_norm;
    std::vector<float> inv_freq;
  };
  Decoder(const Model& m, Backend& be) : model_(&m), be_(&be) {}
  Status forward_chunk(const std::vector<int32_t>& ids, int64_t start, KvCache& cache, bool all_logits, std::vector<float>& out);

  const Model* model_;
  Backend* be_;
  Weight embed_, lm_head_, final_norm_;
  std::vector<LayerWeights> layers_;
  int64_t max_chunk_ = 512;
};

}  // namespace gf
