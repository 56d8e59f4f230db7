#include "runtime/scheduler.h"

#include <algorithm>
#include <cmath>

namespace gf {

Sequence::Sequence(uint64_t i, std::shared_ptr<EngineRequest> r) : id(i), req(std::move(r)), tokens(req->prompt), sampler(req->sampling) {}

Scheduler::Scheduler(BlockPool& pool, const EngineOptions& opt, EngineMetrics& metrics)
    : pool_(pool), opt_(opt), m_(metrics), prefix_(pool) {}

uint64_t Scheduler::add(std::shared_ptr<EngineRequest> r) {
  auto s = std::make_unique<Sequence>(next_id_++, std::move(r));
  for (auto& f : s->req->forks) s->forks.push_back(std::make_unique<Sequence>(next_id_++, f));
  if (s->req->prompt_logprobs >= 0) {  // the first prompt token has no log-prob
    std::lock_guard<std::mutex> lk(s->req->mu);
    s->req->prompt_lp.assign(1, EngineRequest::Token{s->req->prompt[0], std::nanf(""), {}});
    s->prompt_lp_done = 1;
  }
  const uint64_t id = s->id;
  waiting_.push_back(std::move(s));
  return id;
}

void Scheduler::finish(Sequence& s, FinishReason reason, const std::string& error) {
  if (!s.forks.empty()) end_forks(s, reason, error);
  if (opt_.prefix_caching && (reason == FinishReason::Stop || reason == FinishReason::Length))
    prefix_.remember(s.tokens, s.kv, s.req->adapter);
  pool_.release(s.kv);
  s.state = RequestState::Finished;
  s.finish = reason;
  complete_request(*s.req, reason, error);
}

void Scheduler::admit() {
  for (size_t i = 0; i < running_.size();) {
    if (running_[i]->req->cancelled.load()) {
      finish(*running_[i], FinishReason::Cancelled);
      running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
  // Blocks the running sequences will still claim: their prompts and one more token.
  int64_t reserved = 0;
  for (auto& s : running_)
    reserved += std::max<int64_t>(0, pool_.blocks_for(static_cast<int64_t>(s->tokens.size()) + 1) - static_cast<int64_t>(s->kv.blocks.size()));
  while (!waiting_.empty() && static_cast<int>(running_.size()) < opt_.max_running) {
    Sequence& s = *waiting_.front();
    if (s.req->cancelled.load()) {
      finish(s, FinishReason::Cancelled);
      waiting_.pop_front();
      continue;
    }
    const int64_t need_total = pool_.blocks_for(static_cast<int64_t>(s.tokens.size()) + 1);
    if (need_total > pool_.num_blocks()) {
      finish(s, FinishReason::Error, "the request needs more KV cache than the server has");
      waiting_.pop_front();
      continue;
    }
    // A request that wants every prompt token's log-prob computes them all.
    const bool cacheable = opt_.prefix_caching && !s.wants_prompt_logits();
    if (cacheable && s.kv.blocks.empty()) prefix_.attach(s.tokens, s.kv, s.req->adapter);
    const int64_t need = need_total - static_cast<int64_t>(s.kv.blocks.size());
    // With nothing running it is admitted anyway: waiting would not free anything.
    if (need + reserved > pool_.free_blocks() && !prefix_.evict(need + reserved) && !running_.empty()) {
      pool_.release(s.kv);  // give the shared prefix back; it is attached again next time
      break;
    }
    reserved += need;
    if (cacheable && !s.forked) {  // counted once per admission, not per attempt
      m_.prefix_query_tokens_total += static_cast<int64_t>(s.tokens.size());
      m_.prefix_hit_tokens_total += s.kv.length;
    }
    s.state = RequestState::Running;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
}

std::vector<int64_t> Scheduler::split_budget() const {
  std::vector<int64_t> takes;
  int64_t budget = opt_.max_step_tokens, logit_rows = kLogitRows;
  for (const auto& s : running_) {
    const int64_t todo = static_cast<int64_t>(s->tokens.size()) - s->kv.length + (s->pending ? 1 : 0);
    // Every sequence feeds at least one token (its decode), budget or not.
    int64_t take = std::min<int64_t>(todo, std::max<int64_t>(1, budget));
    if (s->wants_prompt_logits()) {  // the first of them always gets some rows
      take = std::min(take, logit_rows);
      logit_rows -= take;
    }
    budget -= take;
    takes.push_back(take);
  }
  return takes;
}

int64_t Scheduler::blocks_needed(const std::vector<int64_t>& takes) const {
  int64_t need = 0;
  for (size_t i = 0; i < running_.size(); ++i)
    need += std::max<int64_t>(0, pool_.blocks_for(running_[i]->kv.length + takes[i]) - static_cast<int64_t>(running_[i]->kv.blocks.size()));
  return need;
}

void Scheduler::preempt_newest() {
  auto s = std::move(running_.back());
  running_.pop_back();
  pool_.release(s->kv);
  if (s->pending) {  // recomputed with the rest of its tokens
    s->tokens.push_back(*s->pending);
    s->pending.reset();
  }
  s->state = RequestState::Preempted;
  ++m_.preemptions_total;
  waiting_.push_front(std::move(s));
}

StepPlan Scheduler::schedule() {
  StepPlan plan;
  if (running_.empty()) return plan;
  std::vector<int64_t> takes;
  for (;;) {
    takes = split_budget();
    const int64_t need = blocks_needed(takes);
    if (need <= pool_.free_blocks() || prefix_.evict(need) || running_.size() == 1) break;
    preempt_newest();
    ++plan.preempted;
  }
  for (size_t i = 0; i < running_.size(); ++i) {
    Sequence& s = *running_[i];
    if (s.pending) {
      s.tokens.push_back(*s.pending);
      s.pending.reset();
    }
    const int64_t todo = static_cast<int64_t>(s.tokens.size()) - s.kv.length;
    if (todo <= 0 || takes[i] <= 0) continue;  // nothing to feed, or no logit rows left this step
    ScheduledChunk c;
    c.seq = &s;
    c.seq_id = s.id;
    c.kv = &s.kv;
    c.start = s.kv.length;
    c.ids.assign(s.tokens.begin() + s.kv.length, s.tokens.begin() + s.kv.length + takes[i]);
    c.all_logits = s.wants_prompt_logits();
    c.picks = takes[i] == todo;
    if (c.picks && !c.all_logits) {
      c.sampling = s.sampler.row(static_cast<uint64_t>(s.generated), s.req->top_logprobs);
      if (s.req->constraint && s.req->top_logprobs >= 0) {
        c.sampling.host = true;  // log-probs are of the unconstrained row: the host masks its copy
      } else if (s.req->constraint) {
        const auto allowed = s.req->constraint->allowed();  // the backend masks the row
        c.sampling.allowed = allowed.data();
        c.sampling.allowed_words = static_cast<int64_t>(allowed.size());
      }
    }
    plan.num_tokens += takes[i];
    plan.chunks.push_back(std::move(c));
  }
  return plan;
}

void Scheduler::retire_finished() {
  for (auto& s : running_)
    if (!s->forks.empty() && s->kv.length >= static_cast<int64_t>(s->req->prompt.size())) fork(*s);
  for (size_t i = 0; i < running_.size();) {
    Sequence& s = *running_[i];
    if (s.finish != FinishReason::None) {
      finish(s, s.finish);
      running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
}

void Scheduler::fail_running(const std::string& error) {
  for (auto& s : running_) finish(*s, FinishReason::Error, error);
  running_.clear();
}

void Scheduler::cancel_all(const std::string& error) {
  for (auto& s : running_) finish(*s, FinishReason::Cancelled, error);
  for (auto& s : waiting_) finish(*s, FinishReason::Cancelled, error);
  running_.clear();
  waiting_.clear();
}

RequestState Scheduler::state_of(uint64_t id) const {
  for (const auto& s : running_)
    if (s->id == id) return s->state;
  for (const auto& s : waiting_)
    if (s->id == id) return s->state;
  return RequestState::Finished;
}

int64_t Scheduler::blocks_used() const {
  return pool_.num_blocks() - pool_.free_blocks() - prefix_.idle_blocks();
}

}  // namespace gf
