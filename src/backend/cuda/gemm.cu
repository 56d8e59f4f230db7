// GEMM and GEMV: the cuBLASLt plans, the decode GEMV launches, and the ops
// matmul, matmul_shared_input (q/k/v in one launch) and gated_mlp_up (gate and
// up with GeGLU in the epilogue).
#include <type_traits>

#include "backend/cuda/backend_impl.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/gemv.cuh"

namespace gf::cuda {
namespace {

__global__ void k_f32_to_bf16(const float* __restrict__ x, bf16* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = __float2bfloat16(x[i]);
}

// Calls f(M, KS) with both as compile-time constants (std::integral_constant)
// for the GEMV kernels' template instances: M in 1-4 rows, KS in 1, 2, 4, 8.
template <class F>
void with_gemv_shape(int64_t M, int ks, F&& f) {
  auto by_ks = [&](auto m) {
    switch (ks) {
      case 1: f(m, std::integral_constant<int, 1>{}); break;
      case 2: f(m, std::integral_constant<int, 2>{}); break;
      case 4: f(m, std::integral_constant<int, 4>{}); break;
      default: f(m, std::integral_constant<int, 8>{}); break;
    }
  };
  switch (M) {
    case 1: by_ks(std::integral_constant<int, 1>{}); break;
    case 2: by_ks(std::integral_constant<int, 2>{}); break;
    case 3: by_ks(std::integral_constant<int, 3>{}); break;
    default: by_ks(std::integral_constant<int, 4>{}); break;
  }
}

// K split over 1-8 warps per row group: enough loads in flight per row.
int gemv_ks(int64_t K) { return K >= 4096 ? 8 : K >= 2048 ? 4 : K >= 512 ? 2 : 1; }

// One launch for n (<= 3) products of the same x [M <= 4, K].
void launch_gemv(const ExecCtx& ctx, const float* x, int64_t M, int64_t K, const bf16* const* w, float* const* out,
                 const int64_t* N, int n) {
  constexpr int RB = 2;
  const int ks = gemv_ks(K);
  const int rows_per_block = 8 / ks * RB;
  GemvJobs jobs{};
  int first = 0;
  for (int j = 0; j < 3; ++j) {
    const int jj = std::min(j, n - 1);  // unused slots repeat the last job with no blocks
    jobs.w[j] = w[jj];
    jobs.out[j] = out[jj];
    jobs.n[j] = static_cast<int>(N[jj]);
    jobs.first[j] = first;
    if (j < n) first += static_cast<int>((N[j] + rows_per_block - 1) / rows_per_block);
  }
  jobs.first[3] = first;
  const unsigned blocks = static_cast<unsigned>(first);
  with_gemv_shape(M, ks, [&](auto m, auto k) {
    launch_pdl(ctx, k_gemv<decltype(m)::value, RB, decltype(k)::value>, dim3(blocks), dim3(256), 0, jobs, x, (int)K);
  });
}

}  // namespace

void launch_f32_to_bf16(cudaStream_t stream, const float* x, bf16* y, int64_t n) {
  k_f32_to_bf16<<<grid_for(n), 256, 0, stream>>>(x, y, n);
}

// ---------------------------------------------------------------- cuBLASLt

void Gemm::init() {
  CKL(cublasLtCreate(&lt_));
  workspace_bytes_ = 64 << 20;
  CK(cudaMalloc(&workspace_, workspace_bytes_));
}

Gemm::~Gemm() {
  for (auto& [k, p] : plans_) {
    cublasLtMatmulDescDestroy(p.desc);
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.c);
  }
  cudaFree(workspace_);
  if (lt_) cublasLtDestroy(lt_);
}

Gemm::Plan& Gemm::plan(int64_t M, int64_t N, int64_t K) {
  auto key = std::make_tuple(M, N, K);
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  Plan p;
  CKL(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  CKL(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  CKL(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  // Column-major view: out^T [N, M] = W [K, N]^T x^T [K, M].
  CKL(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, K, N, K));
  CKL(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, K, M, K));
  CKL(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, N, M, N));
  cublasLtMatmulPreference_t pref;
  CKL(cublasLtMatmulPreferenceCreate(&pref));
  CKL(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes_, sizeof workspace_bytes_));
  cublasLtMatmulHeuristicResult_t res[1];
  int n = 0;
  CKL(cublasLtMatmulAlgoGetHeuristic(lt_, p.desc, p.a, p.b, p.c, p.c, pref, 1, res, &n));
  cublasLtMatmulPreferenceDestroy(pref);
  if (n == 0) die("cuBLASLt found no algorithm for a bf16 GEMM", __FILE__, __LINE__);
  p.algo = res[0].algo;
  return plans_.emplace(key, p).first->second;
}

