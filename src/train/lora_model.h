// The float32 CPU training graph of a Gemma decoder with LoRA adapters: a
// forward over one packed sequence that keeps what the backward needs, and
// the backward for the adapter parameters only (base weights and the tied
// embedding stay frozen). The forward computes what model/decoder.cpp
// computes (the same per-layer table, the same CPU kernels for the frozen
// products), so with B = 0 its logits equal the Decoder's.
//
// Frozen products in the backward (dx = dy W) run cpu::matmul over a
// transposed copy of each weight in its own dtype (exact for F32/BF16/F16;
// block-quantized weights are dequantized to float32 first), so the CPU
// kernels serve both directions. A CUDA trainer keeps the same structure
// with cuBLAS transposes instead of copies.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/status.h"
#include "model/model.h"
#include "train/lora.h"

namespace gf::train {

struct SeqLoss {
  double nll_sum = 0;   // sum over target tokens of -log p(target)
  int64_t tokens = 0;   // target tokens
};

class LoraModel {
 public:
  // An error for what training does not cover yet (MoE blocks).
  // f32_weights: the forward multiplies float32 copies of the frozen weights
  // (the plain FMA kernel) instead of the checkpoint's own dtype, whose BF16
  // kernel rounds activations to a hi + lo bf16 pair (~1e-5 relative): a
  // loss smooth enough for finite differences, at twice the weight memory.
  static Result<std::unique_ptr<LoraModel>> create(const Model& m, bool f32_weights = false);
  ~LoraModel();
  const ModelSpec& spec() const { return model_->spec; }
  const Model& model() const { return *model_; }

  // Loss of one sequence: token t (t >= 1) is a target when mask[t] != 0, predicted
  // from tokens < t (positions start at 0; mask may be empty = every token).
  // With grads: also accumulates grad_scale * d(nll_sum)/d(adapter) into grads.
  // dropout_seed draws the LoRA dropout masks (ignored when dropout is 0).
  Result<SeqLoss> forward_backward(const std::vector<int32_t>& ids, const std::vector<uint8_t>& mask, const LoraAdapter& adapter,
                                   LoraGrads* grads, float grad_scale, uint64_t dropout_seed);
  // A packed sequence: positions[t] is token t's position in its own segment
  // (0 starts a segment); segments do not attend to each other (empty: one segment).
  Result<SeqLoss> forward_backward(const std::vector<int32_t>& ids, const std::vector<uint8_t>& mask, const std::vector<int32_t>& positions,
                                   const LoraAdapter& adapter, LoraGrads* grads, float grad_scale, uint64_t dropout_seed);
  // Soft-capped logits [T, vocab] of every position (tests, scoring).
  Result<std::vector<float>> logits(const std::vector<int32_t>& ids, const LoraAdapter& adapter);
  // Tokens of the loss computed per LM-head chunk (never a full [tokens, vocab] tensor).
  void set_loss_chunk(int64_t n) { loss_chunk_ = n; }

 private:
  struct Frozen;  // transposed weights
  struct Acts;    // saved activations of one sequence
  explicit LoraModel(const Model& m);
  const TensorView& lm_head() const;
  Status check_ids(const std::vector<int32_t>& ids) const;
  void per_layer_inputs(Acts& a, const std::vector<float>& x0);
  void forward(Acts& a, const LoraAdapter& ad, uint64_t dropout_seed, bool training);
  void backward_layer(int li, Acts& a, const LoraAdapter& ad, LoraGrads& g, std::vector<float>& dx, bool need_dx);

  const Model* model_;
  std::unique_ptr<Frozen> frozen_;
  int64_t loss_chunk_ = 64;
};

}  // namespace gf::train
