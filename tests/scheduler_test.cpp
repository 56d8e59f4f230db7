// The serving engine's scheduler, runner interface and output processing,
// driven through EngineCore by a fake runner: no model, deterministic, and
// honest about the cache. The fake writes each fed token into the slot its
// block table names and derives the next token from what the table reads
// back, so a lost token, a wrong prefix-cache hit or a bad recompute after
// preemption changes the output.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <set>

#include "backend/sampling.h"
#include "runtime/engine_core.h"
#include "runtime/model_runner.h"
#include "runtime/request.h"
#include "runtime/scheduler.h"

namespace gf {
namespace {

constexpr int64_t kVocab = 64;

class FakeRunner : public ModelRunner {
 public:
  FakeRunner(int64_t num_blocks, int block_size) : pool_(num_blocks, block_size), slots_(static_cast<size_t>(num_blocks * block_size), -1) {}
  BlockPool& blocks() override { return pool_; }

  Result<RunnerOutput> execute(const StepPlan& plan) override {
    ++steps;
    if (fail_next) {
      fail_next = false;
      return Err("injected failure");
    }
    // As the Decoder: the whole step's blocks or nothing.
    int64_t need = 0;
    for (const auto& c : plan.chunks)
      need += std::max<int64_t>(0, pool_.blocks_for(c.kv->length + static_cast<int64_t>(c.ids.size())) - static_cast<int64_t>(c.kv->blocks.size()));
    if (need > pool_.free_blocks()) return Err("KV cache is full");
    RunnerOutput out;
    out.vocab = kVocab;
    out.chunks.resize(plan.chunks.size());
    for (size_t i = 0; i < plan.chunks.size(); ++i) {
      const ScheduledChunk& c = plan.chunks[i];
      EXPECT_EQ(c.start, c.kv->length);
      EXPECT_FALSE(c.ids.empty());
      const int64_t n = static_cast<int64_t>(c.ids.size());
      if (Status s = pool_.reserve(*c.kv, c.kv->length + n); !s.ok()) return s.error();
      for (int64_t j = 0; j < n; ++j) slot(*c.kv, c.kv->length + j) = c.ids[static_cast<size_t>(j)];
      if (c.all_logits) {  // row j favours the token after position start + j
        auto& rows = out.chunks[i].logits;
        rows.assign(static_cast<size_t>(n * kVocab), 0.0f);
        for (int64_t j = 0; j < n; ++j) rows[static_cast<size_t>(j * kVocab + next_token(*c.kv, c.start + j + 1))] = 5.0f;
      }
      c.kv->length += n;
      if (c.picks && !c.all_logits && c.sampling.host) {  // the host picks from the row (as the Decoder returns it)
        out.chunks[i].next.logits.assign(kVocab, 0.0f);
        out.chunks[i].next.logits[static_cast<size_t>(next_token(*c.kv, c.kv->length))] = 5.0f;
      } else if (c.picks && !c.all_logits) {  // the backend's sampling op on the same row
        std::vector<float> row(kVocab, 0.0f);
        row[static_cast<size_t>(next_token(*c.kv, c.kv->length))] = 5.0f;
        std::vector<SampledToken> picked;
        sample_rows_host(row.data(), kVocab, {c.sampling}, picked);
        out.chunks[i].next.id = picked[0].id;
      }
    }
    return out;
  }

  int64_t steps = 0;
  bool fail_next = false;

 private:
  int32_t& slot(const SeqState& kv, int64_t p) {
    const int bs = pool_.block_size();
    return slots_[static_cast<size_t>(kv.blocks[static_cast<size_t>(p / bs)] * bs + p % bs)];
  }
  // The "model": a hash of the first `upto` tokens as the cache holds them.
  int32_t next_token(const SeqState& kv, int64_t upto) {
    uint64_t h = 1469598103934665603ull;
    for (int64_t p = 0; p < upto; ++p) h = (h ^ static_cast<uint32_t>(slot(kv, p) + 1)) * 1099511628211ull;
    return static_cast<int32_t>((h >> 17) % kVocab);
  }

