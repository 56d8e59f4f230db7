#include "runtime/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "runtime/logprobs.h"

namespace gf {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Result<std::unique_ptr<Engine>> Engine::create(Decoder& dec, const EngineOptions& opt) {
  std::unique_ptr<Engine> e(new Engine(dec, opt));
  GF_ASSIGN_OR_RETURN(e->cache_, dec.new_paged_cache(opt.kv_blocks, opt.block_size));
  e->m_.kv_blocks_total = opt.kv_blocks;
  e->thread_ = std::thread([p = e.get()] { p->loop(); });
  return e;
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (auto& s : running_) finish(*s, "cancelled", "server shutting down");
  for (auto& s : waiting_) finish(*s, "cancelled", "server shutting down");
}

int64_t Engine::max_context() const {
  return std::min<int64_t>(cache_->capacity_tokens(), dec_.spec().max_position_embeddings);
}

Status Engine::submit(const std::shared_ptr<EngineRequest>& r) {
  if (r->prompt.empty()) return Err("the prompt is empty");
  const int64_t need = static_cast<int64_t>(r->prompt.size()) + r->max_tokens;
  if (static_cast<int64_t>(r->prompt.size()) >= max_context())
    return Err("the prompt has " + std::to_string(r->prompt.size()) + " tokens; the context is " + std::to_string(max_context()));
  if (need > max_context())
    r->max_tokens = static_cast<int>(max_context() - static_cast<int64_t>(r->prompt.size()));
  std::lock_guard<std::mutex> lk(mu_);
  if (incoming_.size() + waiting_.size() >= opt_.max_waiting) return Err("queue full");
  r->submitted_at = now_seconds();
  incoming_.push_back(r);
  ++m_.requests_total;
  cv_.notify_one();
  return Ok();
}

EngineMetrics Engine::metrics() const {
  std::lock_guard<std::mutex> lk(mu_);
  EngineMetrics m = m_;
  m.waiting = static_cast<int64_t>(incoming_.size() + waiting_.size());
  m.kv_blocks_used = cache_->num_blocks() - cache_->free_blocks();
  return m;
}

void Engine::finish(Seq& s, const std::string& reason, const std::string& error) {
  cache_->release(s.state);
  std::lock_guard<std::mutex> lk(s.req->mu);
  s.req->done = true;
  s.req->finish_reason = reason;
  s.req->error = error;
  s.req->finished_at = now_seconds();
  s.req->cv.notify_all();
}

void Engine::preempt_newest() {
  // Free the newest request's blocks; it will be recomputed from its tokens.
  auto s = std::move(running_.back());
  running_.pop_back();
  cache_->release(s->state);
  if (s->pending >= 0) {
    s->tokens.push_back(s->pending);
    s->pending = -1;
  }
  ++m_.preemptions_total;
  waiting_.push_front(std::move(s));
}

void Engine::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return quit_ || !incoming_.empty() || !waiting_.empty() || !running_.empty(); });
      if (quit_) return;
    }
    step();
  }
}

