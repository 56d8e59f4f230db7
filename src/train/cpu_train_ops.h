// The float32 CPU implementation of backend/train_ops.h: the reference every
// other TrainOps is tested against (kernels in train/ops.h).
#pragma once
#include <memory>

#include "backend/train_ops.h"

namespace gf::train {

// f32_weights: the forward multiplies float32 copies of the frozen weights
// (the plain FMA kernel) instead of the checkpoint's own dtype, whose BF16
// kernel rounds activations to a hi + lo bf16 pair (~1e-5 relative): a loss
// smooth enough for finite differences, at twice the weight memory.
// shared: the weight copies (backward transposes, f32 copies) of several ops
// over one model, e.g. the ranks of a data-parallel group: each copy is made
// once, by the first ops that adds the weight (under a lock), then only read.
// Null: the ops keep their own.
struct CpuWeightCopies;
std::shared_ptr<CpuWeightCopies> make_cpu_weight_copies();
std::unique_ptr<TrainOps> make_cpu_train_ops(bool f32_weights, std::shared_ptr<CpuWeightCopies> shared = nullptr);

}  // namespace gf::train
