// Device kernels of the CUDA backend (included by cuda_backend.cu only).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cstdint>

namespace gf::cuda {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Programmatic dependent launch (sm_90): a kernel launched with the PDL
// attribute may start while the kernel before it finishes. It lets its own
// dependents start early (trigger), may read weights (never written during a
// step) at once, and waits for the previous kernel's results before touching
// any activation, read or write (wait). Without the attribute both are no-ops.
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void unpack8(const uint4& u, float* f) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float2 t = __bfloat1622float2(h[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}

// E consecutive bf16 -> float (E in 1, 2, 4, 8, 16; p aligned to E*2 bytes).
template <int E>
__device__ __forceinline__ void load_bf16(const bf16* p, float* f) {
  if constexpr (E == 1) {
    f[0] = __bfloat162float(*p);
  } else if constexpr (E == 2) {
    float2 t = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
    f[0] = t.x;
    f[1] = t.y;
  } else if constexpr (E == 4) {
    uint2 u = *reinterpret_cast<const uint2*>(p);
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
    float2 a = __bfloat1622float2(h[0]), b = __bfloat1622float2(h[1]);
    f[0] = a.x, f[1] = a.y, f[2] = b.x, f[3] = b.y;
  } else {
#pragma unroll
    for (int i = 0; i < E / 8; ++i) unpack8(*reinterpret_cast<const uint4*>(p + 8 * i), f + 8 * i);
  }
}

// ---------------------------------------------------------------- elementwise

__global__ void k_f32_to_bf16(const float* __restrict__ x, bf16* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = __float2bfloat16(x[i]);
}

__global__ void k_add(float* __restrict__ x, const float* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) x[i] += y[i];
}

__global__ void k_scale(float* __restrict__ x, float s, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) x[i] *= s;
}

__global__ void k_softcap(float* __restrict__ x, float cap, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    x[i] = cap * tanhf(x[i] / cap);
}

__global__ void k_gelu_mul(float* __restrict__ g, const float* __restrict__ u, bf16* __restrict__ g16, int64_t n) {
  const float k = 0.7978845608028654f;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float a = g[i];
    float r = 0.5f * a * (1.0f + tanhf(k * (a + 0.044715f * a * a * a))) * u[i];
    g[i] = r;
    if (g16) g16[i] = __float2bfloat16(r);
  }
}

// out[t] = table[ids[t]] * scale
__global__ void k_embed(const bf16* __restrict__ table, const int* __restrict__ ids, float scale, float* __restrict__ out,
                        int64_t H) {
  const int t = blockIdx.x;
  const bf16* row = table + (int64_t)ids[t] * H;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) out[t * H + i] = __bfloat162float(row[i]) * scale;
}

// dst[i] = src[rows[i]]
__global__ void k_gather(const float* __restrict__ src, const int* __restrict__ rows, float* __restrict__ dst, int64_t cols) {
  const int i = blockIdx.x;
  const float* s = src + (int64_t)rows[i] * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) dst[i * cols + c] = s[c];
}

// One block per group: y = x * 1/sqrt(mean(x^2) + eps) (* w). y may alias x;
// y16 (optional) gets the bf16 copy.
__global__ void k_rmsnorm(const float* __restrict__ x, const float* __restrict__ w, float* y, bf16* __restrict__ y16,
                          int64_t group, float eps) {
  const int64_t g = blockIdx.x;
  const float* xr = x + g * group;
  float ss = 0;
  for (int64_t i = threadIdx.x; i < group; i += blockDim.x) ss += xr[i] * xr[i];
  __shared__ float red[32];
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.f;
    v = warp_sum(v);
    if (threadIdx.x == 0) red[0] = v;
  }
  __syncthreads();
  const float inv = 1.0f / sqrtf(red[0] / static_cast<float>(group) + eps);
  float* yr = y + g * group;
  for (int64_t i = threadIdx.x; i < group; i += blockDim.x) {
    float v = xr[i] * inv;
    if (w) v *= w[i];
    yr[i] = v;
    if (y16) y16[g * group + i] = __float2bfloat16(v);
  }
}

