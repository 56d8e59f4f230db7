// One engine iteration without threads (vLLM's EngineCore.step()):
// the scheduler admits and plans, the runner executes the plan, output
// processing hands the tokens to the requests, the scheduler retires the
// finished. Engine runs it on its own thread; tests run it directly.
#pragma once
#include <memory>
#include <mutex>
#include <string>

#include "runtime/model_runner.h"
#include "runtime/output_processor.h"
#include "runtime/request.h"
#include "runtime/scheduler.h"

namespace gf {

class EngineCore {
 public:
  EngineCore(ModelRunner& runner, const EngineOptions& opt);

  // Queues a request; returns the id its plan chunks carry.
  uint64_t add(std::shared_ptr<EngineRequest> r) { return sched_.add(std::move(r)); }
  // One iteration; false when nothing was running. `ran`, if given, gets the
  // step's plan (its Sequence pointers may dangle: use seq_id).
  bool step(StepPlan* ran = nullptr);
  bool has_work() const { return sched_.has_work(); }
  // Ends every request as cancelled.
  void cancel_all(const std::string& why);

  // Publishes the counters and gauges for metrics(): the engine thread calls
  // it (step does, after admission and at its end).
  void publish();
  // The metrics as last published; any thread (requests_total is the Engine's).
  EngineMetrics metrics() const;
  const Scheduler& scheduler() const { return sched_; }

 private:
  ModelRunner& runner_;
  EngineMetrics live_;  // the engine thread's counters
  Scheduler sched_;
  OutputProcessor out_;
  mutable std::mutex mu_;
  EngineMetrics published_;
};

}  // namespace gf
