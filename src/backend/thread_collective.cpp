// The in-process collective: the ranks are threads of one process, meeting at
// a barrier around each call and reading each other's buffers in place.
#include <algorithm>
#include <barrier>
#include <cstring>

#include "backend/collective.h"

namespace gf {
namespace {

// What the ranks share: the buffers published for the running call and the
// all-reduce results. Results alternate between two buffers so that a rank may
// start call k+1 while another still copies call k's result out.
struct Shared {
  explicit Shared(int world) : barrier(world), in(static_cast<size_t>(world)), n(static_cast<size_t>(world)) {}
  std::barrier<> barrier;
  std::vector<const float*> in;
  std::vector<int64_t> n;
  std::vector<float> result[2];
  const std::string* bytes = nullptr;  // broadcast_bytes: the root's
};

class ThreadCollective final : public Collective {
 public:
  ThreadCollective(std::shared_ptr<Shared> s, int rank, int world) : s_(std::move(s)), rank_(rank), world_(world) {}
  int rank() const override { return rank_; }
  int world() const override { return world_; }

  Status all_reduce_sum(float* x, int64_t n) override {
    std::vector<float>& result = s_->result[calls_++ % 2];
    if (rank_ == 0) result.resize(static_cast<size_t>(n));
    GF_RETURN_IF_ERROR(publish(x, n, "all_reduce_sum"));
    // Reduce-scatter: each rank sums its own slice for everyone.
    const int64_t lo = n * rank_ / world_, hi = n * (rank_ + 1) / world_;
    for (int64_t i = lo; i < hi; ++i) {
      float sum = s_->in[0][i];
      for (int r = 1; r < world_; ++r) sum += s_->in[static_cast<size_t>(r)][i];
      result[static_cast<size_t>(i)] = sum;
    }
    s_->barrier.arrive_and_wait();
    std::copy_n(result.data(), n, x);
    return Ok();
  }

  Status all_gather(const float* part, int64_t n, float* out) override {
    GF_RETURN_IF_ERROR(publish(part, n, "all_gather"));
    for (int r = 0; r < world_; ++r) std::copy_n(s_->in[static_cast<size_t>(r)], n, out + r * n);
    s_->barrier.arrive_and_wait();  // the parts stay the callers' until everyone has read them
    return Ok();
  }

  Status broadcast(float* x, int64_t n, int root) override {
    if (root < 0 || root >= world_) return Err("broadcast from rank " + std::to_string(root) + " of " + std::to_string(world_));
    GF_RETURN_IF_ERROR(publish(x, n, "broadcast"));
    if (rank_ != root) std::copy_n(s_->in[static_cast<size_t>(root)], n, x);
    s_->barrier.arrive_and_wait();
    return Ok();
  }

  Status broadcast_bytes(std::string& bytes, int root) override {
    if (root < 0 || root >= world_) return Err("broadcast from rank " + std::to_string(root) + " of " + std::to_string(world_));
    if (rank_ == root) s_->bytes = &bytes;
    s_->barrier.arrive_and_wait();
    if (rank_ != root) bytes = *s_->bytes;
    s_->barrier.arrive_and_wait();
    return Ok();
  }

 private:
  // Shows this rank's buffer to the others and waits for theirs. Every rank
  // sees the same sizes, so a mismatch fails on all ranks alike (after the
  // closing barrier, which keeps the group in step).
  Status publish(const float* p, int64_t n, const char* op) {
    s_->in[static_cast<size_t>(rank_)] = p;
    s_->n[static_cast<size_t>(rank_)] = n;
    s_->barrier.arrive_and_wait();
    for (int r = 0; r < world_; ++r)
      if (s_->n[static_cast<size_t>(r)] != n) {
        s_->barrier.arrive_and_wait();
        return Err(std::string(op) + ": rank " + std::to_string(r) + " passed " + std::to_string(s_->n[static_cast<size_t>(r)]) +
                   " values, rank " + std::to_string(rank_) + " " + std::to_string(n) + " (the ranks' steps differ)");
      }
    return Ok();
  }

  std::shared_ptr<Shared> s_;
  int rank_, world_;
  uint64_t calls_ = 0;
};

}  // namespace

std::vector<std::unique_ptr<Collective>> make_thread_collectives(int world) {
  auto shared = std::make_shared<Shared>(world);
  std::vector<std::unique_ptr<Collective>> out;
  for (int r = 0; r < world; ++r) out.push_back(std::make_unique<ThreadCollective>(shared, r, world));
  return out;
}

}  // namespace gf
