// Causal attention of the LoRA trainer, forward and backward, without the
// probabilities matrix: the forward keeps each row's log-sum-exp and the
// backward recomputes the probabilities from it (FlashAttention's idea, in
// its plainest form). One warp per (query row, head) in the forward and for
// dq; one warp per (key row, KV head) for dk and dv, so every output has one
// writer (no atomics, deterministic). Each lane holds E = ceil(hd / 32)
// elements of a head (element d = lane + 32 e). Float32 throughout, the CPU
// reference's formulas (src/train/ops.cpp).
#include "backend/cuda/train_kernels.h"

namespace gf::cuda::train {
namespace {

constexpr int kWarps = 4;  // warps per block

// The first key row i attends to: its segment's start, or the window's.
__device__ __forceinline__ int64_t first_key(const Attn& a, int64_t i) {
  const int64_t seg = i - a.pos[i];
  return a.window > 0 ? max(seg, i - a.window + 1) : seg;
}

template <int E>
__device__ __forceinline__ void load_head(const float* p, int hd, float* r) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int d = lane + 32 * e;
    r[e] = d < hd ? p[d] : 0.0f;
  }
}

template <int E>
__device__ __forceinline__ float dot_head(const float* r, const float* p, int hd) {
  const int lane = threadIdx.x & 31;
  float s = 0;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int d = lane + 32 * e;
    if (d < hd) s += r[e] * p[d];
  }
  return warp_sum(s);
}

// The soft-capped, scaled score of q . k.
__device__ __forceinline__ float score(const Attn& a, float dot) {
  const float z = dot * a.scale;
  return a.softcap > 0 ? a.softcap * tanhf(z / a.softcap) : z;
}
// d score / d (q . k) = scale * (1 - tanh^2) with tanh = z / cap.
__device__ __forceinline__ float score_grad(const Attn& a, float z) {
  return a.softcap > 0 ? a.scale * (1.0f - (z / a.softcap) * (z / a.softcap)) : a.scale;
}

template <int E>
__global__ void k_attn_fwd(Attn a, const float* q, const float* k, const float* v, float* out, float* lse) {
  const int64_t w = blockIdx.x * (int64_t)kWarps + (threadIdx.x >> 5);
  if (w >= a.T * a.heads) return;
  const int h = (int)(w % a.heads);
  const int64_t i = w / a.heads;
  const int kh = h / (a.heads / a.kv_heads);
  const int64_t qw = (int64_t)a.heads * a.hd, kw = (int64_t)a.kv_heads * a.hd;
  const int lane = threadIdx.x & 31;
  float qr[E], acc[E];
  load_head<E>(q + i * qw + (int64_t)h * a.hd, a.hd, qr);
#pragma unroll
  for (int e = 0; e < E; ++e) acc[e] = 0;
  float m = -INFINITY, l = 0;
  for (int64_t j = first_key(a, i); j <= i; ++j) {
    const float z = score(a, dot_head<E>(qr, k + j * kw + (int64_t)kh * a.hd, a.hd));
    const float m_new = fmaxf(m, z);
    const float corr = expf(m - m_new);  // 0 for the first key (m = -inf)
    const float p = expf(z - m_new);
    l = l * corr + p;
    const float* vj = v + j * kw + (int64_t)kh * a.hd;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int d = lane + 32 * e;
      acc[e] = acc[e] * corr + (d < a.hd ? p * vj[d] : 0.0f);
    }
    m = m_new;
  }
  float* o = out + i * qw + (int64_t)h * a.hd;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int d = lane + 32 * e;
    if (d < a.hd) o[d] = acc[e] / l;
  }
  if (lane == 0) lse[(int64_t)h * a.T + i] = m + logf(l);
}

// dq of (i, h), and dsum[h, i] = dout_i . out_i for the dk/dv kernel.
template <int E>
__global__ void k_attn_bwd_dq(Attn a, const float* q, const float* k, const float* v, const float* out, const float* lse, const float* dout,
                              float* dq, float* dsum) {
  const int64_t w = blockIdx.x * (int64_t)kWarps + (threadIdx.x >> 5);
  if (w >= a.T * a.heads) return;
  const int h = (int)(w % a.heads);
  const int64_t i = w / a.heads;
  const int kh = h / (a.heads / a.kv_heads);
  const int64_t qw = (int64_t)a.heads * a.hd, kw = (int64_t)a.kv_heads * a.hd;
  const int lane = threadIdx.x & 31;
  const int64_t qo = i * qw + (int64_t)h * a.hd;
  float qr[E], dor[E], acc[E];
  load_head<E>(q + qo, a.hd, qr);
  load_head<E>(dout + qo, a.hd, dor);
  const float D = dot_head<E>(dor, out + qo, a.hd);
  const float L = lse[(int64_t)h * a.T + i];
#pragma unroll
  for (int e = 0; e < E; ++e) acc[e] = 0;
  for (int64_t j = first_key(a, i); j <= i; ++j) {
    const float* kj = k + j * kw + (int64_t)kh * a.hd;
    const float z = score(a, dot_head<E>(qr, kj, a.hd));
    const float p = expf(z - L);
    const float dp = dot_head<E>(dor, v + j * kw + (int64_t)kh * a.hd, a.hd);
    const float ds = p * (dp - D) * score_grad(a, z);
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int d = lane + 32 * e;
      if (d < a.hd) acc[e] += ds * kj[d];
    }
  }
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int d = lane + 32 * e;
    if (d < a.hd) dq[qo + d] = acc[e];
  }
  if (lane == 0) dsum[(int64_t)h * a.T + i] = D;
}

