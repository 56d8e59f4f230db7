#include "runtime/engine.h"

#include <string>

namespace gf {

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
  std::unique_ptr<Engine> e(new Engine(opt, dec));
  GF_ASSIGN_OR_RETURN(e->runner_, DecoderRunner::create(dec, opt.kv_blocks, opt.block_size));
  e->core_ = std::make_unique<EngineCore>(*e->runner_, opt);
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
  if (!core_) return;
  {
    std::lock_guard<std::mutex> lk(mu_);
    take_inbox();
  }
  core_->cancel_all("server shutting down");
}

Status Engine::submit(const std::shared_ptr<EngineRequest>& r) {
  if (r->prompt.empty()) return Err("the prompt is empty");
  const int64_t need = static_cast<int64_t>(r->prompt.size()) + r->max_tokens;
  if (static_cast<int64_t>(r->prompt.size()) >= max_context())
    return Err("the prompt has " + std::to_string(r->prompt.size()) + " tokens; the context is " + std::to_string(max_context()));
  if (need > max_context())
    r->max_tokens = static_cast<int>(max_context() - static_cast<int64_t>(r->prompt.size()));
  std::lock_guard<std::mutex> lk(mu_);
  if (inbox_.size() + static_cast<size_t>(core_->metrics().waiting) >= opt_.max_waiting) return Err("queue full");
  r->submitted_at = now_seconds();
  for (auto& f : r->forks) {  // the other choices of n > 1 (same prompt)
    f->max_tokens = r->max_tokens;
    f->submitted_at = r->submitted_at;
  }
  inbox_.push_back(r);
  ++requests_total_;
  cv_.notify_one();
  return Ok();
}

EngineMetrics Engine::metrics() const {
  std::lock_guard<std::mutex> lk(mu_);
  EngineMetrics m = core_->metrics();
  m.waiting += static_cast<int64_t>(inbox_.size());
  m.requests_total = requests_total_;
  return m;
}

void Engine::take_inbox() {
  if (inbox_.empty()) return;
  while (!inbox_.empty()) {
    core_->add(std::move(inbox_.front()));
    inbox_.pop_front();
  }
  core_->publish();  // the waiting count moves with them: submit() sees it at once
}

void Engine::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return quit_ || !inbox_.empty() || core_->has_work(); });
      if (quit_) return;
      take_inbox();
    }
    std::lock_guard<std::mutex> step(step_mu_);
    core_->step();
  }
}

}  // namespace gf
