// The collectives (backend/collective.h), in-process and over TCP, and the
// rank threads (core/rank_threads.h): sums added in rank order and
// bit-identical on every rank (and between the two kinds), gathers in rank
// order, broadcasts from any root, size mismatches reported on every rank,
// and many calls in a row (the thread kind's double-buffered result).
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <vector>

#include "backend/collective.h"
#include "core/rank_threads.h"
#include "test_util.h"

namespace gf {
namespace {

// Rank r's test vector: values of different magnitudes so the order of additions shows.
std::vector<float> values(int rank, int64_t n, int call) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<float>((i + 1) * (rank + 1 + call)) * (rank % 2 ? 1e-7f : 1.0f) - 0.3f * rank;
  return v;
}

enum class Kind { Threads, Tcp };

// Runs fn(rank, collective) for every rank of a group at once: threads of
// this process sharing memory, or ranks meeting over TCP on loopback (each
// connecting from its own thread, as separate processes would).
Status run_group(Kind kind, int world, const std::function<Status(int, Collective&)>& fn) {
  RankThreads threads(world);
  if (kind == Kind::Threads) {
    auto comms = make_thread_collectives(world);
    return threads.run([&](int r) { return fn(r, *comms[static_cast<size_t>(r)]); });
  }
  const int port = test::free_port();
  return threads.run([&](int r) -> Status {
    GF_ASSIGN_OR_RETURN(auto c, connect_tcp_collective("127.0.0.1", port, r, world, 20));
    return fn(r, *c);
  });
}

class CollectiveTest : public ::testing::TestWithParam<Kind> {
 protected:
  Status run_group(int world, const std::function<Status(int, Collective&)>& fn) { return gf::run_group(GetParam(), world, fn); }
};

TEST_P(CollectiveTest, AllReduceSumsInRankOrderIdenticallyOnEveryRank) {
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

TEST_P(CollectiveTest, AllGatherPlacesPartsInRankOrder) {
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

TEST_P(CollectiveTest, BroadcastFromEveryRoot) {
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

TEST_P(CollectiveTest, MismatchedSizesFailOnEveryRankAndTheGroupGoesOn) {
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
TEST_P(CollectiveTest, ManyCallsInARow) {
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

// Every root, and bytes of any length.
TEST_P(CollectiveTest, BroadcastBytes) {
  for (int root = 0; root < 3; ++root) {
    std::vector<std::string> got(3);
    Status st = run_group(3, [&](int r, Collective& c) {
      got[static_cast<size_t>(r)] = r == root ? std::string(1000 + root, static_cast<char>('a' + root)) : "stale";
      return c.broadcast_bytes(got[static_cast<size_t>(r)], root);
    });
    ASSERT_TRUE(st.ok()) << st.message();
    for (const auto& g : got) EXPECT_EQ(g, std::string(1000 + root, static_cast<char>('a' + root)));
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, CollectiveTest, ::testing::Values(Kind::Threads, Kind::Tcp),
                         [](const auto& info) { return std::string(info.param == Kind::Threads ? "Threads" : "Tcp"); });

// A rank that never comes: the others give up with a message naming the rendezvous.
TEST(TcpCollective, RendezvousTimesOut) {
  const int port = test::free_port();
  auto c = connect_tcp_collective("127.0.0.1", port, 0, 2, 0.5);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.message().find("not every rank of 2 reached 127.0.0.1:" + std::to_string(port)), std::string::npos) << c.message();
  auto bad = connect_tcp_collective("127.0.0.1", port, 2, 2, 0.5);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("--node-rank 2 is not a rank of --nnodes 2"), std::string::npos) << bad.message();
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
