#include "runtime/decoder_runner.h"

#include <algorithm>

namespace gf {

Result<std::unique_ptr<DecoderRunner>> DecoderRunner::create(Decoder& dec, int64_t num_blocks, int block_size) {
  GF_ASSIGN_OR_RETURN(auto cache, dec.new_paged_cache(num_blocks, block_size));
  return std::unique_ptr<DecoderRunner>(new DecoderRunner(dec, std::move(cache)));
}

int64_t DecoderRunner::max_context() const {
  return std::min<int64_t>(cache_->capacity_tokens(), dec_.spec().max_position_embeddings);
}

Result<RunnerOutput> DecoderRunner::execute(const StepPlan& plan) {
  // Chunks that pick a token end in the backend's sampling op (only ids come
  // back); chunks that want every position's logits run through forward_batch.
  std::vector<SeqStep> steps, lp_steps;
  std::vector<size_t> at, lp_at;  // plan index of each step
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    const ScheduledChunk& c = plan.chunks[i];
    SeqStep st;
    st.seq = c.kv;
    st.ids = c.ids;
    st.adapter = c.seq->req->adapter;
    if (c.all_logits) {
      st.all_logits = true;
      lp_steps.push_back(std::move(st));
      lp_at.push_back(i);
      continue;
    }
    if (c.picks) st.sampling = &c.sampling;
    steps.push_back(std::move(st));
    at.push_back(i);
  }
  RunnerOutput out;
  out.vocab = dec_.spec().vocab_size;
  out.chunks.resize(plan.chunks.size());
  if (!steps.empty()) {
    GF_ASSIGN_OR_RETURN(auto picked, dec_.forward_batch_sample(*cache_, steps));
    for (size_t k = 0; k < steps.size(); ++k)
      if (steps[k].sampling) out.chunks[at[k]].next = std::move(picked[k]);
  }
  if (!lp_steps.empty()) {
    GF_ASSIGN_OR_RETURN(auto logits, dec_.forward_batch(*cache_, lp_steps));
    for (size_t k = 0; k < lp_steps.size(); ++k) out.chunks[lp_at[k]].logits = std::move(logits[k]);
  }
  return out;
}

}  // namespace gf
