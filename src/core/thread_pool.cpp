#include "core/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GF_CPU_RELAX() _mm_pause()
#else
#define GF_CPU_RELAX() std::this_thread::yield()
#endif

namespace gf {
namespace {

// True on a thread that is running a parallel_for chunk: nested calls run inline.
thread_local bool in_parallel_ = false;

// Waits until load(x) != old: spins for up to spin_us (a decode step issues
// hundreds of parallel_for calls tens of microseconds apart, and a futex
// wake-up costs about as much as the work), then sleeps in the kernel so an
// idle or oversubscribed machine does not burn a core.
template <class T>
void wait_change(const std::atomic<T>& x, T old, int spin_us) {
  if (spin_us > 0) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us);
    for (int i = 1;; ++i) {
      if (x.load(std::memory_order_acquire) != old) return;
      if (i < 256) {
        GF_CPU_RELAX();
      } else {
        // Past a short busy spin, yield: on an oversubscribed machine the
        // thread we wait for may need this core.
        std::this_thread::yield();
        if (std::chrono::steady_clock::now() > until) break;
      }
    }
  }
  while (x.load(std::memory_order_acquire) == old) x.wait(old, std::memory_order_acquire);
}

int env_int(const char* name, int fallback) {
  if (const char* e = std::getenv(name)) {
    char* end = nullptr;
    long v = std::strtol(e, &end, 10);
    if (end != e && v >= 0) return static_cast<int>(v);
  }
  return fallback;
}

class Pool {
 public:
  explicit Pool(int n) : spin_us_(env_int("GEMFORGE_SPIN_US", 200)) { resize(n); }
  ~Pool() { stop(); }

  void resize(int n) {
    stop();
    n = std::clamp(n, 1, 1024);
    size_ = n;
    quit_.store(false);
    const uint64_t gen = generation_.load();
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, gen] { loop(i, gen); });
  }
  int size() const { return size_; }

  void run(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk) {
    int64_t parts = std::min<int64_t>(size_, std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk)));
    if (parts <= 1 || in_parallel_) {
      fn(0, n);
      return;
    }
    fn_ = &fn;
    n_ = n;
    parts_ = parts;
    pending_.store(static_cast<int>(parts - 1), std::memory_order_relaxed);
    // The part count travels in the generation word itself: a worker that is
    // not part of this job never reads fields the next job may be writing.
    const uint64_t gen = generation_.load(std::memory_order_relaxed);
    generation_.store(((gen >> kPartBits) + 1) << kPartBits | static_cast<uint64_t>(parts), std::memory_order_release);
    generation_.notify_all();
    in_parallel_ = true;
    chunk(0);
    in_parallel_ = false;
    for (int left = pending_.load(std::memory_order_acquire); left != 0; left = pending_.load(std::memory_order_acquire))
      wait_change(pending_, left, spin_us_);
    fn_ = nullptr;
  }

 private:
  void chunk(int64_t part) {
    int64_t begin = n_ * part / parts_, end = n_ * (part + 1) / parts_;
    if (begin < end) (*fn_)(begin, end);
  }
  void loop(int id, uint64_t seen) {
    for (;;) {
      wait_change(generation_, seen, spin_us_);
      seen = generation_.load(std::memory_order_acquire);
      if (quit_.load(std::memory_order_acquire)) return;
      if (id < static_cast<int64_t>(seen & kPartMask)) {
        in_parallel_ = true;
        chunk(id);
        in_parallel_ = false;
        if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
      }
    }
  }
  void stop() {
    quit_.store(true, std::memory_order_release);
    generation_.fetch_add(uint64_t{1} << kPartBits, std::memory_order_release);
    generation_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  static constexpr int kPartBits = 16;
  static constexpr uint64_t kPartMask = (uint64_t{1} << kPartBits) - 1;
  const int spin_us_;
  std::vector<std::thread> workers_;
  // The job of the current generation; written by run() before the
  // generation is published (release) and read by workers after (acquire).
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, parts_ = 0;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> quit_{false};
  int size_ = 1;
};

int default_threads() {
  int n = env_int("GEMFORGE_THREADS", 0);
  return n > 0 ? n : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
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
