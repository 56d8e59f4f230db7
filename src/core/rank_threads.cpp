#include "core/rank_threads.h"

namespace gf {

RankThreads::RankThreads(int world) : errors_(static_cast<size_t>(world < 1 ? 1 : world)) {
  for (int r = 1; r < this->world(); ++r) threads_.emplace_back([this, r] { loop(r); });
}

RankThreads::~RankThreads() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    quit_ = true;
  }
  start_.notify_all();
  for (auto& t : threads_) t.join();
}

Status RankThreads::run(const std::function<Status(int)>& fn) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    fn_ = &fn;
    pending_ = world() - 1;
    ++generation_;
  }
  start_.notify_all();
  errors_[0] = fn(0);
  std::unique_lock<std::mutex> lk(mu_);
  done_.wait(lk, [&] { return pending_ == 0; });
  fn_ = nullptr;
  for (const Status& s : errors_)
    if (!s.ok()) return s;
  return Ok();
}

void RankThreads::loop(int rank) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<Status(int)>* fn;
    {
      std::unique_lock<std::mutex> lk(mu_);
      start_.wait(lk, [&] { return quit_ || generation_ != seen; });
      if (quit_) return;
      seen = generation_;
      fn = fn_;
    }
    Status s = (*fn)(rank);
    std::lock_guard<std::mutex> lk(mu_);
    errors_[static_cast<size_t>(rank)] = std::move(s);
    if (--pending_ == 0) done_.notify_one();
  }
}

}  // namespace gf
