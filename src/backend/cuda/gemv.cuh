// The GEMV kernels of decode (M <= 4 rows): gemm.cu launches them,
// bench/gemv_bench.cu sweeps their tiling parameters.
#pragma once
#include <cstdint>

#include "backend/cuda/common.cuh"

namespace gf::cuda {

// ---------------------------------------------------------------- small-M GEMM (decode)
// out[m, n] = sum_k x[m, k] * W[n, k]; W bf16 [N, K] row-major, x f32 [M, K].
// A block of 8 warps owns (8 / KS) * RB rows: each group of KS warps owns RB
// rows and splits K among its warps. Each lane keeps U x RB 16-byte weight
// loads in flight (streaming, not kept in L1).
// GATED: RB = 2 and the two "rows" of a group are row n of the gate (W) and
// of the up projection (W2); the result is gelu_tanh(gate) * up.
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

}  // namespace gf::cuda
