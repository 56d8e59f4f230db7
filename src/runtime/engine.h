// The serving engine: iteration-level continuous batching over one paged KV
// cache. Each step mixes decode tokens of running requests with chunks of
// waiting prompts (chunked prefill, bounded by a token budget), so a long
// prompt never stalls running decodes. When the cache runs short, the newest
// running request is preempted (its blocks freed) and re-queued to be
// recomputed later: nothing is dropped. The engine knows nothing of HTTP.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "model/decoder.h"
#include "runtime/sampler.h"

namespace gf {

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
  std::string finish_reason;  // "stop", "length", "error", "cancelled"
  std::string error;
  int64_t completion_tokens = 0;
  double submitted_at = 0, first_token_at = 0, finished_at = 0;

  // Set by the client side (disconnect, stop string): the engine frees the request.
  std::atomic<bool> cancelled{false};
};

struct EngineOptions {
  int64_t kv_blocks = 256;
  int block_size = 16;
  int max_running = 64;          // sequences per step
  int64_t max_step_tokens = 512; // prefill chunk budget per step (decodes included)
  size_t max_waiting = 256;      // beyond it, submit() refuses (the server answers 503)
  bool prefix_caching = true;    // reuse the KV blocks of prompt prefixes seen before
};

// What `serve` and `bench offline` run: a cache of kv_tokens tokens in
// 16-token blocks, `parallel` sequences and `chunk` tokens per step.
EngineOptions engine_options(int64_t kv_tokens, int parallel, int64_t chunk, size_t max_waiting);

struct EngineMetrics {
  int64_t running = 0, waiting = 0;
  int64_t kv_blocks_used = 0, kv_blocks_total = 0;
  int64_t prompt_tokens_total = 0, generation_tokens_total = 0, requests_total = 0, preemptions_total = 0;
  int64_t prefix_hit_tokens_total = 0, prefix_cached_blocks = 0;
  int64_t prefix_query_tokens_total = 0;  // prompt tokens looked up in the prefix cache (hit rate = hit / query)
};

class Engine {
 public:
  static Result<std::unique_ptr<Engine>> create(Decoder& dec, const EngineOptions& opt);
  ~Engine();

  // Queues a request; an error if the queue is full or the request cannot fit the cache at all.
  Status submit(const std::shared_ptr<EngineRequest>& r);
  EngineMetrics metrics() const;
  int64_t max_context() const;

 private:
  struct Seq {
    std::shared_ptr<EngineRequest> req;
    SeqState state;
    std::vector<int32_t> tokens;  // prompt + generated (what must be in the cache)
    std::vector<int32_t> history; // for penalties
    int64_t generated = 0;
    std::unique_ptr<Sampler> sampler;
    int32_t pending = -1;         // sampled token not yet fed
    int64_t prompt_lp_done = 0;   // entries of req->prompt_lp filled (prompt_logprobs >= 0)
    bool wants_prompt_logits() const {
      return req->prompt_logprobs >= 0 && prompt_lp_done < static_cast<int64_t>(req->prompt.size());
    }
  };
  Engine(Decoder& d, const EngineOptions& o) : dec_(d), opt_(o) {}
  void loop();
  bool step();  // false when idle
  void finish(Seq& s, const std::string& reason, const std::string& error = "");
  void preempt_newest();
  // Prefix cache: full blocks keyed by a hash of every token up to their end.
  void attach_cached_prefix(Seq& s);
  void remember_blocks(const Seq& s);
  bool evict_cached(int64_t blocks_needed);
  void update_usage();  // refreshes the metrics the server reads

  Decoder& dec_;
  EngineOptions opt_;
  std::unique_ptr<PagedKvCache> cache_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<EngineRequest>> incoming_;
  std::deque<std::unique_ptr<Seq>> waiting_;  // preempted sequences, resumed first
  std::vector<std::unique_ptr<Seq>> running_;
  EngineMetrics m_;
  std::unordered_map<uint64_t, int32_t> prefix_blocks_;
  std::deque<uint64_t> prefix_lru_;  // oldest first
  bool quit_ = false;
  std::thread thread_;
};

double now_seconds();

}  // namespace gf
