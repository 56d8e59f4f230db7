// Runs the ranks of an in-process SPMD group (tensor parallelism on one host):
// one function on every rank at once, rank 0 on the caller's thread and each
// other rank on a thread of its own that lives as long as this object, so a
// rank keeps its thread (and whatever it holds per thread) from step to step.
#pragma once
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "core/status.h"

namespace gf {

class RankThreads {
 public:
  explicit RankThreads(int world);
  ~RankThreads();
  RankThreads(const RankThreads&) = delete;
  RankThreads& operator=(const RankThreads&) = delete;

  int world() const { return static_cast<int>(errors_.size()); }
  // Calls fn(r) for every rank r concurrently and returns when all have
  // returned: ok, or the error of the lowest failing rank. One run at a time.
  Status run(const std::function<Status(int)>& fn);

 private:
  void loop(int rank);

  std::mutex mu_;
  std::condition_variable start_, done_;
  const std::function<Status(int)>* fn_ = nullptr;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool quit_ = false;
  std::vector<Status> errors_;
  std::vector<std::thread> threads_;
};

}  // namespace gf