// Rotate-half RoPE, angle = float(pos) * inv_freq[i] (as the CPU reference).
__global__ void k_rope(float* __restrict__ x, const int* __restrict__ pos, const float* __restrict__ inv_freq, int64_t cols,
                       int heads, int hd) {
  const int t = blockIdx.x;
  const int half = hd / 2;
  const float p = static_cast<float>(pos[t]);
  for (int j = threadIdx.x; j < heads * half; j += blockDim.x) {
    const int h = j / half, i = j % half;
    float s, c;
    sincosf(p * inv_freq[i], &s, &c);
    float* v = x + t * cols + (int64_t)h * hd;
    const float a = v[i], b = v[i + half];
    v[i] = a * c - b * s;
    v[i + half] = b * c + a * s;
  }
}

__global__ void k_kv_write(bf16* __restrict__ K, bf16* __restrict__ V, const float* __restrict__ k, const float* __restrict__ v,
                           const int* __restrict__ slots, int64_t width, int64_t kcols, int64_t vcols) {
  const int t = blockIdx.x;
  const int64_t slot = slots[t];
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    K[slot * width + i] = __float2bfloat16(k[t * kcols + i]);
    V[slot * width + i] = __float2bfloat16(v[t * vcols + i]);
  }
}

// ---------------------------------------------------------------- small-M GEMM (decode)
// out[m, n] = sum_k x[m, k] * W[n, k]; W bf16 [N, K] row-major, x f32 [M, K].
// A block of 8 warps owns (8 / KS) * RB rows: each group of KS warps owns RB
// rows and splits K among its warps. Each lane keeps U x RB 16-byte weight
// loads in flight (streaming, not kept in L1).
// GATED: RB = 2 and the two "rows" of a group are row n of the gate (W) and
// of the up projection (W2); the result is gelu_tanh(gate) * up.
__device__ __forceinline__ float gelu_tanh(float a) {
  const float k = 0.7978845608028654f;
  return 0.5f * a * (1.0f + tanhf(k * (a + 0.044715f * a * a * a)));
}

template <int M, int RB, int KS, bool GATED, int U = 4>
__device__ __forceinline__ void gemv_block(const bf16* __restrict__ W, const bf16* __restrict__ W2, const float* __restrict__ x,
                                           float* __restrict__ out, int N, int K, int block) {
  static_assert(!GATED || RB == 2, "gated GEMV pairs gate and up rows");
  constexpr int GROUPS = 8 / KS;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int grp = warp / KS, wk = warp % KS;
  const int r0 = (block * GROUPS + grp) * (GATED ? 1 : RB);
  float acc[M][RB];
#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int r = 0; r < RB; ++r) acc[m][r] = 0.f;
  const bf16* wr[RB];
  if constexpr (GATED) {
    wr[0] = W + (int64_t)min(r0, N - 1) * K;
    wr[1] = W2 + (int64_t)min(r0, N - 1) * K;
  } else {
#pragma unroll
    for (int r = 0; r < RB; ++r) wr[r] = W + (int64_t)min(r0 + r, N - 1) * K;
  }
  constexpr int STEP = KS * 32 * 8;
  pdl_trigger();
  for (int k0 = (wk * 32 + lane) * 8; k0 < K; k0 += U * STEP) {
    uint4 wv[U][RB];
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int r = 0; r < RB; ++r)
        wv[u][r] = k0 + u * STEP < K ? __ldcs(reinterpret_cast<const uint4*>(wr[r] + k0 + u * STEP)) : make_uint4(0, 0, 0, 0);
    if (k0 < (wk * 32 + lane) * 8 + U * STEP) pdl_wait();  // first round: the weights are on their way, x is next
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int k = k0 + u * STEP;
      if (k >= K) break;
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const float4 xa = *reinterpret_cast<const float4*>(x + (int64_t)m * K + k);
        const float4 xb = *reinterpret_cast<const float4*>(x + (int64_t)m * K + k + 4);
#pragma unroll
        for (int r = 0; r < RB; ++r) {
          float f[8];
          unpack8(wv[u][r], f);
          acc[m][r] += f[0] * xa.x + f[1] * xa.y + f[2] * xa.z + f[3] * xa.w + f[4] * xb.x + f[5] * xb.y + f[6] * xb.z +
                       f[7] * xb.w;
        }
      }
    }
  }
  pdl_wait();  // (lanes with no columns) out may still be read by the previous kernel
  __shared__ float red[8][M * RB];
