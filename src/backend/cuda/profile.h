// GEMFORGE_CUDA_PROFILE=1: every op runs eagerly between two events (no
// graphs); at exit the backend prints GPU time per op kind and shape class to
// stderr (keys: ops.h, op_key).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace gf::cuda {

class Profiler {
 public:
  Profiler();
  ~Profiler();
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  bool on() const { return on_; }
  // Events around the work issued between begin and end, booked under key.
  cudaEvent_t begin(cudaStream_t stream);
  void end(cudaStream_t stream, cudaEvent_t began, std::string key);
  // The table (after collecting what is pending).
  void report(cudaStream_t stream);

 private:
  struct Entry {
    double ms = 0;
    int64_t calls = 0;
  };
  void collect(cudaStream_t stream);
  cudaEvent_t event();

  const bool on_;
  std::map<std::string, Entry> table_;
  std::vector<std::pair<std::string, std::pair<cudaEvent_t, cudaEvent_t>>> pending_;
  std::vector<cudaEvent_t> free_;
};

}  // namespace gf::cuda
