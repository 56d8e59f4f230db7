// The one symbol libgemforge_cuda.so exports for the loader (cuda_loader.cpp).
#include "backend/cuda/cuda_backend.h"

extern "C" __attribute__((visibility("default"))) const gf::CudaApi* gemforge_cuda_api() {
  static const gf::CudaApi api = [] {
    gf::CudaApi a;
    a.try_make_cuda_backend = &gf::try_make_cuda_backend;
    a.cuda_backend_error = &gf::cuda_backend_error;
    a.cuda_device_count = &gf::cuda_device_count;
    a.cuda_measure_device = &gf::cuda_measure_device;
    a.cuda_step_stats = &gf::cuda_step_stats;
    a.cuda_set_graphs = &gf::cuda_set_graphs;
    a.try_make_cuda_train_ops = &gf::try_make_cuda_train_ops;
    return a;
  }();
  return &api;
}
