#include "runtime/engine_core.h"

namespace gf {

EngineCore::EngineCore(ModelRunner& runner, const EngineOptions& opt)
    : runner_(runner), sched_(runner.blocks(), opt, live_), out_(live_) {
  live_.kv_blocks_total = runner.blocks().num_blocks();
  publish();
}

bool EngineCore::step(StepPlan* ran) {
  sched_.admit();
  publish();
  if (!sched_.has_running()) return false;
  StepPlan plan = sched_.schedule();
  live_.computed_tokens_total += plan.num_tokens;
  auto out = runner_.execute(plan);
  if (out.ok()) {
    out_.process(plan, *out);
    sched_.retire_finished();
  } else {
    sched_.fail_running(out.message());
  }
  publish();
  if (ran) *ran = std::move(plan);
  return true;
}

void EngineCore::cancel_all(const std::string& why) {
  sched_.cancel_all(why);
  publish();
}

void EngineCore::publish() {
  live_.running = sched_.num_running();
  live_.waiting = sched_.num_waiting();
  live_.kv_blocks_used = sched_.blocks_used();
  live_.prefix_cached_blocks = sched_.prefix_cache().cached_blocks();
  std::lock_guard<std::mutex> lk(mu_);
  published_ = live_;
}

EngineMetrics EngineCore::metrics() const {
  std::lock_guard<std::mutex> lk(mu_);
  return published_;
}

}  // namespace gf