  BlockPool pool_;
  std::vector<int32_t> slots_;
};

EngineOptions options(int max_running = 8, int64_t budget = 512, bool prefix_caching = true) {
  EngineOptions o;
  o.max_running = max_running;
  o.max_step_tokens = budget;
  o.prefix_caching = prefix_caching;
  return o;
}

std::shared_ptr<EngineRequest> request(std::vector<int32_t> prompt, int max_tokens) {
  auto r = std::make_shared<EngineRequest>();
  r->prompt = std::move(prompt);
  r->max_tokens = max_tokens;
  r->sampling.temperature = 0;
  return r;
}

std::vector<int32_t> prompt_of(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(static_cast<int32_t>((i * 7 + salt * 13 + 1) % kVocab));
  return p;
}

std::vector<int32_t> ids(const EngineRequest& r) {
  std::vector<int32_t> out;
  for (const auto& t : r.tokens) out.push_back(t.id);
  return out;
}

// Steps until nothing runs; the plans that ran.
std::vector<StepPlan> run(EngineCore& core, int max_steps = 10000) {
  std::vector<StepPlan> plans;
  StepPlan p;
  while (max_steps-- > 0 && core.step(&p)) plans.push_back(std::move(p));
  EXPECT_GT(max_steps, 0) << "the engine did not drain";
  return plans;
}

// The reply of one request run alone in a roomy cache.
std::vector<int32_t> alone(const std::vector<int32_t>& prompt, int max_tokens) {
  FakeRunner runner(256, 4);
  EngineCore core(runner, options());
  auto r = request(prompt, max_tokens);
  core.add(r);
  run(core);
  EXPECT_EQ(r->finish_reason, FinishReason::Length);
  return ids(*r);
}

// Batching, chunking and preemption do not change what comes out.
void expect_as_alone(const std::vector<std::shared_ptr<EngineRequest>>& rs) {
  for (size_t i = 0; i < rs.size(); ++i) EXPECT_EQ(ids(*rs[i]), alone(rs[i]->prompt, rs[i]->max_tokens)) << i;
}

TEST(Scheduler, ChunkedPrefillKeepsTheTokenBudget) {
  FakeRunner runner(64, 4);
  EngineCore core(runner, options(8, 8));
  auto a = request(prompt_of(5, 1), 6);
  const uint64_t ia = core.add(a);
  StepPlan p;
  ASSERT_TRUE(core.step(&p));
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].ids.size(), 5u);  // the whole prompt fits: it picks
  EXPECT_TRUE(p.chunks[0].picks);

  auto b = request(prompt_of(20, 2), 3);
  const uint64_t ib = core.add(b);
  // Decodes first (one token each), then B's prompt in chunks of what the budget leaves.
  const std::vector<std::pair<int64_t, int64_t>> want_b = {{0, 7}, {7, 7}, {14, 6}};  // (start, tokens)
  for (size_t k = 0; k < want_b.size(); ++k) {
    ASSERT_TRUE(core.step(&p));
    ASSERT_EQ(p.chunks.size(), 2u) << k;
    EXPECT_EQ(p.chunks[0].seq_id, ia);
    EXPECT_EQ(p.chunks[0].ids.size(), 1u);
    EXPECT_TRUE(p.chunks[0].picks);
    EXPECT_EQ(p.chunks[1].seq_id, ib);
    EXPECT_EQ(p.chunks[1].start, want_b[k].first) << k;
    EXPECT_EQ(static_cast<int64_t>(p.chunks[1].ids.size()), want_b[k].second) << k;
    EXPECT_EQ(p.chunks[1].picks, k + 1 == want_b.size()) << k;  // only the chunk that ends the prompt picks
    EXPECT_LE(p.num_tokens, 8);
  }
  EXPECT_TRUE(b->tokens.size() == 1 && a->tokens.size() == 4);
  run(core);
  expect_as_alone({a, b});
}

TEST(Scheduler, EveryRunningSequenceFeedsAtLeastOneToken) {
  FakeRunner runner(64, 4);
  EngineCore core(runner, options(8, 8));
  auto a = request(prompt_of(20, 1), 2), b = request(prompt_of(20, 2), 2);
  core.add(a);
  core.add(b);
  StepPlan p;
  ASSERT_TRUE(core.step(&p));
  ASSERT_EQ(p.chunks.size(), 2u);
  EXPECT_EQ(p.chunks[0].ids.size(), 8u);  // the budget
  EXPECT_EQ(p.chunks[1].ids.size(), 1u);  // past the budget: still one token, so it is never starved
  run(core);
  expect_as_alone({a, b});
}

