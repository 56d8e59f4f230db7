// The backend sampling op (host float32 reference, the CPU backend's) against
// the host sampler and log-prob code it replaces, on crafted and random rows,
// and end to end through the decoder on a fixture.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "backend/backend.h"
#include "model/decoder.h"
#include "core/mapped_file.h"
#include "model/model.h"
#include "runtime/logprobs.h"
#include "runtime/sampler.h"
#include "test_util.h"

namespace gf {
namespace {

// Rows of logits in a CPU Act, sampled by the op.
std::vector<SampledToken> op_sample(const std::vector<float>& rows, int64_t vocab, const std::vector<RowSampling>& ps) {
  auto be = make_cpu_backend();
  Act a = be->alloc(static_cast<int64_t>(ps.size()), vocab);
  be->upload(a, rows.data());
  std::vector<SampledToken> out;
  be->sample(a, ps, out);
  be->release(a);
  return out;
}

std::vector<float> random_row(int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> r(static_cast<size_t>(vocab));
  for (auto& x : r) x = d(rng);
  return r;
}

RowSampling sampled(float temp, int top_k, float top_p, float min_p, uint64_t seed, uint64_t draw) {
  RowSampling p;
  p.temperature = temp, p.top_k = top_k, p.top_p = top_p, p.min_p = min_p, p.seed = seed, p.draw = draw;
  return p;
}

TEST(SamplingOp, GreedyIsArgmaxWithTiesToTheLowestId) {
  const int64_t V = 5000;
  std::vector<float> rows;
  for (uint32_t s = 0; s < 4; ++s) {
    auto r = random_row(V, s);
    if (s == 3) r[17] = r[4000] = 100.0f;  // a tie: 17 wins
    rows.insert(rows.end(), r.begin(), r.end());
  }
  auto out = op_sample(rows, V, std::vector<RowSampling>(4));
  for (int s = 0; s < 4; ++s) EXPECT_EQ(out[static_cast<size_t>(s)].id, argmax(rows.data() + s * V, V));
  EXPECT_EQ(out[3].id, 17);
}

TEST(SamplingOp, TopKOneIsGreedyAndSeedsReproduce) {
  const int64_t V = 3000;
  const auto row = random_row(V, 7);
  std::vector<RowSampling> ps;
  for (uint64_t d = 0; d < 16; ++d) ps.push_back(sampled(1.5f, 1, 1.0f, 0.0f, 1234 + d, d));
  std::vector<float> rows;
  for (size_t i = 0; i < ps.size(); ++i) rows.insert(rows.end(), row.begin(), row.end());
  for (const auto& t : op_sample(rows, V, ps)) EXPECT_EQ(t.id, argmax(row.data(), V));

  // Same seed and draw: same token; over many draws the tokens vary.
  ps.clear();
  for (uint64_t d = 0; d < 64; ++d) ps.push_back(sampled(1.0f, 0, 1.0f, 0.0f, 42, d));
  rows.clear();
  for (size_t i = 0; i < ps.size(); ++i) rows.insert(rows.end(), row.begin(), row.end());
  auto a = op_sample(rows, V, ps), b = op_sample(rows, V, ps);
  std::map<int32_t, int> seen;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].id, b[i].id);
    ++seen[a[i].id];
  }
  EXPECT_GT(seen.size(), 4u);
}

TEST(SamplingOp, SameAsTheHostSamplerWithoutPenalties) {
  const int64_t V = 2048;
  const auto row = random_row(V, 3);
  SamplingParams sp;
  sp.temperature = 0.9f, sp.top_k = 40, sp.top_p = 0.9f, sp.min_p = 0.02f, sp.seed = 99;
  Sampler host(sp);
  std::vector<RowSampling> ps;
  std::vector<float> rows;
  for (uint64_t d = 0; d < 32; ++d) {
    ps.push_back(host.row(d));
    rows.insert(rows.end(), row.begin(), row.end());
  }
  EXPECT_FALSE(ps[0].host);
  auto out = op_sample(rows, V, ps);
  std::vector<int32_t> history;
  for (uint64_t d = 0; d < 32; ++d) {
    auto copy = row;
    EXPECT_EQ(out[d].id, host.sample(copy.data(), V, history, d)) << d;
  }
  sp.presence_penalty = 0.5f;
  EXPECT_TRUE(Sampler(sp).row(0).host);  // penalties: the row comes back as logits
  auto back = op_sample(row, V, {Sampler(sp).row(0)});
  EXPECT_EQ(back[0].id, -1);
  EXPECT_EQ(back[0].logits, row);
}

