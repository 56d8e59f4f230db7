// The in-process collective (backend/collective.h) and the rank threads
// (core/rank_threads.h): sums added in rank order and bit-identical on every
// rank, gathers in rank order, broadcasts from any root, size mismatches
// reported on every rank, and many calls in a row (the double-buffered result).
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <vector>

#include "backend/collective.h"
#include "core/rank_threads.h"

namespace gf {
namespace {

// Rank r's test vector: values of different magnitudes so the order of additions shows.
std::vector<float> values(int rank, int64_t n, int call) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<float>((i + 1) * (rank + 1 + call)) * (rank % 2 ? 1e-7f : 1.0f) - 0.3f * rank;
  return v;
}

// Runs fn(rank, collective) for every rank of a thread group at once.
Status run_group(int world, const std::function<Status(int, Collective&)>& fn) {
  auto comms = make_thread_collectives(world);
  RankThreads threads(world);
  return threads.run([&](int r) { return fn(r, *comms[static_cast<size_t>(r)]); });
}

TEST(ThreadCollective, AllReduceSumsInRankOrderIdenticallyOnEveryRank) {
  for (int world : {1, 2, 3, 4}) {
    for (int64_t n : {0, 1, 3, 7, 1000}) {
      std::vector<std::vector<float>> got(static_cast<size_t>(world));
      Status st = run_group(world, [&](int r, Collective& c) {
        EXPECT_EQ(c.rank(), r);
        EXPECT_EQ(c.world(), world);
        got[static_cast<size_t>(r)] = values(r, n, 0);
        return c.all_reduce_sum(got[static_cast<size_t>(r)].data(), n);
      });
      ASSERT_TRUE(st.ok()) << st.message();
      for (int64_t i = 0; i < n; ++i) {
        float want = values(0, n, 0)[static_cast<size_t>(i)];
        for (int r = 1; r < world; ++r) want += values(r, n, 0)[static_cast<size_t>(i)];
        for (int r = 0; r < world; ++r)
          ASSERT_EQ(std::memcmp(&got[static_cast<size_t>(r)][static_cast<size_t>(i)], &want, 4), 0)
              << "world " << world << " n " << n << " rank " << r << " element " << i;
      }
    }
  }
}

TEST(ThreadCollective, AllGatherPlacesPartsInRankOrder) {
  const int world = 3;
  const int64_t n = 5;
  std::vector<std::vector<float>> out(world, std::vector<float>(world * n));
  Status st = run_group(world, [&](int r, Collective& c) {
    const std::vector<float> part = values(r, n, 0);
    return c.all_gather(part.data(), n, out[static_cast<size_t>(r)].data());
  });
  ASSERT_TRUE(st.ok()) << st.message();
  for (int r = 0; r < world; ++r)
    for (int src = 0; src < world; ++src)
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(out[static_cast<size_t>(r)][static_cast<size_t>(src * n + i)], values(src, n, 0)[static_cast<size_t>(i)]);
}

TEST(ThreadCollective, BroadcastFromEveryRoot) {
  const int world = 4;
  for (int root = 0; root < world; ++root) {
    std::vector<std::vector<float>> x(world);
    Status st = run_group(world, [&](int r, Collective& c) {
      x[static_cast<size_t>(r)] = values(r, 9, 0);
      return c.broadcast(x[static_cast<size_t>(r)].data(), 9, root);
    });
    ASSERT_TRUE(st.ok()) << st.message();
    for (int r = 0; r < world; ++r) EXPECT_EQ(x[static_cast<size_t>(r)], values(root, 9, 0)) << "root " << root << " rank " << r;
  }
  Status bad = run_group(2, [](int, Collective& c) -> Status {
    float v = 0;
    return c.broadcast(&v, 1, 2);
  });
  EXPECT_FALSE(bad.ok());
}

TEST(ThreadCollective, MismatchedSizesFailOnEveryRankAndTheGroupGoesOn) {
  const int world = 3;
  std::vector<std::string> errors(world);
  Status st = run_group(world, [&](int r, Collective& c) -> Status {
    std::vector<float> x(8, 1.0f);
    Status s = c.all_reduce_sum(x.data(), r == 1 ? 8 : 4);
    errors[static_cast<size_t>(r)] = s.message();
    // The group stays in step: the next call works.
    GF_RETURN_IF_ERROR(c.all_reduce_sum(x.data(), 8));
    if (x[0] != 3.0f) return Err("wrong sum after a failed call");
    return Ok();
  });
  ASSERT_TRUE(st.ok()) << st.message();
  for (const auto& e : errors) EXPECT_NE(e.find("the ranks' steps differ"), std::string::npos) << e;
}

// Ranks run at different speeds through thousands of calls of changing sizes:
// a rank starting call k+1 must not disturb one still reading call k.
TEST(ThreadCollective, ManyCallsInARow) {
  const int world = 4;
  Status st = run_group(world, [&](int r, Collective& c) -> Status {
    for (int call = 0; call < 2000; ++call) {
      const int64_t n = 1 + (call * 7) % 33;
      std::vector<float> x = values(r, n, call);
      if (call % 3 == 2) {
        std::vector<float> all(static_cast<size_t>(world * n));
        GF_RETURN_IF_ERROR(c.all_gather(x.data(), n, all.data()));
        if (all[static_cast<size_t>(n)] != values(1, n, call)[0]) return Err("gather " + std::to_string(call));
        continue;
      }
      GF_RETURN_IF_ERROR(c.all_reduce_sum(x.data(), n));
      float want = values(0, n, call)[0];
      for (int q = 1; q < world; ++q) want += values(q, n, call)[0];
      if (x[0] != want) return Err("sum " + std::to_string(call) + " on rank " + std::to_string(r));
    }
    return Ok();
  });
  EXPECT_TRUE(st.ok()) << st.message();
}

TEST(RankThreads, RunsEveryRankConcurrentlyAndReportsTheLowestError) {
  RankThreads threads(4);
  EXPECT_EQ(threads.world(), 4);
  for (int rep = 0; rep < 100; ++rep) {
    std::atomic<int> arrived{0};
    Status st = threads.run([&](int r) -> Status {
      // Every rank waits for all: passes only if they run at the same time.
      arrived.fetch_add(1);
      while (arrived.load() < 4) std::this_thread::yield();
      return Ok();
    });
    ASSERT_TRUE(st.ok());
  }
  Status st = threads.run([](int r) -> Status {
    if (r >= 2) return Err("rank " + std::to_string(r));
    return Ok();
  });
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(), "rank 2");
}

}  // namespace
}  // namespace gf