// Prompt log-prob rows come back in full: at most kLogitRows of them per step.
TEST(Scheduler, PromptLogitRowsAreBoundedPerStep) {
  FakeRunner runner(64, 4);
  EngineCore core(runner, options(8, 512));
  auto r = request(prompt_of(150, 3), 0);
  r->prompt_logprobs = 0;
  core.add(r);
  const auto plans = run(core);
  ASSERT_EQ(plans.size(), 3u);  // 64 + 64 + 22
  for (const auto& p : plans) {
    ASSERT_EQ(p.chunks.size(), 1u);
    EXPECT_TRUE(p.chunks[0].all_logits);
    EXPECT_LE(static_cast<int64_t>(p.chunks[0].ids.size()), Scheduler::kLogitRows);
  }
  EXPECT_EQ(r->finish_reason, FinishReason::Length);  // scored, nothing generated
  EXPECT_TRUE(r->tokens.empty());
  ASSERT_EQ(r->prompt_lp.size(), r->prompt.size());
  EXPECT_TRUE(std::isnan(r->prompt_lp[0].logprob));
  for (size_t i = 0; i < r->prompt.size(); ++i) EXPECT_EQ(r->prompt_lp[i].id, r->prompt[i]);
}

// Four requests that outgrow a 12-block cache: the newest running one is
// preempted, recomputed later, and every reply is what it is alone.
TEST(Scheduler, PreemptsWhenBlocksRunOutAndRecomputesTheSameOutput) {
  for (bool prefix_caching : {false, true}) {
    SCOPED_TRACE(prefix_caching);
    FakeRunner runner(12, 4);
    EngineCore core(runner, options(8, 512, prefix_caching));
    std::vector<std::shared_ptr<EngineRequest>> rs;
    std::vector<uint64_t> seq_ids;
    for (int i = 0; i < 4; ++i) {
      rs.push_back(request(prompt_of(6, 10 + i), 12));  // 17 tokens fed in the end: 5 blocks each
      seq_ids.push_back(core.add(rs.back()));
    }
    std::vector<StepPlan> plans;
    int64_t seen_preempted = 0;  // sequences in state Preempted after a preempting step
    for (StepPlan p; core.step(&p);) {
      if (p.preempted > 0)
        for (uint64_t id : seq_ids) seen_preempted += core.scheduler().state_of(id) == RequestState::Preempted;
      plans.push_back(std::move(p));
    }
    EXPECT_GT(seen_preempted, 0);
    // The newest go first: every sequence preempted in a step (in the plan
    // before, not in this one, back in a later one) is newer than all that stayed.
    auto in = [](const StepPlan& p, uint64_t id) {
      return std::any_of(p.chunks.begin(), p.chunks.end(), [&](const ScheduledChunk& c) { return c.seq_id == id; });
    };
    int64_t preempting_steps = 0;
    for (size_t k = 1; k < plans.size(); ++k) {
      if (plans[k].preempted == 0) continue;
      ++preempting_steps;
      std::vector<uint64_t> gone;
      for (const auto& c : plans[k - 1].chunks)
        if (!in(plans[k], c.seq_id) && std::any_of(plans.begin() + static_cast<std::ptrdiff_t>(k) + 1, plans.end(),
                                                   [&](const StepPlan& p) { return in(p, c.seq_id); }))
          gone.push_back(c.seq_id);
      EXPECT_EQ(static_cast<int64_t>(gone.size()), plans[k].preempted) << k;
      for (uint64_t g : gone)
        for (const auto& c : plans[k].chunks) EXPECT_GT(g, c.seq_id) << k;
    }
    EXPECT_GT(preempting_steps, 0);
    EXPECT_GT(core.metrics().preemptions_total, 0);
    for (size_t i = 0; i < rs.size(); ++i) {
      EXPECT_EQ(rs[i]->finish_reason, FinishReason::Length) << i;
      EXPECT_EQ(rs[i]->completion_tokens, 12) << i;
    }
    expect_as_alone(rs);
    EXPECT_EQ(core.scheduler().blocks_used(), 0);
    EXPECT_EQ(core.metrics().kv_blocks_used, 0);
    EXPECT_EQ(core.metrics().running, 0);
    EXPECT_EQ(core.metrics().generation_tokens_total, 48);
    EXPECT_EQ(core.metrics().prompt_tokens_total, 24);  // once per request, not per recompute
  }
}