#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int r = 0; r < RB; ++r) {
      float v = warp_sum(acc[m][r]);
      if (lane == 0) red[warp][m * RB + r] = v;
    }
  __syncthreads();
  if constexpr (GATED) {
    if (threadIdx.x < GROUPS * M) {
      const int g = threadIdx.x / M, m = threadIdx.x % M;
      float sg = 0, su = 0;
#pragma unroll
      for (int w = 0; w < KS; ++w) sg += red[g * KS + w][m * RB], su += red[g * KS + w][m * RB + 1];
      const int row = block * GROUPS + g;
      if (row < N) out[(int64_t)m * N + row] = gelu_tanh(sg) * su;
    }
  } else if (threadIdx.x < GROUPS * M * RB) {
    const int g = threadIdx.x / (M * RB), j = threadIdx.x % (M * RB);
    const int m = j / RB, r = j % RB;
    float s = 0;
#pragma unroll
    for (int w = 0; w < KS; ++w) s += red[g * KS + w][j];
    const int row = (block * GROUPS + g) * RB + r;
    if (row < N) out[(int64_t)m * N + row] = s;
  }
}

// Up to 3 products sharing x in one launch (q, k, v): job j owns blocks
// [first[j], first[j + 1]).
struct GemvJobs {
  const bf16* w[3];
  float* out[3];
  int n[3];
  int first[4];
};

template <int M, int RB, int KS>
__global__ __launch_bounds__(256) void k_gemv(GemvJobs jobs, const float* __restrict__ x, int K) {
  int j = 0;
  while (j < 2 && (int)blockIdx.x >= jobs.first[j + 1]) ++j;
  gemv_block<M, RB, KS, false>(jobs.w[j], nullptr, x, jobs.out[j], jobs.n[j], K, (int)blockIdx.x - jobs.first[j]);
}

template <int M, int KS>
__global__ __launch_bounds__(256) void k_gemv_gated(const bf16* __restrict__ Wg, const bf16* __restrict__ Wu,
                                                    const float* __restrict__ x, float* __restrict__ out, int N, int K) {
  gemv_block<M, 2, KS, true>(Wg, Wu, x, out, N, K, (int)blockIdx.x);
}

// ---------------------------------------------------------------- fused decoder steps
__device__ __forceinline__ float block_sum(float v, float* red) {
  v = warp_sum(v);
  __syncthreads();  // red may still be read by a previous call
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  float s = 0;
  for (int i = 0; i < (int)(blockDim.x >> 5); ++i) s += red[i];
  return s;
}

// One block per row: h = rmsnorm(h) * post (if post); x += h; out = rmsnorm(x) * next (if next), with its bf16
// shadow out16. out may alias h: every read of h precedes the last reduction's barrier.
__global__ void k_residual_add_norm(float* __restrict__ x, const float* h, const float* __restrict__ post,
                                    const float* __restrict__ next, float* out, bf16* __restrict__ out16, int64_t H, float eps) {
  __shared__ float red[32];
  pdl_trigger();
  pdl_wait();
  const int64_t t = blockIdx.x;
  float* xr = x + t * H;
  const float* hr = h + t * H;
  float inv_h = 1.f;
  if (post) {
    float ss = 0;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) ss += hr[i] * hr[i];
    inv_h = 1.0f / sqrtf(block_sum(ss, red) / static_cast<float>(H) + eps);
  }
  float ss = 0;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
    const float hv = post ? hr[i] * inv_h * post[i] : hr[i];
    const float v = xr[i] + hv;
    xr[i] = v;
    ss += v * v;
  }
  if (!next) return;
  const float inv = 1.0f / sqrtf(block_sum(ss, red) / static_cast<float>(H) + eps);
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
    const float v = xr[i] * inv * next[i];
    out[t * H + i] = v;
    if (out16) out16[t * H + i] = __float2bfloat16(v);
  }
}

