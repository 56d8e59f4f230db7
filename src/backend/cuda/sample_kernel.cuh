// The sampling kernel (included by sample.cu only): one block of
// 1024 threads per logits row runs backend/sampling.h's algorithm.
//  - greedy: one pass for the max (ties: lowest id);
//  - otherwise the best C candidates (C = top_k, or a window of 1024 when
//    top-k is off) are selected exactly by a 4-pass radix select on the
//    order-preserving bits of the floats, gathered in id order (deterministic)
//    and bitonic-sorted best first; softmax at the temperature (denominator
//    over the top-k, or over the whole row when top-k is off), top-p and min-p
//    cuts on the sorted window, and the counter-based draw.
// A row whose kept set or draw runs past the window (top-k off, flat
// distribution) is marked for the host, which samples its downloaded logits
// with the same algorithm. Reductions have a fixed order: the same inputs give
// the same ids. Sums are double, as on the host; they differ from the host's
// sequential sums in the last bits, so a draw within rounding of a boundary
// may pick the neighbouring token.
#pragma once
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include <cfloat>
#include <climits>

#include "backend/sampling.h"

namespace gf::cuda {

// Per-row parameters as the host packs them (int32 words in the step metadata).
struct SampleParams {
  float temperature;
  int top_k;
  float top_p;
  float min_p;
  uint32_t seed_lo, seed_hi, draw_lo, draw_hi;
  int top_n;  // -1: no log-probs
  int host;   // 1: leave the row to the host
  int pad0, pad1;
};
static_assert(sizeof(SampleParams) == 48, "SampleParams is packed as 12 int32 words");

constexpr int kSampleThreads = 1024;
constexpr int kSampleWindow = 1024;  // most candidates kept on the device
// Output per row (int32 words): id, status (0 picked, 1 host), logprob bits, 0, then top_n x (id, logprob bits).
constexpr int kSampleHeader = 4;

__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ void take_better(float& v, int& i, float v2, int i2) {
  if (v2 > v || (v2 == v && i2 < i)) v = v2, i = i2;
}

__global__ void __launch_bounds__(kSampleThreads) k_sample(const float* __restrict__ logits, int64_t V,
                                                           const SampleParams* __restrict__ params, int32_t* __restrict__ out,
                                                           int stride) {
  using Reduce = cub::BlockReduce<double, kSampleThreads>;
  using Scan = cub::BlockScan<double, kSampleThreads>;
  __shared__ union {
    typename Reduce::TempStorage reduce;
    typename Scan::TempStorage scan;
  } tmp;
  __shared__ float cv[kSampleWindow];
  __shared__ int ci[kSampleWindow];
  __shared__ int hist[256];
  __shared__ float wv[32];
  __shared__ int wi[32], wgt[32], weq[32];
  __shared__ uint32_t s_prefix;
  __shared__ int s_need, s_first, s_first2;
  __shared__ double s_sum[2];

  const int row = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const SampleParams p = params[row];
  int32_t* o = out + static_cast<int64_t>(row) * stride;
  const float* x = logits + static_cast<int64_t>(row) * V;
  auto finish_host = [&] {
    if (tid == 0) o[0] = -1, o[1] = 1;
  };
  if (p.host) return finish_host();

  // Max and argmax of the row.
  float bv = -FLT_MAX;
  int bi = INT_MAX;
  for (int64_t i = tid; i < V; i += kSampleThreads) take_better(bv, bi, x[i], static_cast<int>(i));
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) take_better(bv, bi, __shfl_xor_sync(0xffffffffu, bv, off), __shfl_xor_sync(0xffffffffu, bi, off));
  if (lane == 0) wv[warp] = bv, wi[warp] = bi;
  __syncthreads();
  if (warp == 0) {
    bv = wv[lane], bi = wi[lane];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) take_better(bv, bi, __shfl_xor_sync(0xffffffffu, bv, off), __shfl_xor_sync(0xffffffffu, bi, off));
    if (lane == 0) wv[0] = bv, wi[0] = bi;
  }
  __syncthreads();
  const float mx = wv[0];
  const int am = wi[0];
  const bool greedy = p.temperature <= 0.0f;
  if (greedy && p.top_n < 0) {
    if (tid == 0) o[0] = am, o[1] = 0;
    return;
  }

  // Softmax denominators over the whole row: at temperature 1 (log-probs) and
  // at the temperature (sampling with top-k off). Double, as on the host.
  const bool need_t = !greedy && p.top_k == 0, need_1 = p.top_n >= 0;
  for (int which = 0; which < 2; ++which) {
    if (which == 0 ? !need_1 : !need_t) continue;
    double acc = 0;
    for (int64_t i = tid; i < V; i += kSampleThreads)
      acc += which == 0 ? exp(static_cast<double>(x[i]) - mx) : static_cast<double>(expf((x[i] - mx) / p.temperature));
    const double tot = Reduce(tmp.reduce).Sum(acc);
    if (tid == 0) s_sum[which] = tot;
    __syncthreads();
  }
  const double lse = need_1 ? mx + log(s_sum[0]) : 0.0;

  // The C best candidates: radix select of the C-th largest key, 8 bits a pass.
  const int tn = p.top_n > 0 ? p.top_n : 0;
  int C = greedy ? tn : (p.top_k > 0 ? max(p.top_k, tn) : kSampleWindow);
  C = static_cast<int>(C < V ? C : V);
  if (tid == 0) s_prefix = 0, s_need = C;
  uint32_t mask = 0;
  for (int shift = 24; shift >= 0 && C > 0; shift -= 8) {
    for (int b = tid; b < 256; b += kSampleThreads) hist[b] = 0;
    __syncthreads();
    const uint32_t prefix = s_prefix;
    for (int64_t base = 0; base < V; base += kSampleThreads) {
      const int64_t i = base + tid;
      const uint32_t key = i < V ? order_key(x[i]) : 0;
      const bool match = i < V && (key & mask) == prefix;
      const int bin = match ? static_cast<int>((key >> shift) & 255u) : 256;
      const unsigned peers = __match_any_sync(0xffffffffu, bin);
      if (match && __ffs(peers) - 1 == lane) atomicAdd(&hist[bin], __popc(peers));
    }
    __syncthreads();
    if (tid == 0) {
      int cum = 0;
      for (int b = 255; b >= 0; --b) {
        if (cum + hist[b] >= s_need) {
          s_prefix = prefix | (static_cast<uint32_t>(b) << shift);
          s_need -= cum;
          break;
        }
        cum += hist[b];
      }
    }
    mask |= 255u << shift;
    __syncthreads();
  }
  const uint32_t kth = s_prefix;
  const int need_eq = s_need, n_gt = C - s_need;

  // Gather in id order: each warp owns a contiguous range; ballots give positions.
  const int64_t span = ((V + 31) / 32 + 31) / 32 * 32;
  const int64_t lo = warp * span, hi = lo + span < V ? lo + span : V;
  int ngt = 0, neq = 0;
  for (int64_t j = lo; j < hi && C > 0; j += 32) {
    const int64_t i = j + lane;
    const uint32_t key = i < hi ? order_key(x[i]) : 0;
    ngt += __popc(__ballot_sync(0xffffffffu, i < hi && key > kth));
    neq += __popc(__ballot_sync(0xffffffffu, i < hi && key == kth));
  }
  if (lane == 0) wgt[warp] = ngt, weq[warp] = neq;
  __syncthreads();
  if (tid == 0) {
    int a = 0, b = 0;
    for (int w = 0; w < 32; ++w) {
      const int g = wgt[w], e = weq[w];
      wgt[w] = a, weq[w] = b;
      a += g, b += e;
    }
  }
  for (int t = tid; t < kSampleWindow; t += kSampleThreads) cv[t] = -FLT_MAX, ci[t] = INT_MAX;
  __syncthreads();
  if (C > 0) {
    int gbase = wgt[warp], ebase = weq[warp];
    const unsigned lt = (1u << lane) - 1;
    for (int64_t j = lo; j < hi; j += 32) {
      const int64_t i = j + lane;
      const float v = i < hi ? x[i] : 0.0f;
      const uint32_t key = i < hi ? order_key(v) : 0;
      const unsigned g = __ballot_sync(0xffffffffu, i < hi && key > kth), e = __ballot_sync(0xffffffffu, i < hi && key == kth);
      int pos = -1;
      if (g >> lane & 1) pos = gbase + __popc(g & lt);
      if (e >> lane & 1) {
        const int r = ebase + __popc(e & lt);
        if (r < need_eq) pos = n_gt + r;
      }
      if (pos >= 0) cv[pos] = v, ci[pos] = static_cast<int>(i);
      gbase += __popc(g), ebase += __popc(e);
    }
  }
  __syncthreads();
  // Bitonic sort, best first (higher value, then lower id).
  int n2 = 1;
  while (n2 < C) n2 <<= 1;
  for (int k = 2; k <= n2; k <<= 1)
    for (int j = k >> 1; j > 0; j >>= 1) {
      const int t = tid, u = tid ^ j;
      if (t < n2 && u > t) {
        const bool u_better = cv[u] > cv[t] || (cv[u] == cv[t] && ci[u] < ci[t]);
        const bool t_better = cv[t] > cv[u] || (cv[t] == cv[u] && ci[t] < ci[u]);
        if ((t & k) == 0 ? u_better : t_better) {
          const float fv = cv[t];
          const int fi = ci[t];
          cv[t] = cv[u], ci[t] = ci[u], cv[u] = fv, ci[u] = fi;
        }
      }
      __syncthreads();
    }

  int id = am;
  if (!greedy) {
    // Probabilities over the window, normalised as the host does.
    const int kb = p.top_k > 0 ? min(p.top_k, C) : C;
    const double pu = tid < kb ? static_cast<double>(expf((cv[tid] - mx) / p.temperature)) : 0.0;
    double denom;
    if (p.top_k > 0) {
      const double t = Reduce(tmp.reduce).Sum(pu);
      if (tid == 0) s_sum[1] = t;
      __syncthreads();
    }
    denom = s_sum[1];
    const double q = pu / denom;
    double cum;
    __syncthreads();
    Scan(tmp.scan).InclusiveSum(q, cum);
    __shared__ double s_cum[kSampleWindow];
    __shared__ double s_q0;
    s_cum[tid] = cum;
    if (tid == 0) s_q0 = q, s_first = INT_MAX, s_first2 = INT_MAX;
    __syncthreads();
    bool open = p.top_k == 0 && C < V;
    int keep = kb;
    if (p.top_p < 1.0f) {
      if (tid < kb && cum >= p.top_p) atomicMin(&s_first, tid);
      __syncthreads();
      if (s_first != INT_MAX) keep = s_first + 1, open = false;
      else if (open) return finish_host();
    }
    if (p.min_p > 0.0f) {
      const double floor = p.min_p * s_q0;
      if (tid >= 1 && tid < keep && q < floor) atomicMin(&s_first2, tid);
      __syncthreads();
      if (s_first2 != INT_MAX) keep = s_first2, open = false;
      else if (open) return finish_host();
    }
    const uint64_t seed = (static_cast<uint64_t>(p.seed_hi) << 32) | p.seed_lo;
    const uint64_t draw = (static_cast<uint64_t>(p.draw_hi) << 32) | p.draw_lo;
    const double total = open ? 1.0 : s_cum[keep - 1];
    const double r = sample_uniform(seed, draw) * total;
    __syncthreads();
    if (tid == 0) s_first = INT_MAX;
    __syncthreads();
    if (tid < keep && s_cum[tid] >= r) atomicMin(&s_first, tid);
    __syncthreads();
    if (s_first == INT_MAX) {
      if (open) return finish_host();
      id = ci[keep - 1];
    } else {
      id = ci[s_first];
    }
  }
  if (tid == 0) {
    o[0] = id, o[1] = 0;
    if (need_1) o[2] = __float_as_int(static_cast<float>(x[id] - lse));
  }
  if (tid < tn) {
    o[kSampleHeader + 2 * tid] = ci[tid];
    o[kSampleHeader + 2 * tid + 1] = __float_as_int(static_cast<float>(cv[tid] - lse));
  }
}

}  // namespace gf::cuda