void Gemm::run(cudaStream_t stream, const bf16* x, const bf16* w, float* out, int64_t M, int64_t N, int64_t K) {
  Plan& p = plan(M, N, K);
  const float one = 1.f, zero = 0.f;
  CKL(cublasLtMatmul(lt_, p.desc, &one, w, p.a, x, p.b, &zero, out, p.c, out, p.c, &p.algo, workspace_, workspace_bytes_,
                     stream));
}

// ---------------------------------------------------------------- launchers

void launch(const ExecCtx& ctx, const MatmulArgs& a) {
  if (a.path == MatmulPath::Gemv) {
    const bf16* wj[1] = {a.w};
    float* oj[1] = {a.out};
    const int64_t nj[1] = {a.N};
    launch_gemv(ctx, a.x, a.M, a.K, wj, oj, nj, 1);
    return;
  }
  const bf16* xb;
  if (a.path == MatmulPath::Shadow) {
    xb = a.x16;
  } else {
    bf16* s = ctx.scratch.bf16s(static_cast<size_t>(a.M * a.K), ctx.stream);
    launch_f32_to_bf16(ctx.stream, a.x, s, a.M * a.K);
    xb = s;
  }
  ctx.gemm.run(ctx.stream, xb, a.w, a.out, a.M, a.N, a.K);
}

void launch(const ExecCtx& ctx, const GemvSharedArgs& a) {
  launch_gemv(ctx, a.x, a.M, a.K, a.w, a.out, a.N, static_cast<int>(a.n));
}

void launch(const ExecCtx& ctx, const GemvGatedArgs& a) {
  const int ks = gemv_ks(a.K);
  const unsigned blocks = static_cast<unsigned>((a.N + 8 / ks - 1) / (8 / ks));
  with_gemv_shape(a.M, ks, [&](auto m, auto k) {
    launch_pdl(ctx, k_gemv_gated<decltype(m)::value, decltype(k)::value>, dim3(blocks), dim3(256), 0, a.wg, a.wu, a.x, a.out,
               (int)a.N, (int)a.K);
  });
}

// ---------------------------------------------------------------- ops

void CudaBackend::matmul(const Act& x, const Weight& w, Act& out) {
  if (w.device_dtype != DType::BF16) return qmatmul(x, w, out);  // quant.cu
  const int64_t M = x.rows, K = x.cols, N = out.cols;
  Cmd c = make_cmd(Op::Matmul);
  MatmulArgs& a = c.a.matmul;
  a.x = static_cast<const float*>(x.data);
  a.w = static_cast<const bf16*>(w.device);
  a.out = static_cast<float*>(out.data);
  a.x16 = static_cast<const bf16*>(acts_.shadow(x));
  a.M = M;
  a.N = N;
  a.K = K;
  const bool gemv = M <= 4 && K % 8 == 0;
  a.path = gemv ? MatmulPath::Gemv : acts_.shadow_ready(x.data, K) ? MatmulPath::Shadow : MatmulPath::Convert;
  acts_.drop_shadow(out.data);
  submit(c);
}

void CudaBackend::matmul_shared_input(const Act& x, const Weight* const* w, Act* const* out, int n) {
  bool quantized = false;
  for (int j = 0; j < n; ++j) quantized |= w[j]->device_dtype != DType::BF16;
  if (!gemv_path(x) || n < 1 || n > 3 || quantized) return Backend::matmul_shared_input(x, w, out, n);
  Cmd c = make_cmd(Op::GemvShared);
  GemvSharedArgs& a = c.a.gemv_shared;
  a.x = static_cast<const float*>(x.data);
  for (int j = 0; j < n; ++j) {
    a.w[j] = static_cast<const bf16*>(w[j]->device);
    a.out[j] = static_cast<float*>(out[j]->data);
    a.N[j] = out[j]->cols;
    acts_.drop_shadow(out[j]->data);
  }
  a.M = x.rows;
  a.n = n;
  a.K = x.cols;
  submit(c);
}

void CudaBackend::gated_mlp_up(const Act& x, const Weight& wg, const Weight& wu, Act& gate, Act& up) {
  if (!gemv_path(x) || wg.device_dtype != DType::BF16 || wu.device_dtype != DType::BF16)
    return Backend::gated_mlp_up(x, wg, wu, gate, up);
  Cmd c = make_cmd(Op::GemvGated);
  GemvGatedArgs& a = c.a.gemv_gated;
  a.x = static_cast<const float*>(x.data);
  a.wg = static_cast<const bf16*>(wg.device);
  a.wu = static_cast<const bf16*>(wu.device);
  a.out = static_cast<float*>(gate.data);
  a.M = x.rows;
  a.N = gate.cols;
  a.K = x.cols;
  acts_.drop_shadow(gate.data);
  submit(c);
}

}  // namespace gf::cuda
