// The global pool: every index visited exactly once, whatever the number of
// parts (fewer parts than threads leaves workers idle), across resizes after
// use, and nested calls run inline.
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "core/thread_pool.h"

namespace gf {
namespace {

void expect_each_index_once(int64_t n, int64_t min_chunk) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
  }, min_chunk);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "n=" << n << " i=" << i;
}

TEST(ThreadPool, EveryIndexOnceAcrossSizesAndResizes) {
  const int saved = num_threads();
  for (int threads : {4, 1, 3, 8, 2}) {
    set_num_threads(threads);
    ASSERT_EQ(num_threads(), threads);
    for (int rep = 0; rep < 200; ++rep)
      for (int64_t n : {1, 2, 3, 5, 17, 1000}) expect_each_index_once(n, rep % 3 == 0 ? 1 : 4);
  }
  set_num_threads(saved);
}

TEST(ThreadPool, NestedCallsRunInline) {
  std::atomic<int64_t> total{0};
  parallel_for(8, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      parallel_for(10, [&](int64_t b2, int64_t e2) { total.fetch_add(e2 - b2); });
  });
  EXPECT_EQ(total.load(), 80);
}

}  // namespace
}  // namespace gf
