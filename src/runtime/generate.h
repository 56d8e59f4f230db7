// The generation loop shared by run and chat: prefill the new tokens, then
// sample one token at a time through the KV cache until a stop token, the
// token budget, the context end, or the callback says stop.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/status.h"
#include "model/decoder.h"
#include "runtime/sampler.h"

namespace gf {

struct GenerateOptions {
  int max_tokens = 256;
  SamplingParams sampling;
  std::vector<int32_t> stop_ids;            // e.g. <eos>, <end_of_turn>
  const std::atomic<bool>* cancel = nullptr;  // set from a signal handler to stop early
};

enum class StopReason { StopToken, MaxTokens, ContextFull, Callback, Cancelled };
const char* stop_reason_name(StopReason r);

struct GenerateStats {
  int64_t prompt_tokens = 0;
  int64_t generated = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  StopReason reason = StopReason::MaxTokens;
};

// on_token(id) is called for every sampled token that is not a stop token;
// returning false stops. `history` holds the tokens the penalties look at and
// is extended with the new tokens (stop token included, as it is in the cache).
Result<GenerateStats> generate(Decoder& dec, KvCache& cache, const std::vector<int32_t>& new_tokens,
                               std::vector<int32_t>& history, const GenerateOptions& opt,
                               const std::function<bool(int32_t)>& on_token);

}  // namespace gf
