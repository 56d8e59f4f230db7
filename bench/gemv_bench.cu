// GEMV micro-benchmark on the GPU: the decode kernels of src/backend/cuda on
// the real Gemma shapes, for a sweep of their tiling parameters, reported as
// achieved weight-read bandwidth. Weights rotate over > 1 GB so L2 never holds
// them. Build: cmake -DGEMFORGE_BENCH=ON ... --target gemv_bench, or nvcc -O3 -std=c++17 -arch=sm_90 -Isrc bench/gemv_bench.cu -o gemv_bench
#include <cuda_runtime.h>

#include <cstdio>
#include <vector>

#include "backend/cuda/gemv.cuh"
#include "backend/cuda/norm.cuh"

using namespace gf::cuda;

template <int RB, int KS, int U, bool GATED>
__global__ __launch_bounds__(256) void k_var(const bf16* W, const bf16* W2, const float* x, float* out, int N, int K) {
  gemv_block<1, RB, KS, GATED, U>(W, W2, x, out, N, K, (int)blockIdx.x);
}

__global__ void k_empty() {}

// Time of one launch of f, averaged over a graph of 64.
template <class F>
double graph_us(cudaStream_t st, F f) {
  for (int i = 0; i < 4; ++i) f();
  cudaGraph_t g;
  cudaGraphExec_t ge;
  cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal);
  for (int i = 0; i < 64; ++i) f();
  cudaStreamEndCapture(st, &g);
  cudaGraphInstantiate(&ge, g, 0);
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaGraphLaunch(ge, st);
  cudaEventRecord(a, st);
  cudaGraphLaunch(ge, st);
  cudaEventRecord(b, st);
  cudaEventSynchronize(b);
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  return ms * 1e3 / 64;
}

struct Shape {
  const char* name;
  int N, K;
  bool gated;
};

template <int RB, int KS, int U, bool GATED>
void run(const Shape& s, const std::vector<bf16*>& ws, const float* x, float* out, cudaStream_t st) {
  const int rows_per_block = 8 / KS * (GATED ? 1 : RB);
  const unsigned blocks = (s.N + rows_per_block - 1) / rows_per_block;
  const int copies = (int)ws.size() / (GATED ? 2 : 1);
  auto launch = [&](int i) {
    const int c = i % copies;
    k_var<RB, KS, U, GATED><<<blocks, 256, 0, st>>>(ws[GATED ? 2 * c : c], GATED ? ws[2 * c + 1] : nullptr, x, out, s.N, s.K);
  };
  int i = 0;
  const double us = graph_us(st, [&] { launch(i++); });
  const double bytes = (double)s.N * s.K * 2 * (GATED ? 2 : 1);
  std::printf("%-14s N %6d K %6d  RB %d KS %d U %d : %8.2f us  %7.1f GB/s\n", s.name, s.N, s.K, RB, KS, U, us, bytes / us / 1e3);
}

template <bool GATED>
void sweep(const Shape& s, const std::vector<bf16*>& ws, const float* x, float* out, cudaStream_t st) {
  run<2, 1, 4, GATED>(s, ws, x, out, st);
  run<2, 2, 4, GATED>(s, ws, x, out, st);
  run<2, 4, 4, GATED>(s, ws, x, out, st);
  run<2, 8, 4, GATED>(s, ws, x, out, st);
  run<2, 2, 8, GATED>(s, ws, x, out, st);
  run<2, 4, 8, GATED>(s, ws, x, out, st);
  run<2, 8, 2, GATED>(s, ws, x, out, st);
  if constexpr (!GATED) {
    run<4, 4, 4, false>(s, ws, x, out, st);
    run<4, 8, 4, false>(s, ws, x, out, st);
    run<1, 4, 8, false>(s, ws, x, out, st);
    run<1, 8, 8, false>(s, ws, x, out, st);
  }
}

int main() {
  const Shape shapes[] = {
      {"7b qkv", 3 * 4096, 3072, false}, {"7b o", 3072, 4096, false},       {"7b gate+up", 24576, 3072, true},
      {"7b down", 3072, 24576, false},   {"12b q+k+v", 8192, 3840, false},  {"12b gate+up", 15360, 3840, true},
      {"12b down", 3840, 15360, false},  {"1b gate+up", 6912, 1152, true},  {"1b qkv", 1536, 1152, false},
  };
  cudaStream_t st;
  cudaStreamCreate(&st);
  const size_t max_elems = 2ull * 24576 * 3072;
  std::vector<bf16*> ws(16);
  for (auto& w : ws) {  // 16 x 151 MB
    cudaMalloc(&w, max_elems * 2);
    cudaMemset(w, 0x3c, max_elems * 2);
  }
  float *x, *out;
  cudaMalloc(&x, 65536 * 4);
  cudaMalloc(&out, 65536 * 4);
  cudaMemset(x, 0, 65536 * 4);
  // copy bandwidth for reference
  {
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    cudaMemcpyAsync(ws[1], ws[0], max_elems * 2, cudaMemcpyDeviceToDevice, st);
    cudaEventRecord(a, st);
    for (int i = 0; i < 10; ++i) cudaMemcpyAsync(ws[2 + i % 2], ws[i % 2], max_elems * 2, cudaMemcpyDeviceToDevice, st);
    cudaEventRecord(b, st);
    cudaEventSynchronize(b);
    float ms;
    cudaEventElapsedTime(&ms, a, b);
    std::printf("device copy: %.1f GB/s (read + write)\n", 10 * 2.0 * max_elems * 2 / (ms * 1e-3) / 1e9);
  }
  std::printf("empty kernel in a graph: %.2f us\n", graph_us(st, [&] { k_empty<<<1, 32, 0, st>>>(); }));
  for (int threads : {128, 256, 512, 1024})
    std::printf("residual_add_norm H 3072, T 1, %4d threads: %.2f us\n", threads, graph_us(st, [&] {
      k_residual_add_norm<<<1, threads, 0, st>>>(out, x, x, x, out + 8192, nullptr, 3072, 1e-6f);
    }));
  for (const Shape& s : shapes) {
    if (s.gated) sweep<true>(s, ws, x, out, st);
    else sweep<false>(s, ws, x, out, st);
  }
  const cudaError_t e = cudaDeviceSynchronize();
  std::printf("%s\n", cudaGetErrorString(e));
  return e == cudaSuccess ? 0 : 1;
}
