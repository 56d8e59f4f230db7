#include "model/decoder.h"

#include <algorithm>

namespace gf {

Decoder::~Decoder() {
  auto free = [&](Weight& w) { be_->free_weight(w); };
  free(embed_);
  if (lm_head_.device != embed_.device || lm_head_.host.data != embed_.host.data) free(lm_head_);
  free(final_norm_);
  for (auto& l : layers_)
    for (Weight* w : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down, &l.input_norm, &l.post_attn_norm, &l.pre_ffw_norm,
                      &l.post_ffw_norm, &l.q_norm, &l.k_norm, &l.inv_freq})
      free(*w);
}

namespace {
AttentionParams attention_params(const LayerSpec& ls) {
  return {ls.num_heads, ls.num_kv_heads, ls.head_dim, ls.sliding_window, ls.attn_scale, ls.attn_softcap};
}
}  // namespace

Result<std::unique_ptr<Decoder>> Decoder::create(const Model& m, Backend& be) {
  GF_RETURN_IF_ERROR(m.spec.check_supported());
  std::unique_ptr<Decoder> d(new Decoder(m, be));
  const ModelSpec& s = m.spec;
  GF_ASSIGN_OR_RETURN(d->embed_, be.upload_matrix(*m.embed));
  if (m.lm_head == m.embed) d->lm_head_ = d->embed_;
  else {
    GF_ASSIGN_OR_RETURN(d->lm_head_, be.upload_matrix(*m.lm_head));
  }
  GF_ASSIGN_OR_RETURN(d->final_norm_, be.upload_vector(m.final_norm, "final_norm"));
  d->layers_.resize(static_cast<size_t>(s.num_layers));
  for (int i = 0; i < s.num_layers; ++i) {
    const LayerTensors& t = m.layers[static_cast<size_t>(i)];
    LayerWeights& w = d->layers_[static_cast<size_t>(i)];
    const LayerSpec& ls = s.layers[static_cast<size_t>(i)];
    if (!t.v) return Err("layer " + std::to_string(i) + " has no v_proj (k_eq_v is not supported yet)");
    if (Status st = be.supports(attention_params(ls)); !st.ok())
      return st.error().with_context(be.name() + " backend cannot run layer " + std::to_string(i));
    GF_ASSIGN_OR_RETURN(w.q, be.upload_matrix(*t.q));
    GF_ASSIGN_OR_RETURN(w.k, be.upload_matrix(*t.k));
    GF_ASSIGN_OR_RETURN(w.v, be.upload_matrix(*t.v));
    GF_ASSIGN_OR_RETURN(w.o, be.upload_matrix(*t.o));
    GF_ASSIGN_OR_RETURN(w.gate, be.upload_matrix(*t.gate));
    GF_ASSIGN_OR_RETURN(w.up, be.upload_matrix(*t.up));
    GF_ASSIGN_OR_RETURN(w.down, be.upload_matrix(*t.down));
    GF_ASSIGN_OR_RETURN(w.input_norm, be.upload_vector(t.input_norm, "input_norm"));
    GF_ASSIGN_OR_RETURN(w.pre_ffw_norm, be.upload_vector(t.pre_ffw_norm, "pre_ffw_norm"));
    if (ls.sandwich_norms) {
      GF_ASSIGN_OR_RETURN(w.post_attn_norm, be.upload_vector(t.post_attn_norm, "post_attn_norm"));
      GF_ASSIGN_OR_RETURN(w.post_ffw_norm, be.upload_vector(t.post_ffw_norm, "post_ffw_norm"));
    }
    if (ls.qk_norm) {
      GF_ASSIGN_OR_RETURN(w.q_norm, be.upload_vector(t.q_norm, "q_norm"));
      GF_ASSIGN_OR_RETURN(w.k_norm, be.upload_vector(t.k_norm, "k_norm"));
    }
    GF_ASSIGN_OR_RETURN(w.inv_freq, be.upload_vector(ls.rope.inv_freq(ls.head_dim), "inv_freq"));
  }
  return d;
}

Result<std::unique_ptr<KvCache>> Decoder::new_cache(int64_t capacity) {
  if (capacity <= 0) return Err("KV cache capacity must be positive");
  const int bs = 16;
  auto c = std::unique_ptr<KvCache>(new KvCache());
  GF_ASSIGN_OR_RETURN(c->cache_, new_paged_cache((capacity + bs - 1) / bs, bs));
  return c;
}

Result<std::unique_ptr<PagedKvCache>> Decoder::new_paged_cache(int64_t num_blocks, int block_size) {
  return PagedKvCache::create(*be_, spec(), num_blocks, block_size);
}

Status Decoder::check_fits(const std::vector<int32_t>& ids, const KvCache& cache) {
  if (ids.empty()) return Err("forward: no tokens");
  const int64_t n = static_cast<int64_t>(ids.size());
  if (cache.length() + n > cache.capacity())
    return Err("sequence of " + std::to_string(cache.length() + n) + " tokens exceeds the context of " +
               std::to_string(cache.capacity()) + " tokens");
  return Ok();
}

