// The model runner of the serving engine: one paged KV cache and the Decoder.
#pragma once
#include <memory>

#include "model/decoder.h"
#include "runtime/model_runner.h"

namespace gf {

class DecoderRunner final : public ModelRunner {
 public:
  static Result<std::unique_ptr<DecoderRunner>> create(Decoder& dec, int64_t num_blocks, int block_size);
  BlockPool& blocks() override { return *cache_; }
  Result<RunnerOutput> execute(const StepPlan& plan) override;
  // The longest sequence it can hold: the cache or the model's positions, whichever is less.
  int64_t max_context() const;

 private:
  DecoderRunner(Decoder& dec, std::unique_ptr<PagedKvCache> cache) : dec_(dec), cache_(std::move(cache)) {}
  Decoder& dec_;
  std::unique_ptr<PagedKvCache> cache_;
};

}  // namespace gf
