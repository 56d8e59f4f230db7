#include "runtime/output_processor.h"

#include <algorithm>

namespace gf {

void OutputProcessor::process(const StepPlan& plan, RunnerOutput& out) {
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    const ScheduledChunk& c = plan.chunks[i];
    ChunkOutput& o = out.chunks[i];
    if (c.all_logits) {
      prompt_logprobs(c, o.logits, out.vocab);
      if (!c.picks) continue;
      // All of the prompt is fed: its last row picks the next token on the host.
      o.next = SampledToken();
      o.next.logits.assign(o.logits.end() - out.vocab, o.logits.end());
    } else if (!c.picks) {
      continue;  // a prefill chunk that does not end its prompt
    }
    accept(*c.seq, o.next, out.vocab);
  }
}

void OutputProcessor::prompt_logprobs(const ScheduledChunk& c, const std::vector<float>& rows, int64_t V) {
  Sequence& s = *c.seq;
  const int64_t n = static_cast<int64_t>(c.ids.size());
  const int64_t P = static_cast<int64_t>(s.req->prompt.size());
  std::vector<EngineRequest::Token> got;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t e = c.start + j + 1;  // row j scores the token after it
    // Skip rows recomputed after a preemption (already reported) and rows past the prompt.
    if (e != s.prompt_lp_done + static_cast<int64_t>(got.size()) || e >= P) continue;
    SampledToken t;
    t.id = s.req->prompt[static_cast<size_t>(e)];
    fill_logprobs(rows.data() + j * V, V, s.req->prompt_logprobs, t);
    got.push_back({t.id, t.logprob, std::move(t.top)});
  }
  if (got.empty()) return;
  std::lock_guard<std::mutex> lk(s.req->mu);
  for (auto& t : got) s.req->prompt_lp.push_back(std::move(t));
  s.prompt_lp_done = static_cast<int64_t>(s.req->prompt_lp.size());
  s.req->cv.notify_all();
}

void OutputProcessor::accept(Sequence& s, SampledToken& p, int64_t V) {
  EngineRequest& r = *s.req;
  if (s.generated == 0 && s.history.empty()) s.history = r.prompt;
  if (r.max_tokens <= 0) {  // prompt log-probs only: nothing is generated
    m_.prompt_tokens_total += static_cast<int64_t>(r.prompt.size());
    s.finish = FinishReason::Length;
    return;
  }
  if (p.id < 0) {  // the host samples this row (penalties, or past the backend's candidate window)
    // Log-probs are of the model's distribution (before the penalties change the row).
    std::vector<float> copy;
    if (r.top_logprobs >= 0) copy = p.logits;
    if (r.constraint) {
      const auto allowed = r.constraint->allowed();
      apply_allowed(allowed.data(), static_cast<int64_t>(allowed.size()), p.logits.data(), V);
    }
    p.id = s.sampler.sample(p.logits.data(), V, s.history, static_cast<uint64_t>(s.generated));
    fill_logprobs(copy.data(), V, r.top_logprobs, p);
  }
  if (r.constraint) r.constraint->accept(p.id);
  EngineRequest::Token tok{p.id, p.logprob, std::move(p.top)};
  s.history.push_back(tok.id);
  ++s.generated;
  const bool is_stop = std::find(r.stop_ids.begin(), r.stop_ids.end(), tok.id) != r.stop_ids.end();
  {
    std::lock_guard<std::mutex> lk(r.mu);
    if (!is_stop) {
      r.tokens.push_back(std::move(tok));
      ++r.completion_tokens;
    } else if (r.emit_stop_token) {
      tok.stop = true;
      r.tokens.push_back(std::move(tok));
    }
    if (r.first_token_at == 0) r.first_token_at = now_seconds();
    r.cv.notify_all();
  }
  ++m_.generation_tokens_total;
  if (s.generated == 1) m_.prompt_tokens_total += static_cast<int64_t>(r.prompt.size());
  if (is_stop) s.finish = FinishReason::Stop;
  else if (s.generated >= r.max_tokens) s.finish = FinishReason::Length;
  else s.pending = s.history.back();
}

}  // namespace gf