Result<std::vector<float>> Decoder::forward(const std::vector<int32_t>& ids, KvCache& cache, bool all_logits) {
  GF_RETURN_IF_ERROR(check_fits(ids, cache));
  const int64_t n = static_cast<int64_t>(ids.size());
  std::vector<float> out;
  for (int64_t start = 0; start < n; start += max_chunk_) {
    const int64_t len = std::min(max_chunk_, n - start);
    std::vector<SeqStep> step(1);
    step[0].seq = &cache.seq_;
    step[0].ids.assign(ids.begin() + start, ids.begin() + start + len);
    step[0].all_logits = all_logits;
    GF_ASSIGN_OR_RETURN(auto logits, forward_batch(*cache.cache_, step));
    if (all_logits || start + len == n) out.insert(out.end(), logits[0].begin(), logits[0].end());
  }
  return out;
}

Result<Act> Decoder::step_logits(PagedKvCache& cache, std::vector<SeqStep>& steps, const std::vector<bool>& output) {
  const ModelSpec& s = spec();
  Backend& be = *be_;
  if (steps.empty()) return Err("forward: empty batch");
  const int bs = cache.block_size();

  // Validate everything before touching any state.
  int64_t need_blocks = 0;
  for (const auto& st : steps) {
    if (!st.seq || st.ids.empty()) return Err("forward: a sequence in the batch has no tokens");
    for (int32_t id : st.ids)
      if (id < 0 || id >= s.vocab_size)
        return Err("token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(s.vocab_size) + ")");
    const int64_t len = st.seq->length + static_cast<int64_t>(st.ids.size());
    need_blocks += std::max<int64_t>(0, (len + bs - 1) / bs - static_cast<int64_t>(st.seq->blocks.size()));
  }
  if (need_blocks > cache.free_blocks())
    return Err("KV cache is full: this step needs " + std::to_string(need_blocks) + " more blocks, " +
               std::to_string(cache.free_blocks()) + " are free");
  for (auto& st : steps) GF_RETURN_IF_ERROR(cache.reserve(*st.seq, st.seq->length + static_cast<int64_t>(st.ids.size())));

  // Token layout of the step.
  BatchLayout layout;
  std::vector<int32_t> ids, logit_rows;
  for (size_t si = 0; si < steps.size(); ++si) {
    const SeqStep& st = steps[si];
    const int64_t start = st.seq->length;
    for (size_t j = 0; j < st.ids.size(); ++j) {
      const int64_t p = start + static_cast<int64_t>(j);
      if (output[si] && (st.all_logits || j + 1 == st.ids.size())) logit_rows.push_back(static_cast<int32_t>(ids.size()));
      ids.push_back(st.ids[j]);
      layout.positions.push_back(static_cast<int32_t>(p));
      layout.token_seq.push_back(static_cast<int32_t>(si));
      layout.slots.push_back(st.seq->blocks[static_cast<size_t>(p / bs)] * bs + static_cast<int32_t>(p % bs));
    }
    layout.block_tables.push_back(st.seq->blocks);
    layout.seq_lens.push_back(static_cast<int32_t>(start + static_cast<int64_t>(st.ids.size())));
  }
  be.begin_batch(layout);

  const int64_t T = static_cast<int64_t>(ids.size());
  const int64_t H = s.hidden_size;
  int64_t max_q = 0, max_kv = 0, max_i = 0;
  for (const auto& l : s.layers) {
    max_q = std::max<int64_t>(max_q, static_cast<int64_t>(l.num_heads) * l.head_dim);
    max_kv = std::max<int64_t>(max_kv, static_cast<int64_t>(l.num_kv_heads) * l.head_dim);
    max_i = std::max<int64_t>(max_i, l.intermediate_size);
  }
  Act x = be.alloc(T, H), h = be.alloc(T, H), q = be.alloc(T, max_q), k = be.alloc(T, max_kv), v = be.alloc(T, max_kv),
      att = be.alloc(T, max_q), g = be.alloc(T, max_i), u = be.alloc(T, max_i);
  auto shaped = [](Act a, int64_t cols) { a.cols = cols; return a; };

  be.embed(embed_, ids, s.embed_scale, x);
  const float eps = s.rms_norm_eps;
  // h holds the normed input of each block: the first layer's here, the
  // others' from the residual step that ends the block before.
  if (s.num_layers > 0) be.rmsnorm_to(x, layers_[0].input_norm, eps, h);
  for (int li = 0; li < s.num_layers; ++li) {
    const LayerSpec& ls = s.layers[static_cast<size_t>(li)];
    LayerWeights& w = layers_[static_cast<size_t>(li)];
    const int64_t qd = static_cast<int64_t>(ls.num_heads) * ls.head_dim, kvd = static_cast<int64_t>(ls.num_kv_heads) * ls.head_dim;
    Act ql = shaped(q, qd), kl = shaped(k, kvd), vl = shaped(v, kvd), al = shaped(att, qd);
    Act gl = shaped(g, ls.intermediate_size), ul = shaped(u, ls.intermediate_size);

    // Attention block: x += post_norm(o(attn(rope(qk_norm(q, k)), v)))
    const Weight* qkv_w[3] = {&w.q, &w.k, &w.v};
    Act* qkv_out[3] = {&ql, &kl, &vl};
    be.matmul_shared_input(h, qkv_w, qkv_out, 3);
    KvPool& pool = cache.pool(static_cast<size_t>(li));
    be.attention_inputs(ql, kl, vl, ls.qk_norm ? &w.q_norm : nullptr, ls.qk_norm ? &w.k_norm : nullptr, ls.head_dim, eps,
                        w.inv_freq, pool);
    be.attention(ql, pool, attention_params(ls), al);
    be.matmul(al, w.o, h);
    be.residual_add_norm(x, h, ls.sandwich_norms ? &w.post_attn_norm : nullptr, &w.pre_ffw_norm, eps, h);

    // MLP block: x += post_norm(down(gelu_tanh(gate(h)) * up(h)))
    be.gated_mlp_up(h, w.gate, w.up, gl, ul);
    be.matmul(gl, w.down, h);
    const Weight* next = li + 1 < s.num_layers ? &layers_[static_cast<size_t>(li) + 1].input_norm : nullptr;
    be.residual_add_norm(x, h, ls.sandwich_norms ? &w.post_ffw_norm : nullptr, next, eps, h);
  }
  for (auto& st : steps) st.seq->length += static_cast<int64_t>(st.ids.size());

  for (Act* a : {&h, &q, &k, &v, &att, &g, &u}) be.release(*a);
  // Final norm and LM head on the rows that need logits only.
  if (logit_rows.empty()) {
    be.release(x);
    return Act{};
  }
  Act rows = be.alloc(static_cast<int64_t>(logit_rows.size()), H);
  be.gather_rows(x, logit_rows, rows);
  be.release(x);
  be.rmsnorm(rows, &final_norm_, H, s.rms_norm_eps);
  Act logits = be.alloc(rows.rows, s.vocab_size);
  be.matmul(rows, lm_head_, logits);
  be.release(rows);
  if (s.final_softcap > 0) be.softcap(logits, s.final_softcap);
  return logits;
}

