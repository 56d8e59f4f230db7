#include "runtime/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>


namespace gf {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

EngineOptions engine_options(int64_t kv_tokens, int parallel, int64_t chunk, size_t max_waiting) {
  EngineOptions eo;
  eo.block_size = 16;
  eo.kv_blocks = (kv_tokens + eo.block_size - 1) / eo.block_size;
  eo.max_running = parallel;
  eo.max_waiting = max_waiting;
  eo.max_step_tokens = chunk;
  return eo;
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

  return m;
}

namespace {
uint64_t chain_hash(uint64_t h, const int32_t* t, int n) {
  for (int i = 0; i < n; ++i) {
    h ^= static_cast<uint32_t>(t[i]) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdull;
  }
  return h;
}
}  // namespace

void Engine::attach_cached_prefix(Seq& s) {
  // A request that wants every prompt token's log-prob computes them all.
  if (!opt_.prefix_caching || !s.state.blocks.empty() || s.wants_prompt_logits()) return;
  const int bs = cache_->block_size();
  // Leave at least one prompt token to compute: its logits start the reply.
  const int64_t full = (static_cast<int64_t>(s.tokens.size()) - 1) / bs;
  uint64_t h = 0x12345;
  for (int64_t b = 0; b < full; ++b) {
    h = chain_hash(h, s.tokens.data() + b * bs, bs);
    auto it = prefix_blocks_.find(h);
    if (it == prefix_blocks_.end()) break;
    cache_->retain(it->second);
    s.state.blocks.push_back(it->second);
  }
  s.state.length = static_cast<int64_t>(s.state.blocks.size()) * bs;
}

void Engine::remember_blocks(const Seq& s) {
  if (!opt_.prefix_caching) return;
  const int bs = cache_->block_size();
  const int64_t full = std::min<int64_t>(s.state.length, static_cast<int64_t>(s.tokens.size())) / bs;
  uint64_t h = 0x12345;
  for (int64_t b = 0; b < full && b < static_cast<int64_t>(s.state.blocks.size()); ++b) {
    h = chain_hash(h, s.tokens.data() + b * bs, bs);
    if (prefix_blocks_.count(h)) continue;
    const int32_t block = s.state.blocks[static_cast<size_t>(b)];
    cache_->retain(block);
    prefix_blocks_[h] = block;
    prefix_lru_.push_back(h);
  }
}

bool Engine::evict_cached(int64_t blocks_needed) {
  // Drop the oldest cached prefixes until enough blocks are free.
  while (cache_->free_blocks() < blocks_needed && !prefix_lru_.empty()) {
    const uint64_t h = prefix_lru_.front();
    prefix_lru_.pop_front();
    auto it = prefix_blocks_.find(h);
    if (it == prefix_blocks_.end()) continue;
    cache_->release_block(it->second);
    prefix_blocks_.erase(it);
  }
  return cache_->free_blocks() >= blocks_needed;
}

void Engine::update_usage() {
  // Blocks held only by the prefix cache are free for the taking: not "used".
  int64_t cache_only = 0;
  for (const auto& [h, b] : prefix_blocks_)
    if (cache_->refcount(b) == 1) ++cache_only;
  std::lock_guard<std::mutex> lk(mu_);
  m_.running = static_cast<int64_t>(running_.size());
  m_.kv_blocks_used = cache_->num_blocks() - cache_->free_blocks() - cache_only;
  m_.prefix_cached_blocks = static_cast<int64_t>(prefix_blocks_.size());
}

void Engine::finish(Seq& s, const std::string& reason, const std::string& error) {
  if (reason == "stop" || reason == "length") remember_blocks(s);
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
      if (s->req->prompt_logprobs >= 0) {  // the first prompt token has no log-prob
        std::lock_guard<std::mutex> rl(s->req->mu);
        s->req->prompt_lp.assign(1, EngineRequest::Token{s->req->prompt[0], std::nanf(""), {}});
        s->prompt_lp_done = 1;
      }
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
    const int64_t need_total = blocks_for(static_cast<int64_t>(s->tokens.size()) + 1);
    if (need_total > cache_->num_blocks()) {
      finish(*s, "error", "the request needs more KV cache than the server has");
      std::lock_guard<std::mutex> lk(mu_);
      waiting_.pop_front();
      continue;
    }
    attach_cached_prefix(*s);
    const int64_t need = need_total - static_cast<int64_t>(s->state.blocks.size());
    if (need + reserved > cache_->free_blocks() && !evict_cached(need + reserved) && !running_.empty()) {
      cache_->release(s->state);  // give the shared prefix back; it is attached again next time
      break;
    }
    reserved += need;
    std::lock_guard<std::mutex> lk(mu_);
    if (opt_.prefix_caching && !s->wants_prompt_logits()) {  // counted once per admission, not per attempt
      m_.prefix_query_tokens_total += static_cast<int64_t>(s->tokens.size());
      m_.prefix_hit_tokens_total += s->state.length;
    }
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  update_usage();
  if (running_.empty()) return false;

  // Build the step: decodes first (one token each), then prefill chunks within the budget.
  // Prompts whose every token's log-prob is wanted run through forward_batch
  // (all logits come back, a row of the vocabulary per token: 1 MB for
  // Gemma 3), at most kLogitRows tokens of them per step so that the step's
  // memory stays bounded; the first of them always gets some. The rest end in
  // the backend's sampling op.
  constexpr int64_t kLogitRows = 64;
  auto plan = [&] {  // tokens each running sequence feeds this step
    std::vector<int64_t> takes;
    int64_t budget = opt_.max_step_tokens, logit_rows = kLogitRows;
    for (auto& s : running_) {
      const int64_t todo = static_cast<int64_t>(s->tokens.size()) - s->state.length + (s->pending >= 0 ? 1 : 0);
      int64_t take = std::min<int64_t>(todo, std::max<int64_t>(1, budget));
      if (s->wants_prompt_logits()) {
        take = std::min(take, logit_rows);
        logit_rows -= take;
      }
      budget -= take;
      takes.push_back(take);
    }
    return takes;
  };
  std::vector<int64_t> takes;
  for (;;) {
    takes = plan();
    int64_t need = 0;
    for (size_t i = 0; i < running_.size(); ++i)
      need += std::max<int64_t>(0, blocks_for(running_[i]->state.length + takes[i]) - static_cast<int64_t>(running_[i]->state.blocks.size()));
    if (need <= cache_->free_blocks() || evict_cached(need) || running_.size() == 1) break;
    preempt_newest();
  }
  std::vector<SeqStep> steps, lp_steps;
  std::vector<Seq*> owners, lp_owners;
  std::vector<int64_t> lp_start;
  std::vector<RowSampling> rows;
  rows.reserve(running_.size());  // steps point into it
  for (size_t i = 0; i < running_.size(); ++i) {
    auto& s = running_[i];
    const int64_t take = takes[i];
    if (s->pending >= 0) {
      s->tokens.push_back(s->pending);
      s->pending = -1;
    }
    const int64_t todo = static_cast<int64_t>(s->tokens.size()) - s->state.length;
    if (todo <= 0 || take <= 0) continue;  // nothing to feed, or no logit rows left this step
    SeqStep st;
    st.seq = &s->state;
    st.ids.assign(s->tokens.begin() + s->state.length, s->tokens.begin() + s->state.length + take);
    if (s->wants_prompt_logits()) {
      st.all_logits = true;
      lp_start.push_back(s->state.length);
      lp_steps.push_back(std::move(st));
      lp_owners.push_back(s.get());
      continue;
    }
    if (take == todo) {  // the prompt (or the last token) is complete: pick the next token
      rows.push_back(s->sampler->row(static_cast<uint64_t>(s->generated), s->req->top_logprobs));
      st.sampling = &rows.back();
    }
    steps.push_back(std::move(st));
    owners.push_back(s.get());
  }
  const int64_t V = dec_.spec().vocab_size;
  // (owner, picked token) of every sequence whose step ended in a pick.
  std::vector<std::pair<Seq*, SampledToken>> results;
  Status failed = Ok();
  if (!steps.empty()) {
    auto picked = dec_.forward_batch_sample(*cache_, steps);
    if (!picked.ok()) failed = picked.status();
    else
      for (size_t i = 0; i < owners.size(); ++i)
        if (steps[i].sampling) results.emplace_back(owners[i], std::move((*picked)[i]));
  }
  if (failed.ok() && !lp_steps.empty()) {
    auto logits = dec_.forward_batch(*cache_, lp_steps);
    if (!logits.ok()) failed = logits.status();
    else
      for (size_t i = 0; i < lp_owners.size(); ++i) {
        Seq& s = *lp_owners[i];
        const std::vector<float>& lg = (*logits)[i];
        const int64_t n = static_cast<int64_t>(lp_steps[i].ids.size());
        const int64_t P = static_cast<int64_t>(s.req->prompt.size());
        std::vector<EngineRequest::Token> got;
        for (int64_t j = 0; j < n; ++j) {
          const int64_t e = lp_start[i] + j + 1;  // row j scores the token after it
          if (e != s.prompt_lp_done + static_cast<int64_t>(got.size()) || e >= P) continue;  // recomputed after a preemption, or past the prompt
          SampledToken t;
          t.id = s.req->prompt[static_cast<size_t>(e)];
          fill_logprobs(lg.data() + j * V, V, s.req->prompt_logprobs, t);
          got.push_back({t.id, t.logprob, std::move(t.top)});
        }
        if (!got.empty()) {
          std::lock_guard<std::mutex> lk(s.req->mu);
          for (auto& t : got) s.req->prompt_lp.push_back(std::move(t));
          s.prompt_lp_done = static_cast<int64_t>(s.req->prompt_lp.size());
          s.req->cv.notify_all();
        }
        if (s.state.length == static_cast<int64_t>(s.tokens.size())) {  // all fed: the last row picks the next token on the host
          SampledToken t;
          t.logits.assign(lg.end() - V, lg.end());
          results.emplace_back(&s, std::move(t));
        }
      }
  }
  if (!failed.ok()) {
    for (auto& s : running_) finish(*s, "error", failed.message());
    running_.clear();
    return true;
  }
  for (auto& [sp, p] : results) {
    Seq& s = *sp;
    if (s.generated == 0 && s.history.empty()) s.history = s.req->prompt;
    if (s.req->max_tokens <= 0) {  // prompt log-probs only: nothing is generated
      std::lock_guard<std::mutex> lk(mu_);
      m_.prompt_tokens_total += static_cast<int64_t>(s.req->prompt.size());
      s.pending = -3;
      continue;
    }
    if (p.id < 0) {  // the host samples this row (penalties, or past the backend's candidate window)
      // Log-probs are of the model's distribution (before the penalties change the row).
      std::vector<float> copy;
      if (s.req->top_logprobs >= 0) copy = p.logits;
      p.id = s.sampler->sample(p.logits.data(), V, s.history, static_cast<uint64_t>(s.generated));
      fill_logprobs(copy.data(), V, s.req->top_logprobs, p);
    }
    EngineRequest::Token tok{p.id, p.logprob, std::move(p.top)};
    s.history.push_back(tok.id);
    ++s.generated;
    const bool is_stop = std::find(s.req->stop_ids.begin(), s.req->stop_ids.end(), tok.id) != s.req->stop_ids.end();
    {
      std::lock_guard<std::mutex> lk(s.req->mu);
      if (!is_stop) {
        s.req->tokens.push_back(std::move(tok));
        ++s.req->completion_tokens;
      } else if (s.req->emit_stop_token) {
        tok.stop = true;
        s.req->tokens.push_back(std::move(tok));
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
  update_usage();
  return true;
}

}  // namespace gf
