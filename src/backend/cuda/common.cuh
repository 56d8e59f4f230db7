// Shared by the CUDA backend's sources (never included outside src/backend/cuda):
// error checks, the device's size constants, and the small device helpers the
// kernels of several op families use.
#pragma once
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace gf::cuda {

using bf16 = __nv_bfloat16;

// ---------------------------------------------------------------- host: checks

[[noreturn]] void die(const char* what, const char* file, int line);
// Whether environment variable `name` is set to exactly `value`.
bool env_is(const char* name, const char* value);

#define CK(x)                                                                           \
  do {                                                                                  \
    cudaError_t e_ = (x);                                                               \
    if (e_ != cudaSuccess) ::gf::cuda::die(cudaGetErrorString(e_), __FILE__, __LINE__); \
  } while (0)
#define CKL(x)                                                                          \
  do {                                                                                  \
    cublasStatus_t s_ = (x);                                                            \
    if (s_ != CUBLAS_STATUS_SUCCESS) ::gf::cuda::die(#x " failed", __FILE__, __LINE__); \
  } while (0)
#define CKLAUNCH() CK(cudaGetLastError())

// ---------------------------------------------------------------- host: device sizes
// Sized for Hopper (H100 SXM and H200: 132 SMs). Constants, not queried from
// the device: a step's launch shapes, and so its graph signature and the
// order of attention's split sums, do not depend on the GPU it runs on.
constexpr int kHopperSms = 132;
// Grid-stride elementwise kernels: at most 16 blocks of 256 threads per SM.
constexpr int64_t kMaxElementwiseBlocks = kHopperSms * 16;
// Split-K decode attention: about 4 blocks per SM over all splits.
constexpr int64_t kDecodeAttentionBlocks = kHopperSms * 4;

inline int grid_for(int64_t n, int threads = 256) {
  return static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, kMaxElementwiseBlocks));
}

// ---------------------------------------------------------------- device helpers

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

// Sum over the block (all threads get it); red holds a float per warp.
__device__ __forceinline__ float block_sum(float v, float* red) {
  v = warp_sum(v);
  __syncthreads();  // red may still be read by a previous call
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  float s = 0;
  for (int i = 0; i < (int)(blockDim.x >> 5); ++i) s += red[i];
  return s;
}

__device__ __forceinline__ float gelu_tanh(float a) {
  const float k = 0.7978845608028654f;
  return 0.5f * a * (1.0f + tanhf(k * (a + 0.044715f * a * a * a)));
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

}  // namespace gf::cuda
