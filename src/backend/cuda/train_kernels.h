// Launchers of the LoRA training kernels (train_kernels.cu, train_attention.cu)
// for CudaTrainOps (train_ops.cu), and block_max for those kernels. All on `stream`; float32 activations,
// bf16 frozen tables; shapes as in backend/train_ops.h. Checks of the launch
// are the caller's (cudaGetLastError after each).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/common.cuh"

namespace gf::cuda::train {

// Max over the block (all threads get it); red holds a float per warp (block_sum's pattern).
__device__ __forceinline__ float block_max(float v, float* red) {
  v = warp_max(v);
  __syncthreads();  // red may still be read by a previous call
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  float m = -INFINITY;
  for (int i = 0; i < (int)(blockDim.x >> 5); ++i) m = fmaxf(m, red[i]);
  return m;
}

void copy_block(cudaStream_t st, float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows, int64_t cols);
void add(cudaStream_t st, float* y, const float* x, int64_t n);
void scale(cudaStream_t st, float* x, float s, int64_t n);
// out[t, :] = float(table[ids[t], :]) * s, table [*, width].
void embed(cudaStream_t st, const bf16* table, int64_t width, const int32_t* ids, int64_t T, float s, float* out);
void gelu_mul(cudaStream_t st, float* g, const float* u, int64_t n);
void gelu_mul_bwd(cudaStream_t st, const float* g, const float* u, const float* dm, int64_t n, float* dg, float* du);
void dropout(cudaStream_t st, const float* x, const uint8_t* keep, float keep_scale, float* xd, int64_t n);
void rmsnorm_fwd(cudaStream_t st, const float* x, const float* w, int64_t n_groups, int64_t group, float eps, float* y, float* r);
void rmsnorm_bwd(cudaStream_t st, const float* x, const float* w, const float* r, const float* dy, int64_t n_groups, int64_t group,
                 float* dx, bool accumulate);
// pos: per token its position (the segment's token index).
void rope(cudaStream_t st, float* x, int64_t T, int64_t width, int hd, const float* inv_freq, const int32_t* pos, bool inverse);
// out [n, H] bf16 = xf[rows[i], :]
void gather_rows_bf16(cudaStream_t st, const float* xf, int64_t H, const int32_t* rows, int64_t n, bf16* out);
// dxf[rows[i], :] = d[i, :]
void scatter_rows(cudaStream_t st, const float* d, int64_t H, const int32_t* rows, int64_t n, float* dxf);
// Per row i of logits [n, V]: soft-cap (cap > 0), nll[i] = logsumexp -
// logit[target[i]]; with dl: dl[i, v] = bf16(grad_scale * (softmax - onehot) *
// (1 - (l/cap)^2)).
void cross_entropy_rows(cudaStream_t st, float* logits, int64_t n, int64_t V, const int32_t* targets, float cap, float grad_scale,
                        float* nll, bf16* dl);

// Row-major C[M, N] = alpha op(A) op(B) + beta C, `batch` times with A, B, C advanced by sA, sB, sC
// elements: op(A) [M, K] is A, or A stored [K, M] when ta; op(B) [K, N] is B, or B stored [N, K] when tb;
// lda, ldb, ldc are the row strides as stored. Inputs of type ab; float32 accumulation and C (train_gemm.cu);
// `compute` CUBLAS_COMPUTE_32F_FAST_TF32 lets float32 inputs run on the tensor cores rounded to TF32.
struct GemmCall {
  bool ta = false, tb = false;
  int64_t M = 0, N = 0, K = 0;
  float alpha = 1, beta = 0;
  const void* A = nullptr;
  int64_t lda = 0, sA = 0;
  const void* B = nullptr;
  int64_t ldb = 0, sB = 0;
  cudaDataType ab = CUDA_R_32F;
  float* C = nullptr;
  int64_t ldc = 0, sC = 0;
  int batch = 1;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
};
cublasStatus_t gemm(cublasHandle_t h, const GemmCall& g);

// Attention (train_attention.cu). Shapes of backend/train_ops.h's AttnShape;
// pos as rope's.
struct Attn {
  int64_t T;
  int heads, kv_heads, hd, window;
  float scale, softcap;
  const int32_t* pos;
};
// Whether hd is supported (a multiple of 32 up to 512, or below 32).
bool attention_supports(int hd);
// out, lse [heads, T] (the log-sum-exp of each row, for the backward).
void attention_fwd(cudaStream_t st, const Attn& a, const float* q, const float* k, const float* v, float* out, float* lse);
// dq, dk, dv overwritten; dsum [heads, T] scratch.
void attention_bwd(cudaStream_t st, const Attn& a, const float* q, const float* k, const float* v, const float* out, const float* lse,
                   const float* dout, float* dq, float* dk, float* dv, float* dsum);

// The same through cuBLAS GEMMs of whole [T, T] score matrices per head (TF32 tensor
// cores: inputs rounded to 10-bit mantissas, float32 accumulation; for short sequences): z [heads, T, T] keeps the soft-capped scores and
// lse [heads, T] the log-sum-exp for the backward; p [heads, T, T] (and dp in the
// backward) are scratch. Returns the first cuBLAS error (launch errors: cudaGetLastError).
cublasStatus_t attention_fwd_gemm(cudaStream_t st, cublasHandle_t h, const Attn& a, const float* q, const float* k, const float* v,
                                  float* out, float* z, float* lse, float* p);
cublasStatus_t attention_bwd_gemm(cudaStream_t st, cublasHandle_t h, const Attn& a, const float* q, const float* k, const float* v,
                                  const float* z, const float* lse, const float* dout, float* dq, float* dk, float* dv, float* p,
                                  float* dp);

}  // namespace gf::cuda::train
