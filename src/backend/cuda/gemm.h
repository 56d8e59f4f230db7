// GEMMs of the CUDA backend: cuBLASLt for M > 4 rows (bf16 x bf16 -> f32, one
// plan per shape), the GEMV kernels (gemv.cuh) for decode. gemm.cu also holds
// the ops matmul, matmul_shared_input and gated_mlp_up.
#pragma once
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>

#include "backend/cuda/common.cuh"

namespace gf::cuda {

class Gemm {
 public:
  Gemm() = default;
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;
  // On the current device (after cudaSetDevice).
  void init();

  // out [M, N] f32 = x [M, K] bf16 x W [N, K]^T bf16, on `stream`.
  void run(cudaStream_t stream, const bf16* x, const bf16* w, float* out, int64_t M, int64_t N, int64_t K);

 private:
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  Plan& plan(int64_t M, int64_t N, int64_t K);

  cublasLtHandle_t lt_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<std::tuple<int64_t, int64_t, int64_t>, Plan> plans_;
};

// y = bf16(x), n values: a GEMM input without a ready bf16 shadow (gemm.cu).
void launch_f32_to_bf16(cudaStream_t stream, const float* x, bf16* y, int64_t n);

}  // namespace gf::cuda
