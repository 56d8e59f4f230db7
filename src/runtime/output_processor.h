// Output processing of the serving engine: turns a runner's output into
// tokens on the requests (host sampling where the backend left a row,
// log-probs, prompt log-probs), applies the stop checks and counts tokens.
// Sequences it ends get Sequence::finish set; Scheduler::retire_finished()
// then frees them.
#pragma once
#include <cstdint>
#include <vector>

#include "runtime/model_runner.h"
#include "runtime/request.h"
#include "runtime/scheduler.h"

namespace gf {

class OutputProcessor {
 public:
  // Counts go to `metrics` (prompt and generation tokens).
  explicit OutputProcessor(EngineMetrics& metrics) : m_(metrics) {}
  void process(const StepPlan& plan, RunnerOutput& out);

 private:
  void prompt_logprobs(const ScheduledChunk& c, const std::vector<float>& rows, int64_t vocab);
  // Takes the token picked after s's last fed token.
  void accept(Sequence& s, SampledToken& t, int64_t vocab);
  EngineMetrics& m_;
};

}  // namespace gf
