// The step metadata: the token layout of a forward step (positions, sequence
// of each token, KV slots, block tables, the prefill kernel's query tiles) and
// the host ints of single ops (token ids, gather rows, sampling parameters),
// as int32 words in one pinned host buffer that goes to the device in one copy
// per step. A captured graph reads it from the same device buffer on every
// replay; growing the buffer drops the graphs.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/backend.h"

namespace gf::cuda {

class GraphCache;

// Offsets (in int32 words) of the parts of the step metadata:
// pos | tok_seq | slots | tables | tiles64 | tiles32 | (per-op extras)
struct StepLayout {
  int64_t T = 0, S = 0, stride = 1, pos = 0, seq = 0, slots = 0, tables = 0, tiles64 = 0, n64 = 0, tiles32 = 0, n32 = 0,
          end = 0, max_ctx = 0, max_len = 0;
  bool prefill = false;
};

class StepMeta {
 public:
  StepMeta(GraphCache& graphs) : graphs_(graphs) {}
  ~StepMeta();
  StepMeta(const StepMeta&) = delete;
  StepMeta& operator=(const StepMeta&) = delete;

  // Writes the layout of L to the host buffer (not yet to the device). A graph
  // step buckets the block table stride so that graphs survive growing sequences.
  void set_layout(const BatchLayout& L, bool graph_step, cudaStream_t stream);
  const StepLayout& layout() const { return m_; }
  // Words in use: the layout and the extras so far (part of a graph's signature).
  int64_t used() const { return extra_; }
  const int32_t* device() const { return dmeta_; }

  // Appends n host ints after the layout, returns their offset; the caller
  // uploads them (upload_range) unless the step is being recorded.
  bool fits(int64_t n) const { return extra_ + n <= cap_; }
  // n words from v, zeros up to total (>= n); the next append starts 16-byte aligned.
  int64_t append(const int32_t* v, int64_t n, int64_t total);
  // Grows the buffers to take n more ints, keeping (and re-uploading) what is there.
  void grow_keeping(int64_t n, cudaStream_t stream);

  void upload(int64_t words, cudaStream_t stream) const;              // the first `words`
  void upload_range(int64_t off, int64_t n, cudaStream_t stream) const;

 private:
  void ensure(int64_t ints, cudaStream_t stream);

  GraphCache& graphs_;
  int32_t* hmeta_ = nullptr;  // pinned
  int32_t* dmeta_ = nullptr;
  int64_t cap_ = 0;
  StepLayout m_;
  int64_t extra_ = 0;
};

}  // namespace gf::cuda
