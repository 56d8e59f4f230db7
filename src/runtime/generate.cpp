#include "runtime/generate.h"

#include <algorithm>
#include <chrono>

namespace gf {

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::StopToken: return "stop";
    case StopReason::MaxTokens: return "length";
    case StopReason::ContextFull: return "context";
    case StopReason::Callback: return "stop_string";
    case StopReason::Cancelled: return "cancelled";
  }
  return "?";
}

Result<GenerateStats> generate(Decoder& dec, KvCache& cache, const std::vector<int32_t>& new_tokens,
                               std::vector<int32_t>& history, const GenerateOptions& opt,
                               const std::function<bool(int32_t)>& on_token) {
  using clock = std::chrono::steady_clock;
  GenerateStats st;
  st.prompt_tokens = static_cast<int64_t>(new_tokens.size());
  if (new_tokens.empty()) return Err("generate: empty prompt");
  if (cache.length() + st.prompt_tokens >= cache.capacity())
    return Err("the prompt (" + std::to_string(cache.length() + st.prompt_tokens) + " tokens with the conversation so far) "
               "does not fit the context of " + std::to_string(cache.capacity()) + " tokens; shorten it, /reset, or raise --ctx-size");
  Sampler sampler(opt.sampling);
  const int64_t V = dec.spec().vocab_size;
  // The backend picks the token (ids out); rows it hands back (penalties) are sampled here.
  auto pick = [&](SampledToken& t, uint64_t draw) {
    if (t.id < 0) t.id = sampler.sample(t.logits.data(), V, history, draw);
    return t.id;
  };
  auto t0 = clock::now();
  GF_ASSIGN_OR_RETURN(SampledToken tok, dec.forward_sample(new_tokens, cache, sampler.row(0)));
  history.insert(history.end(), new_tokens.begin(), new_tokens.end());
  auto t1 = clock::now();
  st.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();
  st.reason = StopReason::MaxTokens;
  for (int i = 0; i < opt.max_tokens; ++i) {
    if (opt.cancel && opt.cancel->load()) { st.reason = StopReason::Cancelled; break; }
    const int32_t next = pick(tok, static_cast<uint64_t>(i));
    history.push_back(next);
    ++st.generated;
    const bool is_stop = std::find(opt.stop_ids.begin(), opt.stop_ids.end(), next) != opt.stop_ids.end();
    if (!is_stop && !on_token(next)) { st.reason = StopReason::Callback; }
    // Feed the token so the cache holds it (a chat's next turn follows it).
    if (cache.length() >= cache.capacity()) { st.reason = StopReason::ContextFull; break; }
    GF_ASSIGN_OR_RETURN(tok, dec.forward_sample({next}, cache, sampler.row(static_cast<uint64_t>(i + 1))));
    if (is_stop) { st.reason = StopReason::StopToken; break; }
    if (st.reason == StopReason::Callback) break;
  }
  st.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return st;
}

}  // namespace gf
