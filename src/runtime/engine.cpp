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
  if (!opt_.prefix_caching || !s.state.blocks.empty()) return;
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
  std::lock_guard<std::mutex> lk(mu_);
  m_.prefix_hit_tokens_total += s.state.length;
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
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  update_usage();
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
    if (need <= cache_->free_blocks() || evict_cached(need) || running_.size() == 1) break;
    preempt_newest();
  }
  std::vector<SeqStep> steps;
  std::vector<Seq*> owners;
  std::vector<RowSampling> rows;
  rows.reserve(running_.size());  // steps point into it
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
    if (take == todo) {  // the prompt (or the last token) is complete: pick the next token
      rows.push_back(s->sampler->row(static_cast<uint64_t>(s->generated), s->req->top_logprobs));
      st.sampling = &rows.back();
    }
    steps.push_back(std::move(st));
    owners.push_back(s.get());
  }
  auto picked = dec_.forward_batch_sample(*cache_, steps);
  if (!picked.ok()) {
    for (auto& s : running_) finish(*s, "error", picked.message());
    running_.clear();
    return true;
  }
  const int64_t V = dec_.spec().vocab_size;
  for (size_t i = 0; i < owners.size(); ++i) {
    Seq& s = *owners[i];
    if (!steps[i].sampling) continue;  // prefill not finished
    if (s.generated == 0 && s.history.empty()) s.history = s.req->prompt;
    SampledToken& p = (*picked)[i];
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