// Grid (T, q_heads + kv_heads): one block per head of q or k of one token:
// per-head rmsnorm (if a weight is given), RoPE at pos[t], written back; k
// heads (and the matching v head) also go to the KV cache at slots[t].
__global__ void k_attention_inputs(float* __restrict__ q, float* __restrict__ k, const float* __restrict__ v, int64_t qcols,
                                   int64_t kcols, int64_t vcols, int q_heads, int hd, const float* __restrict__ q_norm,
                                   const float* __restrict__ k_norm, float eps, const int* __restrict__ pos,
                                   const float* __restrict__ inv_freq, const int* __restrict__ slots, bf16* __restrict__ Kc,
                                   bf16* __restrict__ Vc, int64_t width) {
  __shared__ float red[32];
  __shared__ float buf[512];
  pdl_trigger();
  pdl_wait();
  const int t = blockIdx.x, head = blockIdx.y;
  const bool is_q = head < q_heads;
  const int kh = head - q_heads;
  float* row = is_q ? q + (int64_t)t * qcols + (int64_t)head * hd : k + (int64_t)t * kcols + (int64_t)kh * hd;
  const float* w = is_q ? q_norm : k_norm;
  float inv = 1.f;
  if (w) {
    float ss = 0;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) ss += row[i] * row[i];
    inv = 1.0f / sqrtf(block_sum(ss, red) / static_cast<float>(hd) + eps);
  }
  for (int i = threadIdx.x; i < hd; i += blockDim.x) buf[i] = w ? row[i] * inv * w[i] : row[i];
  __syncthreads();
  const int half = hd / 2;
  const float p = static_cast<float>(pos[t]);
  const int64_t slot = slots[t];
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    float sn, cs;
    sincosf(p * inv_freq[i], &sn, &cs);
    const float a = buf[i], b = buf[i + half];
    const float ra = a * cs - b * sn, rb = b * cs + a * sn;
    row[i] = ra;
    row[i + half] = rb;
    if (!is_q) {
      Kc[slot * width + (int64_t)kh * hd + i] = __float2bfloat16(ra);
      Kc[slot * width + (int64_t)kh * hd + i + half] = __float2bfloat16(rb);
    }
  }
  if (!is_q) {
    const float* vr = v + (int64_t)t * vcols + (int64_t)kh * hd;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) Vc[slot * width + (int64_t)kh * hd + i] = __float2bfloat16(vr[i]);
  }
}

// ---------------------------------------------------------------- attention
// Metadata: pos[t], tok_seq[t], tables[seq * stride + i] (paged, block size bs).

