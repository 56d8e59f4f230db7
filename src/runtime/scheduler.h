// The scheduler of the serving engine (vLLM's split: schedule() -> the model
// runner executes the plan -> output processing -> retire_finished()). It owns
// the waiting and running queues, the per-step token budget, preemption and
// the prefix cache, and does the block accounting on a BlockPool: it knows
// nothing of the model, so a fake runner can drive it in tests.
//
// Each step mixes decode tokens of running requests with chunks of waiting
// prompts (chunked prefill, bounded by the token budget), so a long prompt
// never stalls running decodes. When the cache runs short, the newest running
// request is preempted (its blocks freed) and re-queued to be recomputed from
// its tokens later: nothing is dropped. One thread (the engine's) calls it.
#pragma once
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/sampling.h"
#include "model/block_pool.h"
#include "runtime/prefix_cache.h"
#include "runtime/request.h"
#include "runtime/sampler.h"

namespace gf {

// The scheduler's record of one request.
struct Sequence {
  Sequence(uint64_t id, std::shared_ptr<EngineRequest> r);
  uint64_t id;
  std::shared_ptr<EngineRequest> req;
  RequestState state = RequestState::Waiting;
  SeqState kv;
  std::vector<int32_t> tokens;   // prompt + generated tokens fed or to feed (what must be in the cache)
  std::vector<int32_t> history;  // what the penalties look at
  int64_t generated = 0;
  Sampler sampler;
  std::optional<int32_t> pending;  // sampled, not yet fed
  int64_t prompt_lp_done = 0;      // entries of req->prompt_lp filled (prompt_logprobs >= 0)
  FinishReason finish = FinishReason::None;  // set by output processing; retire_finished() ends it
  // n > 1: the other choices, waiting for this sequence's prompt to be in the cache.
  std::vector<std::unique_ptr<Sequence>> forks;
  bool forked = false;  // this choice starts from a sibling's blocks

  bool wants_prompt_logits() const {
    return req->prompt_logprobs >= 0 && prompt_lp_done < static_cast<int64_t>(req->prompt.size());
  }
};

// One sequence's part of a step: `ids` appended to its cache at `start`.
struct ScheduledChunk {
  Sequence* seq = nullptr;  // valid until retire_finished()
  uint64_t seq_id = 0;
  SeqState* kv = nullptr;   // the block table the runner writes (seq->kv)
  int64_t start = 0;
  std::vector<int32_t> ids;
  // Every position's logits come back (prompt log-probs), not a picked token.
  bool all_logits = false;
  // The chunk feeds the last known token: the token after it is picked
  // (by `sampling`, or on the host from the last logits row with all_logits).
  bool picks = false;
  RowSampling sampling;
};

struct StepPlan {
  std::vector<ScheduledChunk> chunks;  // decodes and prefill chunks, in running order
  int64_t num_tokens = 0;
  int64_t preempted = 0;  // sequences preempted to make the step fit
};

class Scheduler {
 public:
  // Prompts whose every token's log-prob is wanted bring all their logits
  // back (a vocabulary row per token: 1 MB for Gemma 3): at most this many
  // such rows per step, so the step's memory stays bounded.
  static constexpr int64_t kLogitRows = 64;

  // Counters go to `metrics` (preemptions, prefix-cache queries and hits).
  Scheduler(BlockPool& pool, const EngineOptions& opt, EngineMetrics& metrics);

  // Queues a request (behind preempted ones); returns the id its chunks carry.
  uint64_t add(std::shared_ptr<EngineRequest> r);
  // Ends cancelled running requests, then admits waiting ones, preempted
  // first, while slots and blocks allow (a cancelled waiting request ends
  // when admission reaches it).
  void admit();
  // The tokens each running sequence feeds this step: decodes first, then
  // prefill chunks within the budget. Preempts the newest sequences until the
  // step's blocks fit (the last running one always stays).
  StepPlan schedule();
  // Ends the sequences output processing finished (their full blocks go to the prefix cache).
  void retire_finished();
  // The step failed: every running request ends with this error.
  void fail_running(const std::string& error);
  // Every request, running or waiting, ends as cancelled.
  void cancel_all(const std::string& error);

  bool has_work() const { return !waiting_.empty() || !running_.empty(); }
  bool has_running() const { return !running_.empty(); }
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  // Where sequence `id` is (Finished once it has left the scheduler).
  RequestState state_of(uint64_t id) const;
  // Blocks held by sequences (blocks only the prefix cache holds are free for the taking).
  int64_t blocks_used() const;
  const PrefixCache& prefix_cache() const { return prefix_; }

 private:
  void finish(Sequence& s, FinishReason reason, const std::string& error = "");
  // s's prompt is in the cache: its forks share its full prompt blocks (read
  // only from now on, so no copy is needed) and queue to compute the rest,
  // at most a block, themselves (scheduler_fork.cpp).
  void fork(Sequence& s);
  // s ends before it forked: its forks end the same way (or fork, if it ended normally).
  void end_forks(Sequence& s, FinishReason reason, const std::string& error);
  void preempt_newest();
  std::vector<int64_t> split_budget() const;
  int64_t blocks_needed(const std::vector<int64_t>& takes) const;

  BlockPool& pool_;
  EngineOptions opt_;
  EngineMetrics& m_;
  PrefixCache prefix_;
  uint64_t next_id_ = 1;
  std::deque<std::unique_ptr<Sequence>> waiting_;  // preempted sequences first
  std::vector<std::unique_ptr<Sequence>> running_;
};

}  // namespace gf