// A queued request is dropped when admission reaches it, without running; a
// running one before the next step, its blocks freed and not cached.
TEST(Scheduler, CancelsQueuedAndRunningRequests) {
  FakeRunner runner(32, 4);
  EngineCore core(runner, options(1));  // one at a time: B and C wait behind A
  auto a = request(prompt_of(6, 1), 50), b = request(prompt_of(6, 2), 50), c = request(prompt_of(6, 3), 3);
  core.add(a);
  const uint64_t ib = core.add(b);
  core.add(c);
  std::vector<StepPlan> plans(3);
  for (auto& p : plans) ASSERT_TRUE(core.step(&p));
  EXPECT_EQ(core.metrics().running, 1);
  EXPECT_EQ(core.metrics().waiting, 2);
  EXPECT_EQ(core.scheduler().state_of(ib), RequestState::Waiting);
  b->cancelled = true;  // queued
  a->cancelled = true;  // running
  StepPlan p;
  ASSERT_TRUE(core.step(&p));  // A ends, B is dropped, C runs
  EXPECT_TRUE(a->done);
  EXPECT_EQ(a->finish_reason, FinishReason::Cancelled);
  EXPECT_EQ(a->completion_tokens, 3);
  EXPECT_TRUE(b->done);
  EXPECT_EQ(b->finish_reason, FinishReason::Cancelled);
  EXPECT_EQ(b->completion_tokens, 0);
  EXPECT_EQ(core.scheduler().state_of(ib), RequestState::Finished);
  EXPECT_FALSE(c->done);
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_NE(p.chunks[0].seq_id, ib);
  EXPECT_EQ(core.metrics().waiting, 0);
  EXPECT_EQ(core.metrics().running, 1);
  // Only C holds blocks (two, for its six prompt tokens); A's are free, not cached.
  EXPECT_EQ(core.metrics().kv_blocks_used, 2);
  EXPECT_EQ(core.scheduler().prefix_cache().cached_blocks(), 0);
  c->cancelled = true;
  EXPECT_FALSE(core.step(&p));  // nothing left to run
  EXPECT_EQ(c->finish_reason, FinishReason::Cancelled);
  EXPECT_EQ(runner.blocks().free_blocks(), 32);
  EXPECT_EQ(core.metrics().kv_blocks_used, 0);
  for (const auto& q : plans)
    for (const auto& ch : q.chunks) EXPECT_NE(ch.seq_id, ib);
}

TEST(Scheduler, PrefixCacheHitsShareCorrectBlocks) {
  FakeRunner runner(32, 4);
  EngineCore core(runner, options());
  const auto prompt = prompt_of(13, 5);  // three full blocks and one token
  auto a = request(prompt, 3);
  core.add(a);
  run(core);
  // A fed its 13 prompt tokens and 2 of its 3 replies: 3 full blocks are kept.
  EXPECT_EQ(core.scheduler().prefix_cache().cached_blocks(), 3);
  EXPECT_EQ(core.metrics().kv_blocks_used, 0);  // cached only: free for the taking

  auto b = request(prompt, 3);
  const uint64_t ib = core.add(b);
  StepPlan p;
  ASSERT_TRUE(core.step(&p));
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].seq_id, ib);
  EXPECT_EQ(p.chunks[0].start, 12);  // 12 tokens come from the cache, the last is computed
  EXPECT_EQ(p.chunks[0].ids.size(), 1u);
  run(core);
  EXPECT_EQ(ids(*b), ids(*a));
  EXPECT_EQ(core.metrics().prefix_hit_tokens_total, 12);
  EXPECT_EQ(core.metrics().prefix_query_tokens_total, 26);

  // A prompt that shares the first two blocks only.
  auto c_prompt = prompt;
  c_prompt[9] = (c_prompt[9] + 1) % kVocab;
  auto c = request(c_prompt, 3);
  core.add(c);
  ASSERT_TRUE(core.step(&p));
  EXPECT_EQ(p.chunks[0].start, 8);
  run(core);
  EXPECT_EQ(ids(*c), alone(c_prompt, 3));
  EXPECT_EQ(core.metrics().prefix_hit_tokens_total, 20);

  // Prompt log-probs are computed in full: no hit.
  auto d = request(prompt, 1);
  d->prompt_logprobs = 0;
  core.add(d);
  ASSERT_TRUE(core.step(&p));
  EXPECT_EQ(p.chunks[0].start, 0);
  run(core);
  EXPECT_EQ(ids(*d), std::vector<int32_t>{ids(*a)[0]});
}

