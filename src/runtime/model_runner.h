// What the engine needs from whoever runs the model: the KV cache's block
// accounting (the scheduler plans with it) and the execution of one step plan.
// DecoderRunner runs the Decoder; tests use a fake.
#pragma once
#include <cstdint>
#include <vector>

#include "backend/sampling.h"
#include "core/status.h"
#include "model/block_pool.h"
#include "runtime/scheduler.h"

namespace gf {

// The result of one plan chunk (same index as StepPlan::chunks).
struct ChunkOutput {
  // picks && !all_logits: the token picked after the chunk (id -1: `logits`
  // holds its row and the host picks, see Backend::sample).
  SampledToken next;
  // all_logits: a row of logits per fed token, [ids.size(), vocab].
  std::vector<float> logits;
};

struct RunnerOutput {
  std::vector<ChunkOutput> chunks;
  int64_t vocab = 0;
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  // The cache the plans' block tables index.
  virtual BlockPool& blocks() = 0;
  // Appends each chunk's ids to its sequence's cache (reserving blocks and
  // advancing kv->length) and returns the chunks' outputs. On an error the
  // step did not happen as planned; the engine ends the running requests.
  virtual Result<RunnerOutput> execute(const StepPlan& plan) = 0;
};

}  // namespace gf
