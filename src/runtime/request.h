// What the serving engine is given and hands back: a request with its output
// queue, the states it moves through and why it ended. Thread-shared: the
// client side reads the output under the request's mutex.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "runtime/sampler.h"
#include "runtime/token_constraint.h"

namespace gf {

// Why a request ended. The server maps these to OpenAI's strings.
enum class FinishReason : uint8_t {
  None,       // not finished
  Stop,       // a stop id was generated
  Length,     // max_tokens (or the context) reached, or a score-only request scored
  Error,      // the engine could not run it (EngineRequest::error says why)
  Cancelled,  // the client cancelled it, or the engine shut down
};
const char* finish_reason_name(FinishReason r);  // "stop", "length", "error", "cancelled", "none"

// Where the scheduler holds a request.
enum class RequestState : uint8_t {
  Waiting,    // queued, never run
  Running,    // in the batch: holds KV blocks
  Preempted,  // blocks taken back; queued to be recomputed from its tokens
  Finished,
};

struct EngineRequest {
  // Input (set before submit).
  std::vector<int32_t> prompt;
  int max_tokens = 16;
  SamplingParams sampling;
  std::vector<int32_t> stop_ids;
  int top_logprobs = -1;  // >= 0: report the chosen token's logprob and this many alternatives
  // >= 0: also the log-prob of every prompt token given the tokens before it,
  // with this many alternatives (the prompt's logits are computed in full, not
  // taken from the prefix cache). max_tokens may then be 0 (score only).
  int prompt_logprobs = -1;
  bool emit_stop_token = false;  // also report a stop id that ends the reply (Token::stop, not counted)
  // The LoRA adapter it runs with (Engine::add_adapter's id; 0: the base
  // model), and what marks the adapter in use while the request lives.
  int adapter = 0;
  std::shared_ptr<const void> adapter_use;
  // Structured outputs: masks every draw (the request is sampled on the host).
  std::unique_ptr<TokenConstraint> constraint;
  // n > 1: the other choices, same prompt. They wait until this request's
  // prompt is in the cache, then share its full KV blocks (see Scheduler).
  std::vector<std::shared_ptr<EngineRequest>> forks;

  // Output, filled by the engine thread; read under `mu`.
  struct Token {
    int32_t id;
    float logprob;
    std::vector<std::pair<int32_t, float>> top;
    bool stop = false;  // a stop id (only with emit_stop_token): no text
  };
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Token> tokens;  // produced, not yet consumed
  // With prompt_logprobs >= 0: one entry per prompt token, in order (the first
  // has logprob NaN: nothing precedes it); complete when its size is prompt.size().
  std::vector<Token> prompt_lp;
  bool done = false;
  FinishReason finish_reason = FinishReason::None;
  std::string error;
  int64_t completion_tokens = 0;
  double submitted_at = 0, first_token_at = 0, finished_at = 0;

  // Set by the client side (disconnect, stop string): the engine frees the request.
  std::atomic<bool> cancelled{false};
};

// Marks r done with `reason` and wakes its reader.
void complete_request(EngineRequest& r, FinishReason reason, const std::string& error = "");

struct EngineOptions {
  int64_t kv_blocks = 256;
  int block_size = 16;
  int max_running = 64;          // sequences per step
  int64_t max_step_tokens = 512; // prefill chunk budget per step (decodes included)
  size_t max_waiting = 256;      // beyond it, submit() refuses (the server answers 503)
  bool prefix_caching = true;    // reuse the KV blocks of prompt prefixes seen before
};

struct EngineMetrics {
  int64_t running = 0, waiting = 0;
  int64_t kv_blocks_used = 0, kv_blocks_total = 0;
  int64_t prompt_tokens_total = 0, generation_tokens_total = 0, requests_total = 0, preemptions_total = 0;
  int64_t prefix_hit_tokens_total = 0, prefix_cached_blocks = 0;
  int64_t prefix_query_tokens_total = 0;  // prompt tokens looked up in the prefix cache (hit rate = hit / query)
  int64_t forked_prompt_tokens_total = 0;  // prompt tokens a choice of n > 1 took from its sibling's prefill
  int64_t computed_tokens_total = 0;       // tokens run through the model (prefill and decode)
};

double now_seconds();

}  // namespace gf