// Decode-style attention (split-K / flash-decoding): one block per (key
// split, kv head x head subgroup, token); 4 warps walk the split's keys; the
// GQA heads sharing a kv head reuse each K/V row. Partial results (normalised
// o, max, sum) go to `part` / `ml` and k_attn_combine merges them.
constexpr int kDecG = 4;
template <int HD>
__global__ __launch_bounds__(128) void k_attn_decode(const float* __restrict__ q, int64_t qcols, const bf16* __restrict__ Kc,
                                                     const bf16* __restrict__ Vc, int64_t width, const int* __restrict__ pos,
                                                     const int* __restrict__ tok_seq, const int* __restrict__ tables, int stride,
                                                     int bs, int heads, int group, int window, float scale, float softcap,
                                                     int chunk, int splits, float* __restrict__ part, float2* __restrict__ ml) {
  constexpr int E = HD / 32;
  constexpr int G = kDecG;
  pdl_trigger();
  pdl_wait();
  const int s = blockIdx.x, t = blockIdx.z;
  const int nsub = (group + G - 1) / G;
  const int kvh = blockIdx.y / nsub, hs = blockIdx.y % nsub;
  const int h0 = kvh * group + hs * G;
  const int ng = min(G, group - hs * G);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int p = pos[t];
  const int lo = window > 0 ? max(0, p - window + 1) : 0;
  const int kb = lo + s * chunk, ke = min(kb + chunk, p + 1);
  const int* table = tables + (int64_t)tok_seq[t] * stride;

  float qr[G][E], acc[G][E], m[G], l[G];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.f;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      acc[g][e] = 0.f;
      qr[g][e] = g < ng ? q[t * qcols + (int64_t)(h0 + g) * HD + lane * E + e] : 0.f;
    }
  }
  auto step = [&](const float* kf, const float* vf) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
      if (g >= ng) break;
      float d = 0;
#pragma unroll
      for (int e = 0; e < E; ++e) d += qr[g][e] * kf[e];
      d = warp_sum(d) * scale;
      if (softcap > 0) d = softcap * tanhf(d / softcap);
      const float mn = fmaxf(m[g], d);
      const float alpha = __expf(m[g] - mn);
      const float pe = __expf(d - mn);
      l[g] = l[g] * alpha + pe;
#pragma unroll
      for (int e = 0; e < E; ++e) acc[g][e] = acc[g][e] * alpha + pe * vf[e];
      m[g] = mn;
    }
  };
  const int64_t col = (int64_t)kvh * HD + lane * E;
  // Keys j, j + 4, j + 8, ... of this warp in order; two keys' loads are in
  // flight at once (the loop is bound by memory latency, not bandwidth).
  int j = kb + warp;
  for (; j + 4 < ke; j += 8) {
    const int64_t s0 = (int64_t)table[j / bs] * bs + j % bs, s1 = (int64_t)table[(j + 4) / bs] * bs + (j + 4) % bs;
    float k0[E], v0[E], k1[E], v1[E];
    load_bf16<E>(Kc + s0 * width + col, k0);
    load_bf16<E>(Vc + s0 * width + col, v0);
    load_bf16<E>(Kc + s1 * width + col, k1);
    load_bf16<E>(Vc + s1 * width + col, v1);
    step(k0, v0);
    step(k1, v1);
  }
  if (j < ke) {
    const int64_t s0 = (int64_t)table[j / bs] * bs + j % bs;
    float k0[E], v0[E];
    load_bf16<E>(Kc + s0 * width + col, k0);
    load_bf16<E>(Vc + s0 * width + col, v0);
    step(k0, v0);
  }
  __shared__ float s_acc[4][G][HD];
  __shared__ float s_m[4][G], s_l[4][G];
#pragma unroll
  for (int g = 0; g < G; ++g) {
#pragma unroll
    for (int e = 0; e < E; ++e) s_acc[warp][g][lane * E + e] = acc[g][e];
    if (lane == 0) {
      s_m[warp][g] = m[g];
      s_l[warp][g] = l[g];
    }
  }
  __syncthreads();
  const int T_heads = heads;
  for (int i = threadIdx.x; i < ng * HD; i += blockDim.x) {
    const int g = i / HD, d = i % HD;
    float M = -INFINITY;
    for (int w = 0; w < 4; ++w) M = fmaxf(M, s_m[w][g]);
    float L = 0, O = 0;
    if (M != -INFINITY) {
      for (int w = 0; w < 4; ++w) {
        if (s_m[w][g] == -INFINITY) continue;
        const float f = __expf(s_m[w][g] - M);
        L += s_l[w][g] * f;
        O += s_acc[w][g][d] * f;
      }
    }
    const int64_t idx = ((int64_t)t * T_heads + h0 + g) * splits + s;
    part[idx * HD + d] = L > 0 ? O / L : 0.f;
    if (d == 0) ml[idx] = make_float2(M, L);
  }
}