bool Engine::step() {
  const int bs = cache_->block_size();
  auto blocks_for = [&](int64_t tokens) { return (tokens + bs - 1) / bs; };
  // Drop cancelled requests.
  for (size_t i = 0; i < running_.size();) {
    if (running_[i]->req->cancelled.load()) {
      finish(*running_[i], "cancelled");
      running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
  // Admit: preempted first, then new requests, while blocks and slots allow.
  {
    std::lock_guard<std::mutex> lk(mu_);
    while (!incoming_.empty()) {
      auto s = std::make_unique<Seq>();
      s->req = incoming_.front();
      s->tokens = s->req->prompt;
      s->sampler = std::make_unique<Sampler>(s->req->sampling);
      waiting_.push_back(std::move(s));
      incoming_.pop_front();
    }
  }
  int64_t reserved = 0;
  for (auto& s : running_) reserved += std::max<int64_t>(0, blocks_for(static_cast<int64_t>(s->tokens.size()) + 1) - static_cast<int64_t>(s->state.blocks.size()));
  while (!waiting_.empty() && static_cast<int>(running_.size()) < opt_.max_running) {
    auto& s = waiting_.front();
    if (s->req->cancelled.load()) {
      finish(*s, "cancelled");
      std::lock_guard<std::mutex> lk(mu_);
      waiting_.pop_front();
      continue;
    }
    const int64_t need = blocks_for(static_cast<int64_t>(s->tokens.size()) + 1);
    if (need > cache_->num_blocks()) {
      finish(*s, "error", "the request needs more KV cache than the server has");
      std::lock_guard<std::mutex> lk(mu_);
      waiting_.pop_front();
      continue;
    }
    if (need + reserved > cache_->free_blocks() && !running_.empty()) break;
    reserved += need;
    std::lock_guard<std::mutex> lk(mu_);
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    m_.running = static_cast<int64_t>(running_.size());
  }
  if (running_.empty()) return false;

  // Build the step: decodes first (one token each), then prefill chunks within the budget.
  for (;;) {
    int64_t need = 0, budget = opt_.max_step_tokens;
    for (auto& s : running_) {
      const int64_t todo = static_cast<int64_t>(s->tokens.size()) - s->state.length + (s->pending >= 0 ? 1 : 0);
      const int64_t take = std::min<int64_t>(todo, std::max<int64_t>(1, budget));
      budget -= take;
      need += std::max<int64_t>(0, blocks_for(s->state.length + take) - static_cast<int64_t>(s->state.blocks.size()));
    }
    if (need <= cache_->free_blocks() || running_.size() == 1) break;
    preempt_newest();
  }
  std::vector<SeqStep> steps;
  std::vector<Seq*> owners;
  int64_t budget = opt_.max_step_tokens;
  for (auto& s : running_) {
    if (s->pending >= 0) {
      s->tokens.push_back(s->pending);
      s->pending = -1;
    }
    const int64_t todo = static_cast<int64_t>(s->tokens.size()) - s->state.length;
    if (todo <= 0) continue;
    const int64_t take = std::min<int64_t>(todo, std::max<int64_t>(1, budget));
    budget -= take;
    SeqStep st;
    st.seq = &s->state;
    st.ids.assign(s->tokens.begin() + s->state.length, s->tokens.begin() + s->state.length + take);
    steps.push_back(std::move(st));
    owners.push_back(s.get());
  }
  auto logits = dec_.forward_batch(*cache_, steps);
  if (!logits.ok()) {
    for (auto& s : running_) finish(*s, "error", logits.message());
    running_.clear();
    return true;
  }
  const int64_t V = dec_.spec().vocab_size;
  for (size_t i = 0; i < owners.size(); ++i) {
    Seq& s = *owners[i];
    if (s.state.length < static_cast<int64_t>(s.tokens.size())) continue;  // prefill not finished
    if (s.generated == 0 && s.history.empty()) s.history = s.req->prompt;
    float* row = (*logits)[i].data();
    EngineRequest::Token tok{};
    // Log-probs are of the model's distribution (before sampling transforms).
    double lse = 0;
    if (s.req->top_logprobs >= 0) {
      lse = log_sum_exp(row, V);
      for (auto& [id, lp] : top_logprobs(row, V, s.req->top_logprobs)) tok.top.emplace_back(id, static_cast<float>(lp));
    }
    std::vector<float> copy;
    if (s.req->top_logprobs >= 0) copy.assign(row, row + V);
    tok.id = s.sampler->sample(row, V, s.history);
    if (s.req->top_logprobs >= 0) tok.logprob = static_cast<float>(copy[static_cast<size_t>(tok.id)] - lse);
    s.history.push_back(tok.id);
    ++s.generated;
    const bool is_stop = std::find(s.req->stop_ids.begin(), s.req->stop_ids.end(), tok.id) != s.req->stop_ids.end();
    {
      std::lock_guard<std::mutex> lk(s.req->mu);
      if (!is_stop) {
        s.req->tokens.push_back(std::move(tok));
        ++s.req->completion_tokens;
      }
      if (s.req->first_token_at == 0) s.req->first_token_at = now_seconds();
      s.req->cv.notify_all();
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      ++m_.generation_tokens_total;
      if (s.generated == 1) m_.prompt_tokens_total += static_cast<int64_t>(s.req->prompt.size());
    }
    if (is_stop) s.pending = -2;  // marker: finish below
    else if (s.generated >= s.req->max_tokens) s.pending = -3;
    else s.pending = s.history.back();
  }
  for (size_t i = 0; i < running_.size();) {
    Seq& s = *running_[i];
    if (s.pending == -2 || s.pending == -3) {
      finish(s, s.pending == -2 ? "stop" : "length");
      running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
  std::lock_guard<std::mutex> lk(mu_);
  m_.running = static_cast<int64_t>(running_.size());
  return true;
}

}  // namespace gf
