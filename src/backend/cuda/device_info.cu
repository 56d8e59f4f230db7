// cuda_measure_device (gemforge bench): the device's copy bandwidth and
// bf16 GEMM peak, measured with the backend's own type combination.
#include <algorithm>
#include <vector>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"
#include "core/half.h"

namespace gf {

using cuda::bf16;

Result<CudaDeviceInfo> cuda_measure_device(int device, bool gemm) {
  if (cuda_device_count() <= device) return Err("no CUDA device " + std::to_string(device));
  CK(cudaSetDevice(device));
  CudaDeviceInfo info;
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, device));
  info.name = prop.name;
  info.mem_gib = static_cast<double>(prop.totalGlobalMem) / (1u << 30);
  cudaStream_t st;
  CK(cudaStreamCreate(&st));
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  {  // Copy bandwidth: 2 GiB device-to-device, bytes read + written.
    const size_t bytes = size_t(2) << 30;
    void *src, *dst;
    CK(cudaMalloc(&src, bytes));
    CK(cudaMalloc(&dst, bytes));
    CK(cudaMemsetAsync(src, 1, bytes, st));
    std::vector<float> t;
    for (int r = 0; r < 12; ++r) {
      CK(cudaEventRecord(a, st));
      CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st));
      CK(cudaEventRecord(b, st));
      CK(cudaEventSynchronize(b));
      float ms;
      CK(cudaEventElapsedTime(&ms, a, b));
      if (r >= 2) t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    info.copy_gbps = 2.0 * static_cast<double>(bytes) / (t[t.size() / 2] * 1e-3) / 1e9;
    cudaFree(src);
    cudaFree(dst);
  }
  if (gemm) {  // bf16 GEMM peak with the backend's own type combination.
    const int64_t n = 8192;
    bf16 *A, *B;
    float* C;
    CK(cudaMalloc(&A, n * n * 2));
    CK(cudaMalloc(&B, n * n * 2));
    CK(cudaMalloc(&C, n * n * 4));
    {
      std::vector<uint16_t> h(static_cast<size_t>(n * n));
      uint64_t s = 88172645463325252ull;
      for (auto& v : h) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        v = f32_to_bf16(static_cast<float>(s >> 40) / static_cast<float>(1 << 24) - 0.5f);
      }
      CK(cudaMemcpy(A, h.data(), h.size() * 2, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(B, h.data(), h.size() * 2, cudaMemcpyHostToDevice));
    }
    cublasLtHandle_t lt;
    CKL(cublasLtCreate(&lt));
    cublasLtMatmulDesc_t desc;
    CKL(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CKL(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CKL(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtMatrixLayout_t la, lb, lc;
    CKL(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, n, n, n));
    CKL(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, n, n, n));
    CKL(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, n, n, n));
    size_t ws_bytes = 64 << 20;
    void* ws;
    CK(cudaMalloc(&ws, ws_bytes));
    cublasLtMatmulPreference_t pref;
    CKL(cublasLtMatmulPreferenceCreate(&pref));
    CKL(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof ws_bytes));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    CKL(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc, lc, pref, 1, &res, &found));
    const float one = 1, zero = 0;
    std::vector<float> t;
    for (int r = 0; r < 13; ++r) {
      CK(cudaEventRecord(a, st));
      CKL(cublasLtMatmul(lt, desc, &one, A, la, B, lb, &zero, C, lc, C, lc, &res.algo, ws, ws_bytes, st));
      CK(cudaEventRecord(b, st));
      CK(cudaEventSynchronize(b));
      float ms;
      CK(cudaEventElapsedTime(&ms, a, b));
      if (r >= 3) t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    info.gemm_tflops = 2.0 * n * n * n / (t[t.size() / 2] * 1e-3) / 1e12;
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(desc);
    cublasLtDestroy(lt);
    cudaFree(ws);
    cudaFree(A);
    cudaFree(B);
    cudaFree(C);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaStreamDestroy(st);
  return info;
}

}  // namespace gf