// When the pool runs short the oldest cached blocks are evicted first, and a
// request that needs the whole pool still runs.
TEST(Scheduler, PrefixCacheEvictsOldestFirst) {
  FakeRunner runner(16, 4);
  EngineCore core(runner, options());
  const auto pa = prompt_of(13, 1), pe = prompt_of(13, 2);
  auto a = request(pa, 2), e = request(pe, 2);
  core.add(a);
  run(core);
  core.add(e);
  run(core);
  EXPECT_EQ(core.scheduler().prefix_cache().cached_blocks(), 6);  // A's 3, then E's 3
  EXPECT_EQ(runner.blocks().free_blocks(), 10);

  // 49 prompt tokens and one reply fed: 13 blocks, 3 more than are free.
  auto f = request(prompt_of(49, 3), 2);
  core.add(f);
  run(core);
  EXPECT_EQ(ids(*f), alone(f->prompt, 2));

  const int64_t hits = core.metrics().prefix_hit_tokens_total;
  auto e2 = request(pe, 2);
  core.add(e2);
  run(core);
  EXPECT_EQ(core.metrics().prefix_hit_tokens_total - hits, 12);  // E's blocks survived
  EXPECT_EQ(ids(*e2), ids(*e));
  auto a2 = request(pa, 2);
  core.add(a2);
  run(core);
  EXPECT_EQ(core.metrics().prefix_hit_tokens_total - hits, 12);  // A's were evicted: no hit
  EXPECT_EQ(ids(*a2), ids(*a));

  // A prompt that needs every block: everything cached goes.
  auto g = request(prompt_of(62, 4), 2);
  core.add(g);
  run(core);
  EXPECT_EQ(g->finish_reason, FinishReason::Length);
  EXPECT_EQ(ids(*g), alone(g->prompt, 2));
  EXPECT_EQ(core.metrics().kv_blocks_used, 0);
}

// Eviction takes a prefix's first blocks first: what is left of it is never
// attached, since a block is only valid after the blocks before it.
TEST(Scheduler, PartlyEvictedPrefixIsNotReused) {
  FakeRunner runner(16, 4);
  EngineCore core(runner, options());
  const auto pa = prompt_of(13, 1);
  auto a = request(pa, 2);
  core.add(a);
  run(core);
  ASSERT_EQ(core.scheduler().prefix_cache().cached_blocks(), 3);
  auto h = request(prompt_of(53, 6), 2);  // 14 blocks: one of A's goes
  core.add(h);
  run(core);
  ASSERT_EQ(core.scheduler().prefix_cache().cached_blocks(), 2 + 13);
  const int64_t hits = core.metrics().prefix_hit_tokens_total;
  auto a2 = request(pa, 2);
  core.add(a2);
  run(core);
  EXPECT_EQ(core.metrics().prefix_hit_tokens_total, hits);
  EXPECT_EQ(ids(*a2), ids(*a));
}

TEST(Scheduler, FinishReasons) {
  const auto prompt = prompt_of(7, 9);
  const auto want = alone(prompt, 6);
  ASSERT_TRUE(want[0] != want[2] && want[1] != want[2]);  // the stop id below first appears third
  FakeRunner runner(8, 4);
  EngineCore core(runner, options());
  // The third reply token as a stop id: two tokens, then Stop.
  auto s = request(prompt, 6);
  s->stop_ids = {want[2]};
  auto s_emit = request(prompt, 6);
  s_emit->stop_ids = {want[2]};
  s_emit->emit_stop_token = true;
  auto too_big = request(prompt_of(40, 1), 1);  // more than 8 blocks
  core.add(s);
  core.add(s_emit);
  core.add(too_big);
  run(core);
  EXPECT_EQ(s->finish_reason, FinishReason::Stop);
  const auto first_two = std::vector<int32_t>(want.begin(), want.begin() + 2);
  EXPECT_EQ(ids(*s), first_two);
  EXPECT_EQ(s->completion_tokens, 2);
  ASSERT_EQ(s_emit->tokens.size(), 3u);
  EXPECT_TRUE(s_emit->tokens.back().stop);
  EXPECT_EQ(s_emit->completion_tokens, 2);  // the stop token is reported, not counted
  EXPECT_EQ(too_big->finish_reason, FinishReason::Error);
  EXPECT_NE(too_big->error.find("more KV cache"), std::string::npos);
  EXPECT_STREQ(finish_reason_name(FinishReason::Stop), "stop");
  EXPECT_STREQ(finish_reason_name(FinishReason::Cancelled), "cancelled");

  // A failed step ends everything running with its error; the engine goes on.
  auto x = request(prompt, 4), y = request(prompt_of(5, 2), 4);
  core.add(x);
  core.add(y);
  runner.fail_next = true;
  EXPECT_TRUE(core.step());
  EXPECT_EQ(x->finish_reason, FinishReason::Error);
  EXPECT_EQ(y->finish_reason, FinishReason::Error);
  EXPECT_EQ(x->error, "injected failure");
  EXPECT_EQ(core.scheduler().blocks_used(), 0);
  auto z = request(prompt, 6);
  core.add(z);
  run(core);
  EXPECT_EQ(ids(*z), want);

  // Shutdown: what is queued or running ends as cancelled.
  auto q1 = request(prompt, 6), q2 = request(prompt, 6);
  core.add(q1);
  core.step();
  core.add(q2);
  core.cancel_all("server shutting down");
  for (auto* r : {q1.get(), q2.get()}) {
    EXPECT_EQ(r->finish_reason, FinishReason::Cancelled);
    EXPECT_EQ(r->error, "server shutting down");
  }
  EXPECT_FALSE(core.has_work());
}

