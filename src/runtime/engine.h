// The serving engine: iteration-level continuous batching over one paged KV
// cache (see runtime/scheduler.h for the policy). submit() may be called from
// any thread; one engine thread runs EngineCore::step (schedule -> execute ->
// process outputs) while there is work. The engine knows nothing of HTTP.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "model/decoder.h"
#include "runtime/decoder_runner.h"
#include "runtime/engine_core.h"
#include "runtime/request.h"

namespace gf {

// What `serve` and `bench offline` run: a cache of kv_tokens tokens in
// 16-token blocks, `parallel` sequences and `chunk` tokens per step.
EngineOptions engine_options(int64_t kv_tokens, int parallel, int64_t chunk, size_t max_waiting);

class Engine {
 public:
  static Result<std::unique_ptr<Engine>> create(Decoder& dec, const EngineOptions& opt);
  ~Engine();  // ends the requests still queued or running as cancelled

  // Queues a request; an error if the queue is full or the request cannot fit the cache at all.
  Status submit(const std::shared_ptr<EngineRequest>& r);
  EngineMetrics metrics() const;
  int64_t max_context() const { return runner_->max_context(); }
  // Adapters served beside the base model, by id (EngineRequest::adapter;
  // runtime/adapters.h names them). Applied between steps. (adapters.cpp)
  Status add_adapter(int id, const Adapter& adapter);
  void remove_adapter(int id);

 private:
  Engine(const EngineOptions& o, Decoder& dec) : opt_(o), dec_(dec) {}
  void loop();
  void take_inbox();  // moves submitted requests to the scheduler; under mu_

  EngineOptions opt_;
  Decoder& dec_;
  std::mutex step_mu_;  // held by the engine thread through a step; adapters change outside steps
  std::unique_ptr<DecoderRunner> runner_;
  std::unique_ptr<EngineCore> core_;  // touched by the engine thread only (metrics() excepted)
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<EngineRequest>> inbox_;  // submitted, not yet seen by the scheduler
  int64_t requests_total_ = 0;
  bool quit_ = false;
  std::thread thread_;
};

}  // namespace gf
