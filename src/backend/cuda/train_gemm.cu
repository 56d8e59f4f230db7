#include <cublas_v2.h>

#include "backend/cuda/train_kernels.h"

namespace gf::cuda::train {

cublasStatus_t gemm(cublasHandle_t h, const GemmCall& g) {
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T; a row-major matrix
  // with row stride ld is a column-major one with leading dimension ld.
  const cublasOperation_t opa = g.ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = g.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int m = static_cast<int>(g.N), n = static_cast<int>(g.M), k = static_cast<int>(g.K);
  if (g.batch == 1)
    return cublasGemmEx(h, opb, opa, m, n, k, &g.alpha, g.B, g.ab, static_cast<int>(g.ldb), g.A, g.ab, static_cast<int>(g.lda), &g.beta,
                        g.C, CUDA_R_32F, static_cast<int>(g.ldc), g.compute, CUBLAS_GEMM_DEFAULT);
  return cublasGemmStridedBatchedEx(h, opb, opa, m, n, k, &g.alpha, g.B, g.ab, static_cast<int>(g.ldb), g.sB, g.A, g.ab,
                                    static_cast<int>(g.lda), g.sA, &g.beta, g.C, CUDA_R_32F, static_cast<int>(g.ldc), g.sC, g.batch,
                                    g.compute, CUBLAS_GEMM_DEFAULT);
}

}  // namespace gf::cuda::train
