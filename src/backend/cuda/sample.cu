// Sampling on the device (the kernel: sample_kernel.cuh): the per-row
// parameters ride in the step metadata, the kernel writes ids (+ log-probs) to
// a small buffer that is the only download, except rows left to the host
// (their logits row comes down).
#include <algorithm>
#include <cstring>

#include "backend/cuda/backend_impl.h"
#include "backend/cuda/sample_kernel.cuh"

namespace gf::cuda {

__global__ void k_mask_rows(float* __restrict__ logits, int64_t V, int64_t row_stride, const int32_t* __restrict__ rows,
                            const uint32_t* __restrict__ bits) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= V) return;
  const uint32_t* m = bits + blockIdx.y * row_stride;
  const bool allowed = m[t / 32] >> (t % 32) & 1u;
  if (!allowed) logits[static_cast<int64_t>(rows[blockIdx.y]) * V + t] = -INFINITY;
}

void launch(const ExecCtx& ctx, const MaskRowsArgs& a) {
  const dim3 grid(static_cast<unsigned>((a.vocab + 255) / 256), static_cast<unsigned>(a.rows));
  k_mask_rows<<<grid, 256, 0, ctx.stream>>>(a.logits, a.vocab, a.row_stride, ctx.dm(a.rows_meta),
                                           reinterpret_cast<const uint32_t*>(ctx.dm(a.bits_meta)));
}

// Structured outputs' masks: each row's bitmask goes straight from the
// constraint into the step metadata (a 64-bit word is two little-endian 32-bit
// words), zero-padded to the vocabulary (a shorter mask bans the tail), and is
// applied in place before the sampling kernel reads the rows.
void CudaBackend::mask_rows(const Act& logits, const std::vector<RowSampling>& rows) {
  const int64_t V = logits.cols, words = (V + 31) / 32;
  std::vector<int32_t> which;
  for (size_t r = 0; r < rows.size(); ++r)
    if (rows[r].allowed) which.push_back(static_cast<int32_t>(r));
  if (which.empty()) return;
  Cmd c = make_cmd(Op::MaskRows);
  MaskRowsArgs& a = c.a.mask_rows;
  a.logits = static_cast<float*>(logits.data);
  a.rows = static_cast<int64_t>(which.size());
  a.vocab = V;
  a.row_stride = (words + 3) & ~int64_t(3);  // put_extra starts each row 16-byte aligned
  a.rows_meta = put_extra(which.data(), a.rows);
  for (size_t i = 0; i < which.size(); ++i) {
    const RowSampling& s = rows[static_cast<size_t>(which[i])];
    const int64_t n = std::min<int64_t>(s.allowed_words * 2, words);
    const int64_t off = put_extra(reinterpret_cast<const int32_t*>(s.allowed), n, words);
    if (i == 0) a.bits_meta = off;
  }
  submit(c);
}

void launch(const ExecCtx& ctx, const SampleArgs& a) {
  k_sample<<<(unsigned)a.rows, kSampleThreads, 0, ctx.stream>>>(a.logits, a.vocab,
                                                               reinterpret_cast<const SampleParams*>(ctx.dm(a.params_meta)),
                                                               a.out, (int)a.stride);
}

void CudaBackend::sample(const Act& logits, const std::vector<RowSampling>& rows, std::vector<SampledToken>& out) {
  const int64_t R = static_cast<int64_t>(rows.size()), V = logits.cols;
  mask_rows(logits, rows);
  std::vector<SampleParams> ps(static_cast<size_t>(R));
  int maxn = 0;
  for (int64_t r = 0; r < R; ++r) {
    const RowSampling& s = rows[static_cast<size_t>(r)];
    SampleParams& q = ps[static_cast<size_t>(r)];
    std::memset(&q, 0, sizeof q);
    q.temperature = s.temperature;
    q.top_k = s.top_k;
    q.top_p = s.top_p;
    q.min_p = s.min_p;
    q.seed_lo = static_cast<uint32_t>(s.seed), q.seed_hi = static_cast<uint32_t>(s.seed >> 32);
    q.draw_lo = static_cast<uint32_t>(s.draw), q.draw_hi = static_cast<uint32_t>(s.draw >> 32);
    q.top_n = s.top_logprobs;
    // Beyond the candidate window the host does it (OpenAI caps top_logprobs at 20).
    q.host = s.host || s.top_k > kSampleWindow || s.top_logprobs > kSampleWindow;
    if (!q.host) maxn = std::max(maxn, s.top_logprobs);
  }
  const int stride = kSampleHeader + 2 * maxn;
  const size_t words = static_cast<size_t>(R * stride);
  int32_t* dout = scratch_.sample_out(words, stream_);
  Cmd c = make_cmd(Op::Sample);
  SampleArgs& a = c.a.sample;
  a.logits = static_cast<const float*>(logits.data);
  a.out = dout;
  a.rows = R;
  a.vocab = V;
  a.params_meta = put_extra(reinterpret_cast<const int32_t*>(ps.data()), R * static_cast<int64_t>(sizeof(SampleParams) / 4));
  a.stride = stride;
  submit(c);
  if (recording_) finish_step();
  int32_t* hsample = scratch_.sample_host();
  CK(cudaMemcpyAsync(hsample, dout, words * 4, cudaMemcpyDeviceToHost, stream_));
  CK(cudaStreamSynchronize(stream_));
  out.assign(rows.size(), SampledToken{});
  bool host_rows = false;
  for (int64_t r = 0; r < R; ++r) {
    const int32_t* h = hsample + r * stride;
    SampledToken& t = out[static_cast<size_t>(r)];
    if (h[1] != 0) {  // the host samples this row
      t.logits.resize(static_cast<size_t>(V));
      CK(cudaMemcpyAsync(t.logits.data(), static_cast<const float*>(logits.data) + r * V, static_cast<size_t>(V) * 4,
                         cudaMemcpyDeviceToHost, stream_));
      host_rows = true;
      continue;
    }
    t.id = h[0];
    const int n = rows[static_cast<size_t>(r)].top_logprobs;
    if (n < 0) continue;
    std::memcpy(&t.logprob, h + 2, 4);
    for (int i = 0; i < n; ++i) {
      float lp;
      std::memcpy(&lp, h + kSampleHeader + 2 * i + 1, 4);
      t.top.emplace_back(h[kSampleHeader + 2 * i], lp);
    }
  }
  if (host_rows) CK(cudaStreamSynchronize(stream_));
}

}  // namespace gf::cuda