// dk, dv of (j, kh): the queries of its group that see key j (i >= j while
// first_key(i) <= j; first_key never decreases with i).
template <int E>
__global__ void k_attn_bwd_dkdv(Attn a, const float* q, const float* k, const float* v, const float* lse, const float* dout,
                                const float* dsum, float* dk, float* dv) {
  const int64_t w = blockIdx.x * (int64_t)kWarps + (threadIdx.x >> 5);
  if (w >= a.T * a.kv_heads) return;
  const int kh = (int)(w % a.kv_heads);
  const int64_t j = w / a.kv_heads;
  const int group = a.heads / a.kv_heads;
  const int64_t qw = (int64_t)a.heads * a.hd, kw = (int64_t)a.kv_heads * a.hd;
  const int lane = threadIdx.x & 31;
  const int64_t ko = j * kw + (int64_t)kh * a.hd;
  float kr[E], vr[E], dk_acc[E], dv_acc[E];
  load_head<E>(k + ko, a.hd, kr);
  load_head<E>(v + ko, a.hd, vr);
#pragma unroll
  for (int e = 0; e < E; ++e) dk_acc[e] = 0, dv_acc[e] = 0;
  for (int h = kh * group; h < (kh + 1) * group; ++h)
    for (int64_t i = j; i < a.T && first_key(a, i) <= j; ++i) {
      const int64_t qo = i * qw + (int64_t)h * a.hd;
      const float* qi = q + qo;
      const float* doi = dout + qo;
      const float z = score(a, dot_head<E>(kr, qi, a.hd));
      const float p = expf(z - lse[(int64_t)h * a.T + i]);
      const float dp = dot_head<E>(vr, doi, a.hd);
      const float ds = p * (dp - dsum[(int64_t)h * a.T + i]) * score_grad(a, z);
#pragma unroll
      for (int e = 0; e < E; ++e) {
        const int d = lane + 32 * e;
        if (d < a.hd) {
          dv_acc[e] += p * doi[d];
          dk_acc[e] += ds * qi[d];
        }
      }
    }
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int d = lane + 32 * e;
    if (d < a.hd) dk[ko + d] = dk_acc[e], dv[ko + d] = dv_acc[e];
  }
}

// Calls f with E = ceil(hd / 32) rounded up to 1, 2, 4, 8 or 16 as a
// compile-time constant.
template <class F>
void with_e(int hd, F&& f) {
  const int e = (hd + 31) / 32;
  if (e <= 1)
    f(std::integral_constant<int, 1>{});
  else if (e <= 2)
    f(std::integral_constant<int, 2>{});
  else if (e <= 4)
    f(std::integral_constant<int, 4>{});
  else if (e <= 8)
    f(std::integral_constant<int, 8>{});
  else
    f(std::integral_constant<int, 16>{});
}

unsigned blocks_for(int64_t warps) { return (unsigned)((warps + kWarps - 1) / kWarps); }

}  // namespace

bool attention_supports(int hd) { return hd > 0 && hd <= 512; }

void attention_fwd(cudaStream_t st, const Attn& a, const float* q, const float* k, const float* v, float* out, float* lse) {
  with_e(a.hd, [&](auto e) { k_attn_fwd<decltype(e)::value><<<blocks_for(a.T * a.heads), 32 * kWarps, 0, st>>>(a, q, k, v, out, lse); });
}

void attention_bwd(cudaStream_t st, const Attn& a, const float* q, const float* k, const float* v, const float* out, const float* lse,
                   const float* dout, float* dq, float* dk, float* dv, float* dsum) {
  with_e(a.hd, [&](auto e) {
    constexpr int E = decltype(e)::value;
    k_attn_bwd_dq<E><<<blocks_for(a.T * a.heads), 32 * kWarps, 0, st>>>(a, q, k, v, out, lse, dout, dq, dsum);
    k_attn_bwd_dkdv<E><<<blocks_for(a.T * a.kv_heads), 32 * kWarps, 0, st>>>(a, q, k, v, lse, dout, dsum, dk, dv);
  });
}

}  // namespace gf::cuda::train
