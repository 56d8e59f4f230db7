// n > 1 sharing one prefill: the choices after the first wait on it and start
// from its KV blocks (reference-counted, as the prefix cache shares them).
#include "runtime/scheduler.h"

namespace gf {

void Scheduler::fork(Sequence& s) {
  const int bs = pool_.block_size();
  // Full blocks only, leaving at least one prompt token: its logits start the
  // choice's reply, and the partly filled last block is written by every choice.
  const int64_t full = std::min<int64_t>((static_cast<int64_t>(s.req->prompt.size()) - 1) / bs,
                                         static_cast<int64_t>(s.kv.blocks.size()));
  for (auto& c : s.forks) {
    for (int64_t b = 0; b < full; ++b) {
      pool_.retain(s.kv.blocks[static_cast<size_t>(b)]);
      c->kv.blocks.push_back(s.kv.blocks[static_cast<size_t>(b)]);
    }
    c->kv.length = full * bs;
    c->forked = true;
    m_.forked_prompt_tokens_total += c->kv.length;
    waiting_.push_front(std::move(c));
  }
  s.forks.clear();
}

void Scheduler::end_forks(Sequence& s, FinishReason reason, const std::string& error) {
  if ((reason == FinishReason::Stop || reason == FinishReason::Length) && s.kv.length >= static_cast<int64_t>(s.req->prompt.size())) {
    fork(s);
    return;
  }
  for (auto& c : s.forks) complete_request(*c->req, reason, error);
  s.forks.clear();
}

}  // namespace gf
