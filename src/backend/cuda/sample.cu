// Sampling on the device (the kernel: sample_kernel.cuh): the per-row
// parameters ride in the step metadata, the kernel writes ids (+ log-probs) to
// a small buffer that is the only download, except rows left to the host
// (their logits row comes down).
#include <algorithm>
#include <cstring>

#include "backend/cuda/backend_impl.h"
#include "backend/cuda/sample_kernel.cuh"

namespace gf::cuda {

void launch(const ExecCtx& ctx, const SampleArgs& a) {
  k_sample<<<(unsigned)a.rows, kSampleThreads, 0, ctx.stream>>>(a.logits, a.vocab,
                                                               reinterpret_cast<const SampleParams*>(ctx.dm(a.params_meta)),
                                                               a.out, (int)a.stride);
}

void CudaBackend::sample(const Act& logits, const std::vector<RowSampling>& rows, std::vector<SampledToken>& out) {
  const int64_t R = static_cast<int64_t>(rows.size()), V = logits.cols;
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
