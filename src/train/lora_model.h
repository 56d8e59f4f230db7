// The float32 CPU training graph of a Gemma decoder with LoRA adapters: a
// forward over one packed sequence that keeps what the backward needs, and
// the backward for the adapter parameters only (base weights and the tied
// embedding stay frozen). The forward computes what model/decoder.cpp
// computes (the same per-layer table, the same CPU kernels for the frozen
// products), so with B = 0 its logits equal the Decoder's.
//
// The graph is written once against backend/train_ops.h: the float32 CPU ops
// (train/cpu_train_ops.h; frozen products in the backward, dx = dy W, run
// cpu::matmul over a transposed copy of each weight) or the CUDA ops of the
// plugin (bf16 frozen weights, cuBLAS transposes instead of copies).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/status.h"
#include "backend/train_ops.h"
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
  // On the float32 CPU ops (f32_weights: see make_cpu_train_ops).
  static Result<std::unique_ptr<LoraModel>> create(const Model& m, bool f32_weights = false);
  // On the given ops (e.g. try_make_cuda_train_ops()); m must outlive the model.
  static Result<std::unique_ptr<LoraModel>> create(const Model& m, std::unique_ptr<TrainOps> ops);
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
  // One sequence of a batch: its ids, loss mask and packed positions (as above)
  // and the seed of its dropout masks.
  struct Seq {
    const std::vector<int32_t>* ids = nullptr;
    const std::vector<uint8_t>* mask = nullptr;
    const std::vector<int32_t>* pos = nullptr;
    uint64_t dropout_seed = 0;
  };
  // The sum of the sequences' losses (and gradients, as above): the adapter is
  // bound to the ops once and the gradients come back once for all of them.
  Result<SeqLoss> forward_backward(const std::vector<Seq>& seqs, const LoraAdapter& adapter, LoraGrads* grads, float grad_scale);
  // Soft-capped logits [T, vocab] of every position (tests, scoring).
  Result<std::vector<float>> logits(const std::vector<int32_t>& ids, const LoraAdapter& adapter);
  // Tokens of the loss computed per LM-head chunk (never a full [tokens, vocab] tensor).
  void set_loss_chunk(int64_t n) { loss_chunk_ = n; }

 private:
  struct Frozen;   // weight ids and constants on the ops
  struct Acts;     // saved activations of one sequence
  struct Bound;    // the adapter (and its gradients) on the ops
  explicit LoraModel(const Model& m);
  Status check_seq(const Seq& q) const;
  Bound bind(const LoraAdapter& ad, LoraGrads* grads);
  Result<SeqLoss> run_seq(const Seq& q, const LoraAdapter& ad, Bound& b, bool grads, float grad_scale);
  void per_layer_inputs(Acts& a, const TBuf& x0);
  void forward(Acts& a, const LoraAdapter& ad, const Bound& b, uint64_t dropout_seed, bool training);
  void backward_layer(int li, Acts& a, const LoraAdapter& ad, Bound& b, TBuf& dx, bool need_dx);

  const Model* model_;
  std::unique_ptr<TrainOps> ops_;
  std::unique_ptr<Frozen> frozen_;
  int64_t loss_chunk_ = 64;
};

}  // namespace gf::train
