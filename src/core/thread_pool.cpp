#include "core/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace gf {
namespace {

// True on a thread that is running a parallel_for chunk: nested calls run inline.
thread_local bool in_parallel_ = false;

class Pool {
 public:
  explicit Pool(int n) { resize(n); }
  ~Pool() { stop(); }

  void resize(int n) {
    stop();
    n = std::max(1, n);
    size_ = n;
    quit_ = false;
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i] { loop(i); });
  }
  int size() const { return size_; }

  void run(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk) {
    int64_t parts = std::min<int64_t>(size_, std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk)));
    if (parts <= 1 || in_parallel_) {
      fn(0, n);
      return;
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      fn_ = &fn;
      n_ = n;
      parts_ = parts;
      pending_ = static_cast<int>(parts - 1);
      ++generation_;
    }
    cv_.notify_all();
    in_parallel_ = true;
    chunk(0);
    in_parallel_ = false;
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [this] { return pending_ == 0; });
    fn_ = nullptr;
  }

 private:
  void chunk(int64_t part) {
    int64_t begin = n_ * part / parts_, end = n_ * (part + 1) / parts_;
    if (begin < end) (*fn_)(begin, end);
  }
  void loop(int id) {
    uint64_t seen = 0;
    for (;;) {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return quit_ || generation_ != seen; });
      if (quit_) return;
      seen = generation_;
      bool mine = id < parts_;
      lk.unlock();
      if (mine) {
        in_parallel_ = true;
        chunk(id);
        in_parallel_ = false;
        std::lock_guard<std::mutex> g(mu_);
        if (--pending_ == 0) done_cv_.notify_one();
      }
    }
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, parts_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool quit_ = false;
  int size_ = 1;
};

int default_threads() {
  if (const char* e = std::getenv("GEMFORGE_THREADS")) {
    int n = std::atoi(e);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

std::mutex g_pool_mu;
Pool& pool() {
  static Pool p(default_threads());
  return p;
}

}  // namespace

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk) {
  if (n <= 0) return;
  if (in_parallel_) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> lk(g_pool_mu);  // one parallel region at a time
  pool().run(n, fn, min_chunk);
}

void set_num_threads(int n) {
  std::lock_guard<std::mutex> lk(g_pool_mu);
  pool().resize(n);
}

int num_threads() { return pool().size(); }

}  // namespace gf
