// The RMSNorm kernels: per-group rmsnorm and the fused residual step. Kernels
// with external linkage: included by norm.cu only (and bench/gemv_bench.cu).
#pragma once
#include <cstdint>

#include "backend/cuda/common.cuh"

namespace gf::cuda {

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

}  // namespace gf::cuda