__global__ void k_attn_combine(const float* __restrict__ part, const float2* __restrict__ ml, int splits, int heads, int hd,
                               float* __restrict__ out, int64_t ocols, bf16* __restrict__ out16) {
  pdl_trigger();
  pdl_wait();
  const int h = blockIdx.x, t = blockIdx.y;
  const int64_t base = ((int64_t)t * heads + h) * splits;
  float M = -INFINITY;
  for (int s = 0; s < splits; ++s)
    if (ml[base + s].y > 0) M = fmaxf(M, ml[base + s].x);
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float num = 0, den = 0;
    for (int s = 0; s < splits; ++s) {
      const float2 v = ml[base + s];
      if (!(v.y > 0)) continue;
      const float w = v.y * __expf(v.x - M);
      den += w;
      num += w * part[(base + s) * hd + d];
    }
    const float o = den > 0 ? num / den : 0.f;
    out[t * ocols + (int64_t)h * hd + d] = o;
    if (out16) out16[t * ocols + (int64_t)h * hd + d] = __float2bfloat16(o);
  }
}

// Any head_dim up to kGenericMaxHd (the fast kernels above and below take the
// powers of two 32..512): one block of 4 warps per (token, head) for prefill
// and decode alike; warp w walks keys w, w + 4, ...; lane l holds dims l,
// l + 32, ... Exact like the others (f32 softmax over bf16 K/V), not fast.
constexpr int kGenericMaxHd = 512;
__global__ __launch_bounds__(128) void k_attn_generic(const float* __restrict__ q, int64_t qcols, const bf16* __restrict__ Kc,
                                                      const bf16* __restrict__ Vc, int64_t width, const int* __restrict__ pos,
                                                      const int* __restrict__ tok_seq, const int* __restrict__ tables, int stride,
                                                      int bs, int group, int hd, int window, float scale, float softcap,
                                                      float* __restrict__ out, int64_t ocols, bf16* __restrict__ out16) {
  constexpr int E = kGenericMaxHd / 32;
  const int h = blockIdx.x, t = blockIdx.y, kvh = h / group;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int p = pos[t];
  const int lo = window > 0 ? max(0, p - window + 1) : 0;
  const int* table = tables + (int64_t)tok_seq[t] * stride;
  float qr[E], acc[E], m = -INFINITY, l = 0.f;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int d = lane + 32 * e;
    qr[e] = d < hd ? q[t * qcols + (int64_t)h * hd + d] : 0.f;
    acc[e] = 0.f;
  }
  for (int j = lo + warp; j <= p; j += 4) {
    const int64_t slot = (int64_t)table[j / bs] * bs + j % bs;
    const bf16* kr = Kc + slot * width + (int64_t)kvh * hd;
    const bf16* vr = Vc + slot * width + (int64_t)kvh * hd;
    float d = 0;
#pragma unroll
    for (int e = 0; e < E; ++e)
      if (lane + 32 * e < hd) d += qr[e] * __bfloat162float(kr[lane + 32 * e]);
    d = warp_sum(d) * scale;
    if (softcap > 0) d = softcap * tanhf(d / softcap);
    const float mn = fmaxf(m, d);
    const float alpha = __expf(m - mn), pe = __expf(d - mn);
    l = l * alpha + pe;
#pragma unroll
    for (int e = 0; e < E; ++e)
      if (lane + 32 * e < hd) acc[e] = acc[e] * alpha + pe * __bfloat162float(vr[lane + 32 * e]);
    m = mn;
  }
  __shared__ float s_acc[4][kGenericMaxHd];
  __shared__ float s_m[4], s_l[4];