TEST(SamplingOp, TopPAndMinPKeepTheRightTokens) {
  // Softmax of {5, 4, 3} (the rest far below): 0.665, 0.245, 0.090.
  const int64_t V = 100;
  std::vector<float> row(V, -30.0f);
  row[10] = 5, row[20] = 4, row[30] = 3;
  auto kept = [&](float top_p, float min_p) {
    std::vector<RowSampling> ps;
    std::vector<float> rows;
    for (uint64_t d = 0; d < 400; ++d) {
      ps.push_back(sampled(1.0f, 0, top_p, min_p, 5, d));
      rows.insert(rows.end(), row.begin(), row.end());
    }
    std::map<int32_t, int> seen;
    for (const auto& t : op_sample(rows, V, ps)) ++seen[t.id];
    std::vector<int32_t> ids;
    for (auto& [id, n] : seen) ids.push_back(id);
    return ids;
  };
  EXPECT_EQ(kept(0.5f, 0.0f), std::vector<int32_t>({10}));
  EXPECT_EQ(kept(0.9f, 0.0f), std::vector<int32_t>({10, 20}));
  EXPECT_EQ(kept(0.95f, 0.0f), std::vector<int32_t>({10, 20, 30}));
  EXPECT_EQ(kept(1.0f, 0.2f), std::vector<int32_t>({10, 20}));  // floor 0.133
  EXPECT_EQ(kept(1.0f, 0.5f), std::vector<int32_t>({10}));      // floor 0.333
  EXPECT_EQ(kept(1.0f, 0.1f), std::vector<int32_t>({10, 20, 30}));
}

TEST(SamplingOp, LogprobsEqualTheHostCode) {
  const int64_t V = 4000;
  const auto row = random_row(V, 11);
  RowSampling g;
  g.top_logprobs = 5;
  RowSampling s = sampled(0.7f, 0, 0.95f, 0.0f, 3, 0);
  s.top_logprobs = 0;
  std::vector<float> rows = row;
  rows.insert(rows.end(), row.begin(), row.end());
  auto out = op_sample(rows, V, {g, s});
  const auto top = top_logprobs(row.data(), V, 5);
  ASSERT_EQ(out[0].top.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(out[0].top[i].first, top[i].first);
    EXPECT_EQ(out[0].top[i].second, static_cast<float>(top[i].second));
  }
  EXPECT_EQ(out[0].logprob, static_cast<float>(token_logprob(row.data(), V, out[0].id)));
  EXPECT_TRUE(out[1].top.empty());
  EXPECT_EQ(out[1].logprob, static_cast<float>(token_logprob(row.data(), V, out[1].id)));
}

// Through the decoder: the sampled greedy continuation equals argmax of the logits path.
TEST(SamplingOp, DecoderGreedyIdsEqualArgmaxOfLogits) {
  const std::string dir = std::string(GEMFORGE_FIXTURES) + "/hf-tiny/gemma2";
  if (!file_exists(dir + "/config.json")) GTEST_SKIP() << dir << " is absent";
  auto m = load_model(dir);
  ASSERT_TRUE(m.ok()) << m.message();
  auto be = make_cpu_backend();
  auto dec = Decoder::create(*m, *be);
  ASSERT_TRUE(dec.ok()) << dec.message();
  auto a = (*dec)->new_cache(64), b = (*dec)->new_cache(64);
  std::vector<int32_t> ids = {2, 10, 20, 30};
  auto logits = (*dec)->forward(ids, **a, false);
  auto tok = (*dec)->forward_sample(ids, **b, RowSampling{});
  ASSERT_TRUE(logits.ok() && tok.ok());
  for (int i = 0; i < 12; ++i) {
    const int32_t want = argmax(logits->data(), m->spec.vocab_size);
    ASSERT_EQ(tok->id, want) << i;
    logits = (*dec)->forward({want}, **a, false);
    tok = (*dec)->forward_sample({want}, **b, RowSampling{});
    ASSERT_TRUE(logits.ok() && tok.ok());
  }
}

}  // namespace
}  // namespace gf
