// The CUDA backend: the ops of backend.h on an NVIDIA GPU. Weights are bf16 on
// the device (uploaded once), activations float32 with a bf16 shadow for the
// GEMM inputs, the KV cache bf16 in paged blocks. Pure decode steps (one token
// per sequence) are recorded and, from the second time the same step is seen,
// replayed as a CUDA graph. This header compiles without the CUDA toolkit's
// headers; the implementation is described in cuda/backend_impl.h.
//
// The backend is built as a plugin, libgemforge_cuda.so, loaded on first use
// (backend/cuda_loader/cuda_loader.cpp): a CPU run never maps cuBLAS/cuBLASLt
// (~210 MB of resident memory) and a binary built with CUDA still runs where
// the CUDA libraries are missing. The functions below are forwarded through
// CudaApi; a new one needs an entry there, in cuda/plugin_entry.cu and in
// cuda_loader.cpp.
#pragma once
#include <memory>
#include <string>

#include "backend/backend.h"
#include "backend/train_ops.h"
#include "core/status.h"

namespace gf {

// The CUDA backend on `device`, or nullptr when there is no usable GPU
// (cuda_backend_error() then says why). Prefer try_make_cuda_backend.
std::unique_ptr<Backend> make_cuda_backend(int device = 0);
Result<std::unique_ptr<Backend>> try_make_cuda_backend(int device = 0);
std::string cuda_backend_error();

// Number of CUDA devices (0 when the driver or a GPU is missing).
int cuda_device_count();

// Measurements for `gemforge bench` (device 0 unless given).
struct CudaDeviceInfo {
  std::string name;
  double copy_gbps = 0;   // device-to-device cudaMemcpy, bytes read + written per second / 1e9
  double gemm_tflops = 0; // bf16 x bf16 -> f32 cuBLASLt GEMM of 8192^3
  double mem_gib = 0;
};
Result<CudaDeviceInfo> cuda_measure_device(int device = 0, bool gemm = true);

// GPU time (CUDA events) of the last forward step the backend ran, in ms, and
// whether it was a graph replay. For benchmarks.
struct CudaStepStats {
  double last_step_ms = 0;
  bool last_was_graph = false;
  int64_t graphs_captured = 0;
  int64_t graph_replays = 0;
};
CudaStepStats cuda_step_stats(Backend& be);
// Turns graph capture of decode steps on/off (default on; GEMFORGE_CUDA_GRAPHS=0 turns it off).
void cuda_set_graphs(Backend& be, bool on);

// The LoRA training ops on `device` (train_ops.cu): frozen weights bf16,
// activations float32, AdamW stays with the caller (src/train).
Result<std::unique_ptr<TrainOps>> try_make_cuda_train_ops(int device = 0);

// The plugin's table of the functions above (same compiler and build on both
// sides; `size` guards against a stale library).
struct CudaApi {
  size_t size = sizeof(CudaApi);
  Result<std::unique_ptr<Backend>> (*try_make_cuda_backend)(int device);
  std::string (*cuda_backend_error)();
  int (*cuda_device_count)();
  Result<CudaDeviceInfo> (*cuda_measure_device)(int device, bool gemm);
  CudaStepStats (*cuda_step_stats)(Backend& be);
  void (*cuda_set_graphs)(Backend& be, bool on);
  Result<std::unique_ptr<TrainOps>> (*try_make_cuda_train_ops)(int device);
};

}  // namespace gf