#pragma unroll
  for (int e = 0; e < E; ++e)
    if (lane + 32 * e < hd) s_acc[warp][lane + 32 * e] = acc[e];
  if (lane == 0) {
    s_m[warp] = m;
    s_l[warp] = l;
  }
  __syncthreads();
  float M = -INFINITY;
  for (int w = 0; w < 4; ++w) M = fmaxf(M, s_m[w]);
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float L = 0, O = 0;
    for (int w = 0; w < 4; ++w) {
      if (s_m[w] == -INFINITY) continue;
      const float f = __expf(s_m[w] - M);
      L += s_l[w] * f;
      O += s_acc[w][d] * f;
    }
    const float o = L > 0 ? O / L : 0.f;
    out[t * ocols + (int64_t)h * hd + d] = o;
    if (out16) out16[t * ocols + (int64_t)h * hd + d] = __float2bfloat16(o);
  }
}

// Flash-attention prefill: one block per (query tile of one sequence, head).
// bf16 tensor cores (wmma) for S = Q K^T and O += P V; online softmax in f32;
// K/V rows read through the block table. tiles[i] = {seq, first token, count, 0}.
template <int HD, int BM, int BN>
struct PrefillSmem {
  static constexpr int LDQ = HD + 8, LDS = BN + 4, LDP = BN + 8, LDO = HD + 4;
  static constexpr size_t bytes = sizeof(bf16) * (size_t)(BM * LDQ + 2 * BN * LDQ + BM * LDP) +
                                  sizeof(float) * (size_t)(BM * LDS + BM * LDO + 3 * BM);
};

