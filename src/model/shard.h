// Tensor parallelism in the Megatron style: what rank r of `world` holds.
//  - q, k, v, gate and up: the rows of its heads / its part of the MLP
//    (column-parallel: each output element is computed whole on one rank;
//    the MLP's parts are near-equal, they need not divide evenly);
//  - o and down: the matching columns (row-parallel: each rank's output is a
//    partial sum that the decoder all-reduces);
//  - embedding and LM head: the rows of its vocabulary range
//    (vocabulary-parallel: the embedding is all-reduced, the logits gathered);
//  - everything else whole (norms; Gemma 4's per-layer inputs, MoE router and experts).
// Heads are split by KV head. A layer with at least `world` KV heads gives
// each rank kv/world of them with their query heads; a layer with fewer (MQA,
// Gemma 4's global layers) replicates each KV head on world/kv ranks, which
// share its query heads.
#pragma once
#include <cstdint>

#include "core/status.h"
#include "model/model.h"

namespace gf {

struct HeadShard {
  int q_begin = 0, q_heads = 0;    // query heads [q_begin, q_begin + q_heads)
  int kv_begin = 0, kv_heads = 0;  // KV heads [kv_begin, kv_begin + kv_heads)
};
// An error says what `world` must divide in layer `layer`.
Result<HeadShard> head_shard(const LayerSpec& l, int layer, int rank, int world);

// Vocabulary rows [begin, begin + rows): equal ranges of ceil(vocab / world), the last one shorter.
struct VocabShard {
  int64_t begin = 0, rows = 0;
};
VocabShard vocab_shard(int64_t vocab, int rank, int world);

// Rank `rank`'s part of `full` (which must outlive it): its spec's layer table
// holds the rank's heads, KV heads and MLP width (the top-level fields still
// describe the whole model); row slices are views of full's tensors, column
// slices copies owned by the result. An error names what does not divide.
Result<Model> shard_model(const Model& full, int rank, int world);

}  // namespace gf