Result<std::vector<std::vector<float>>> Decoder::forward_batch(PagedKvCache& cache, std::vector<SeqStep>& steps) {
  GF_ASSIGN_OR_RETURN(Act logits, step_logits(cache, steps, std::vector<bool>(steps.size(), true)));
  const int64_t V = spec().vocab_size;
  std::vector<float> all(static_cast<size_t>(logits.rows * V));
  be_->download(logits, all.data());
  be_->release(logits);
  std::vector<std::vector<float>> out(steps.size());
  size_t r = 0;
  for (size_t si = 0; si < steps.size(); ++si) {
    const size_t n = steps[si].all_logits ? steps[si].ids.size() : 1;
    out[si].assign(all.begin() + static_cast<std::ptrdiff_t>(r * static_cast<size_t>(V)),
                   all.begin() + static_cast<std::ptrdiff_t>((r + n) * static_cast<size_t>(V)));
    r += n;
  }
  return out;
}

Result<std::vector<SampledToken>> Decoder::forward_batch_sample(PagedKvCache& cache, std::vector<SeqStep>& steps) {
  std::vector<bool> output(steps.size());
  std::vector<RowSampling> rows;
  for (size_t i = 0; i < steps.size(); ++i) {
    if (steps[i].sampling && steps[i].all_logits) return Err("forward_batch_sample: a sampled step cannot ask for all logits");
    output[i] = steps[i].sampling != nullptr;
    if (output[i]) rows.push_back(*steps[i].sampling);
  }
  GF_ASSIGN_OR_RETURN(Act logits, step_logits(cache, steps, output));
  std::vector<SampledToken> picked;
  if (!rows.empty()) be_->sample(logits, rows, picked);
  be_->release(logits);
  std::vector<SampledToken> out(steps.size());
  size_t r = 0;
  for (size_t i = 0; i < steps.size(); ++i)
    if (output[i]) out[i] = std::move(picked[r++]);
  return out;
}

Result<SampledToken> Decoder::forward_sample(const std::vector<int32_t>& ids, KvCache& cache, const RowSampling& sampling) {
  GF_RETURN_IF_ERROR(check_fits(ids, cache));
  const int64_t n = static_cast<int64_t>(ids.size());
  SampledToken out;
  for (int64_t start = 0; start < n; start += max_chunk_) {
    const int64_t len = std::min(max_chunk_, n - start);
    std::vector<SeqStep> step(1);
    step[0].seq = &cache.seq_;
    step[0].ids.assign(ids.begin() + start, ids.begin() + start + len);
    if (start + len == n) step[0].sampling = &sampling;
    GF_ASSIGN_OR_RETURN(auto picked, forward_batch_sample(*cache.cache_, step));
    out = std::move(picked[0]);
  }
  return out;
}

}  // namespace gf