// n > 1: the forks start from the first choice's prompt blocks (no prefix
// cache involved) and reply as if run alone; the prompt is computed once but
// for the last partial block.
TEST(Scheduler, ForksShareThePromptBlocks) {
  for (bool prefix : {false, true}) {
    FakeRunner runner(64, 4);
    EngineCore core(runner, options(8, 512, prefix));
    auto r = request(prompt_of(18, 3), 5);
    for (int k = 0; k < 2; ++k) r->forks.push_back(request(r->prompt, 5));
    core.add(r);
    run(core);
    const auto want = alone(r->prompt, 5);
    EXPECT_EQ(ids(*r), want);
    for (const auto& f : r->forks) {
      EXPECT_EQ(ids(*f), want);
      EXPECT_EQ(f->finish_reason, FinishReason::Length);
    }
    const EngineMetrics m = core.metrics();
    EXPECT_EQ(m.forked_prompt_tokens_total, 2 * 16);  // (18 - 1) / 4 full blocks each
    // 18 prompt tokens and 4 decodes once, then each fork's last 2 prompt tokens and 4 decodes.
    EXPECT_EQ(m.computed_tokens_total, 18 + 4 + 2 * (2 + 4));
    if (!prefix) EXPECT_EQ(runner.blocks().free_blocks(), 64);  // every shared reference dropped
  }
}

TEST(Scheduler, ForksEndWithACancelledFirstChoice) {
  FakeRunner runner(64, 4);
  EngineCore core(runner, options());
  auto r = request(prompt_of(9, 1), 5);
  r->forks.push_back(request(r->prompt, 5));
  r->cancelled = true;
  core.add(r);
  run(core);
  EXPECT_EQ(r->finish_reason, FinishReason::Cancelled);
  EXPECT_TRUE(r->forks[0]->done);
  EXPECT_EQ(r->forks[0]->finish_reason, FinishReason::Cancelled);
}

// A constraint (structured outputs) and logit_bias act on the row the host samples.
class EvenOnly final : public TokenConstraint {
 public:
  explicit EvenOnly(std::vector<int32_t>* seen) : seen_(seen) {}
  std::span<const uint64_t> allowed() override {
    bits_.assign(1, 0x5555555555555555ull);  // kVocab <= 64: the even ids
    return bits_;
  }
  void accept(int32_t id) override { seen_->push_back(id); }
  std::unique_ptr<TokenConstraint> clone() const override { return std::make_unique<EvenOnly>(seen_); }

 private:
  std::vector<int32_t>* seen_;
  std::vector<uint64_t> bits_;
};

TEST(Scheduler, ConstraintAndLogitBiasShapeTheDraw) {
  FakeRunner runner(64, 4);
  EngineCore core(runner, options());
  std::vector<int32_t> seen;
  auto c = request(prompt_of(6, 2), 8);
  c->constraint = std::make_unique<EvenOnly>(&seen);
  const auto free_reply = alone(c->prompt, 8);
  auto b = request(prompt_of(6, 2), 8);
  b->sampling.logit_bias = {{free_reply[0], -100.0f}};
  core.add(c);
  core.add(b);
  run(core);
  ASSERT_EQ(ids(*c).size(), 8u);
  for (int32_t id : ids(*c)) EXPECT_EQ(id % 2, 0);
  EXPECT_EQ(seen, ids(*c));
  EXPECT_NE(ids(*b)[0], free_reply[0]);  // banned
}

}  // namespace
}  // namespace gf
