#include "backend/cuda/step_meta.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cuda/common.cuh"
#include "backend/cuda/graphs.h"

namespace gf::cuda {

StepMeta::~StepMeta() {
  cudaFree(dmeta_);
  cudaFreeHost(hmeta_);
}

void StepMeta::set_layout(const BatchLayout& L, bool graph_step, cudaStream_t stream) {
  const int64_t T = L.num_tokens(), S = L.num_seqs();
  int64_t max_blocks = 1, max_len = 1, max_run = 0;
  for (const auto& t : L.block_tables) max_blocks = std::max<int64_t>(max_blocks, static_cast<int64_t>(t.size()));
  for (int32_t n : L.seq_lens) max_len = std::max<int64_t>(max_len, n);
  int64_t stride = max_blocks;
  if (graph_step) {  // bucket the table stride so graphs survive growing sequences
    stride = 16;
    while (stride < max_blocks) stride *= 2;
  }
  // Tiles of consecutive tokens of one sequence for the prefill kernel.
  std::vector<int32_t> tiles64, tiles32;
  for (int64_t t = 0; t < T;) {
    int64_t e = t;
    while (e < T && L.token_seq[static_cast<size_t>(e)] == L.token_seq[static_cast<size_t>(t)]) ++e;
    max_run = std::max(max_run, e - t);
    for (int bm : {64, 32}) {
      auto& tl = bm == 64 ? tiles64 : tiles32;
      for (int64_t s = t; s < e; s += bm)
        tl.insert(tl.end(), {L.token_seq[static_cast<size_t>(t)], static_cast<int32_t>(s), static_cast<int32_t>(std::min<int64_t>(bm, e - s)), 0});
    }
    t = e;
  }
  m_.T = T;
  m_.S = S;
  m_.stride = stride;
  m_.pos = 0;
  m_.seq = T;
  m_.slots = 2 * T;
  m_.tables = 3 * T;
  m_.tiles64 = (m_.tables + S * stride + 3) & ~int64_t(3);
  m_.n64 = static_cast<int64_t>(tiles64.size() / 4);
  m_.tiles32 = m_.tiles64 + static_cast<int64_t>(tiles64.size());
  m_.n32 = static_cast<int64_t>(tiles32.size() / 4);
  m_.end = m_.tiles32 + static_cast<int64_t>(tiles32.size());
  m_.max_ctx = graph_step ? stride * 1 : max_len;  // multiplied by the block size at use (graph case)
  m_.max_len = max_len;
  m_.prefill = max_run > 1;
  extra_ = m_.end;
  ensure(m_.end + 2 * T + 1024, stream);
  int32_t* h = hmeta_;
  std::memcpy(h + m_.pos, L.positions.data(), static_cast<size_t>(T) * 4);
  std::memcpy(h + m_.seq, L.token_seq.data(), static_cast<size_t>(T) * 4);
  std::memcpy(h + m_.slots, L.slots.data(), static_cast<size_t>(T) * 4);
  for (int64_t s = 0; s < S; ++s) {
    const auto& tb = L.block_tables[static_cast<size_t>(s)];
    std::memcpy(h + m_.tables + s * stride, tb.data(), tb.size() * 4);
    std::fill(h + m_.tables + s * stride + static_cast<int64_t>(tb.size()), h + m_.tables + (s + 1) * stride, 0);
  }
  std::memcpy(h + m_.tiles64, tiles64.data(), tiles64.size() * 4);
  std::memcpy(h + m_.tiles32, tiles32.data(), tiles32.size() * 4);
}

void StepMeta::ensure(int64_t ints, cudaStream_t stream) {
  if (ints <= cap_) return;
  CK(cudaStreamSynchronize(stream));
  graphs_.invalidate();
  if (hmeta_) cudaFreeHost(hmeta_);
  if (dmeta_) cudaFree(dmeta_);
  cap_ = std::max<int64_t>(ints * 2, 1 << 16);
  CK(cudaMallocHost(&hmeta_, static_cast<size_t>(cap_) * 4));
  CK(cudaMalloc(&dmeta_, static_cast<size_t>(cap_) * 4));
}

int64_t StepMeta::append(const int32_t* v, int64_t n, int64_t total) {
  const int64_t off = extra_;
  std::memcpy(hmeta_ + off, v, static_cast<size_t>(n) * 4);
  std::fill(hmeta_ + off + n, hmeta_ + off + total, 0);
  extra_ += (total + 3) & ~int64_t(3);
  return off;
}

void StepMeta::grow_keeping(int64_t n, cudaStream_t stream) {
  std::vector<int32_t> keep(hmeta_, hmeta_ + extra_);
  ensure(extra_ + n + 1024, stream);
  std::memcpy(hmeta_, keep.data(), keep.size() * 4);
  CK(cudaMemcpyAsync(dmeta_, hmeta_, keep.size() * 4, cudaMemcpyHostToDevice, stream));
}

void StepMeta::upload(int64_t words, cudaStream_t stream) const {
  CK(cudaMemcpyAsync(dmeta_, hmeta_, static_cast<size_t>(words) * 4, cudaMemcpyHostToDevice, stream));
}

void StepMeta::upload_range(int64_t off, int64_t n, cudaStream_t stream) const {
  CK(cudaMemcpyAsync(dmeta_ + off, hmeta_ + off, static_cast<size_t>(n) * 4, cudaMemcpyHostToDevice, stream));
}

}  // namespace gf::cuda
