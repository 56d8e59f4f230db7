#include "backend/cuda/profile.h"

#include <algorithm>
#include <cstdio>

#include "backend/cuda/common.cuh"

namespace gf::cuda {

Profiler::Profiler() : on_(env_is("GEMFORGE_CUDA_PROFILE", "1")) {}

Profiler::~Profiler() {
  for (cudaEvent_t e : free_) cudaEventDestroy(e);
}

cudaEvent_t Profiler::event() {
  if (free_.empty()) {
    cudaEvent_t e;
    CK(cudaEventCreate(&e));
    return e;
  }
  cudaEvent_t e = free_.back();
  free_.pop_back();
  return e;
}

cudaEvent_t Profiler::begin(cudaStream_t stream) {
  cudaEvent_t a = event();
  CK(cudaEventRecord(a, stream));
  return a;
}

void Profiler::end(cudaStream_t stream, cudaEvent_t began, std::string key) {
  cudaEvent_t b = event();
  CK(cudaEventRecord(b, stream));
  pending_.push_back({std::move(key), {began, b}});
  if (pending_.size() >= 4096) collect(stream);
}

void Profiler::collect(cudaStream_t stream) {
  if (pending_.empty()) return;
  CK(cudaStreamSynchronize(stream));
  for (auto& [k, ev] : pending_) {
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, ev.first, ev.second));
    table_[k].ms += ms;
    ++table_[k].calls;
    free_.push_back(ev.first);
    free_.push_back(ev.second);
  }
  pending_.clear();
}

void Profiler::report(cudaStream_t stream) {
  collect(stream);
  if (table_.empty()) return;
  std::vector<std::pair<std::string, Entry>> v(table_.begin(), table_.end());
  std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.second.ms > b.second.ms; });
  double total = 0;
  for (auto& e : v) total += e.second.ms;
  std::fprintf(stderr, "GPU time per op (GEMFORGE_CUDA_PROFILE, eager):\n%-44s %8s %10s %9s %6s\n", "op", "calls", "total ms", "avg us", "%");
  for (auto& [k, e] : v)
    std::fprintf(stderr, "%-44s %8lld %10.2f %9.2f %6.1f\n", k.c_str(), static_cast<long long>(e.calls), e.ms, 1e3 * e.ms / e.calls,
                 100 * e.ms / total);
}

}  // namespace gf::cuda