template <int HD, int BM, int BN>
__global__ __launch_bounds__(256) void k_attn_prefill(const float* __restrict__ q, int64_t qcols, const bf16* __restrict__ Kc,
                                                      const bf16* __restrict__ Vc, int64_t width, const int* __restrict__ pos,
                                                      const int* __restrict__ tables, int stride, int bs,
                                                      const int4* __restrict__ tiles, int group, int window, float scale,
                                                      float softcap, float* __restrict__ out, int64_t ocols,
                                                      bf16* __restrict__ out16) {
  using namespace nvcuda;
  using SM = PrefillSmem<HD, BM, BN>;
  constexpr int LDQ = SM::LDQ, LDS = SM::LDS, LDP = SM::LDP, LDO = SM::LDO;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* Ks = Qs + BM * LDQ;
  bf16* Vs = Ks + BN * LDQ;
  bf16* P = Vs + BN * LDQ;
  float* S = reinterpret_cast<float*>(P + BM * LDP);
  float* O = S + BM * LDS;
  float* mrow = O + BM * LDO;
  float* lrow = mrow + BM;
  float* arow = lrow + BM;

  const int4 tile = tiles[blockIdx.x];
  const int h = blockIdx.y, kvh = h / group;
  const int t0 = tile.y, cnt = tile.z;
  const int p0 = pos[t0];
  const int plast = p0 + cnt - 1;
  const int klo = window > 0 ? max(0, p0 - window + 1) : 0;
  const int* table = tables + (int64_t)tile.x * stride;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;

  for (int i = tid; i < BM * HD; i += 256) {
    const int r = i / HD, d = i % HD;
    const float v = r < cnt ? q[(int64_t)(t0 + r) * qcols + (int64_t)h * HD + d] : 0.f;
    Qs[r * LDQ + d] = __float2bfloat16(v);
  }
  for (int i = tid; i < BM * LDO; i += 256) O[i] = 0.f;
  for (int i = tid; i < BM; i += 256) {
    mrow[i] = -INFINITY;
    lrow[i] = 0.f;
  }
  __syncthreads();

  for (int j0 = klo; j0 <= plast; j0 += BN) {
    for (int i = tid; i < BN * (HD / 8); i += 256) {
      const int r = i / (HD / 8), c = (i % (HD / 8)) * 8;
      const int j = j0 + r;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
      if (j <= plast) {
        const int64_t off = ((int64_t)table[j / bs] * bs + j % bs) * width + (int64_t)kvh * HD + c;
        kv = *reinterpret_cast<const uint4*>(Kc + off);
        vv = *reinterpret_cast<const uint4*>(Vc + off);
      }
      *reinterpret_cast<uint4*>(Ks + r * LDQ + c) = kv;
      *reinterpret_cast<uint4*>(Vs + r * LDQ + c) = vv;
    }
    __syncthreads();
    for (int ti = warp; ti < (BM / 16) * (BN / 16); ti += 8) {
      const int tm = ti / (BN / 16), tn = ti % (BN / 16);
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
      wmma::fill_fragment(c, 0.f);
#pragma unroll 4
      for (int kk = 0; kk < HD; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b;
        wmma::load_matrix_sync(a, Qs + tm * 16 * LDQ + kk, LDQ);
        wmma::load_matrix_sync(b, Ks + tn * 16 * LDQ + kk, LDQ);
        wmma::mma_sync(c, a, b, c);
      }
      wmma::store_matrix_sync(S + tm * 16 * LDS + tn * 16, c, LDS, wmma::mem_row_major);
    }
    __syncthreads();
    for (int r = warp; r < BM; r += 8) {
      const int pr = p0 + r;
      const int lo_r = window > 0 ? max(0, pr - window + 1) : 0;
      float sv[BN / 32];
      float mx = -INFINITY;
#pragma unroll
      for (int u = 0; u < BN / 32; ++u) {
        const int c = lane + 32 * u, j = j0 + c;
        float s = S[r * LDS + c] * scale;
        if (softcap > 0) s = softcap * tanhf(s / softcap);
        const bool ok = r < cnt && j >= lo_r && j <= pr;
        sv[u] = ok ? s : -INFINITY;
        mx = fmaxf(mx, sv[u]);
      }
      mx = warp_max(mx);
      const float mo = mrow[r];
      const float mn = fmaxf(mo, mx);
      const float alpha = mn == -INFINITY ? 1.f : __expf(mo - mn);
      float sum = 0;
#pragma unroll
      for (int u = 0; u < BN / 32; ++u) {
        const float pe = sv[u] == -INFINITY ? 0.f : __expf(sv[u] - mn);
        P[r * LDP + lane + 32 * u] = __float2bfloat16(pe);
        sum += pe;
      }
      sum = warp_sum(sum);
      if (lane == 0) {
        mrow[r] = mn;
        lrow[r] = lrow[r] * alpha + sum;
        arow[r] = alpha;
      }
    }
    __syncthreads();
    for (int i = tid; i < BM * HD; i += 256) {
      const int r = i / HD;
      O[r * LDO + i % HD] *= arow[r];
    }
    __syncthreads();
    for (int ti = warp; ti < (BM / 16) * (HD / 16); ti += 8) {
      const int tm = ti / (HD / 16), tn = ti % (HD / 16);
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
      wmma::load_matrix_sync(c, O + tm * 16 * LDO + tn * 16, LDO, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < BN; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> b;
        wmma::load_matrix_sync(a, P + tm * 16 * LDP + kk, LDP);
        wmma::load_matrix_sync(b, Vs + kk * LDQ + tn * 16, LDQ);
        wmma::mma_sync(c, a, b, c);
      }
      wmma::store_matrix_sync(O + tm * 16 * LDO + tn * 16, c, LDO, wmma::mem_row_major);
    }
    __syncthreads();
  }
  for (int i = tid; i < cnt * HD; i += 256) {
    const int r = i / HD, d = i % HD;
    const float l = lrow[r];
    const float o = l > 0 ? O[r * LDO + d] / l : 0.f;
    const int64_t idx = (int64_t)(t0 + r) * ocols + (int64_t)h * HD + d;
    out[idx] = o;
    if (out16) out16[idx] = __float2bfloat16(o);
  }
}

}  // namespace gf::cuda
