#include "model/decoder.h"

#include <algorithm>

namespace gf {

KvCache::~KvCache() {
  for (auto& l : layers_) be_->free_kv(l);
}

Decoder::~Decoder() {
  auto free = [&](Weight& w) { be_->free_weight(w); };
  free(embed_);
  if (lm_head_.device != embed_.device || lm_head_.host.data != embed_.host.data) free(lm_head_);
  free(final_norm_);
  for (auto& l : layers_)
    for (Weight* w : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down, &l.input_norm, &l.post_attn_norm, &l.pre_ffw_norm,
                      &l.post_ffw_norm, &l.q_norm, &l.k_norm})
      free(*w);
}

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
    w.inv_freq = ls.rope.inv_freq(ls.head_dim);
  }
  return d;
}

Result<std::unique_ptr<KvCache>> Decoder::new_cache(int64_t capacity) {
  const ModelSpec& s = spec();
  if (capacity <= 0) return Err("KV cache capacity must be positive");
  std::vector<KvLayer> layers;
  for (const auto& l : s.layers) {
    auto kv = be_->alloc_kv(capacity, static_cast<int64_t>(l.num_kv_heads) * l.head_dim);
    if (!kv.ok()) {
      for (auto& k : layers) be_->free_kv(k);
      return kv.status();
    }
    layers.push_back(*kv);
  }
  return std::make_unique<KvCache>(*be_, std::move(layers), capacity);
}

Result<std::vector<float>> Decoder::forward(const std::vector<int32_t>& ids, KvCache& cache, bool all_logits) {
  const ModelSpec& s = spec();
  if (ids.empty()) return Err("forward: no tokens");
  for (int32_t id : ids)
    if (id < 0 || id >= s.vocab_size)
      return Err("token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(s.vocab_size) + ")");
  const int64_t n = static_cast<int64_t>(ids.size());
  if (cache.length() + n > cache.capacity())
    return Err("sequence of " + std::to_string(cache.length() + n) + " tokens exceeds the context of " +
               std::to_string(cache.capacity()) + " tokens");
  std::vector<float> out;
  out.reserve(static_cast<size_t>((all_logits ? n : 1) * s.vocab_size));
  for (int64_t start = 0; start < n; start += max_chunk_) {
    const int64_t len = std::min(max_chunk_, n - start);
    std::vector<int32_t> chunk(ids.begin() + start, ids.begin() + start + len);
    const bool last = start + len == n;
    if (!all_logits && !last) {
      std::vector<float> ignore;
      GF_RETURN_IF_ERROR(forward_chunk(chunk, cache.length(), cache, false, ignore));
    } else {
      GF_RETURN_IF_ERROR(forward_chunk(chunk, cache.length(), cache, all_logits, out));
    }
  }
  return out;
}

Status Decoder::forward_chunk(const std::vector<int32_t>& ids, int64_t start, KvCache& cache, bool all_logits,
                              std::vector<float>& out) {
  const ModelSpec& s = spec();
  Backend& be = *be_;
  const int64_t T = static_cast<int64_t>(ids.size());
  const int64_t H = s.hidden_size;
  std::vector<int32_t> pos(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) pos[static_cast<size_t>(t)] = static_cast<int32_t>(start + t);

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
  for (int li = 0; li < s.num_layers; ++li) {
    const LayerSpec& ls = s.layers[static_cast<size_t>(li)];
    LayerWeights& w = layers_[static_cast<size_t>(li)];
    const int64_t qd = static_cast<int64_t>(ls.num_heads) * ls.head_dim, kvd = static_cast<int64_t>(ls.num_kv_heads) * ls.head_dim;
    Act ql = shaped(q, qd), kl = shaped(k, kvd), vl = shaped(v, kvd), al = shaped(att, qd);
    Act gl = shaped(g, ls.intermediate_size), ul = shaped(u, ls.intermediate_size);

    // Attention block.
    be.rmsnorm_to(x, w.input_norm, s.rms_norm_eps, h);
    be.matmul(h, w.q, ql);
    be.matmul(h, w.k, kl);
    be.matmul(h, w.v, vl);
    if (ls.qk_norm) {
      be.rmsnorm(ql, &w.q_norm, ls.head_dim, s.rms_norm_eps);
      be.rmsnorm(kl, &w.k_norm, ls.head_dim, s.rms_norm_eps);
    }
    be.rope(ql, ls.head_dim, pos, w.inv_freq);
    be.rope(kl, ls.head_dim, pos, w.inv_freq);
    KvLayer& kv = cache.layer(static_cast<size_t>(li));
    be.kv_write(kv, kl, vl, pos);
    AttentionParams ap{ls.num_heads, ls.num_kv_heads, ls.head_dim, ls.sliding_window, ls.attn_scale, ls.attn_softcap};
    be.attention(ql, kv, pos, ap, al);
    be.matmul(al, w.o, h);
    if (ls.sandwich_norms) be.rmsnorm(h, &w.post_attn_norm, H, s.rms_norm_eps);
    be.add(x, h);

    // MLP block.
    be.rmsnorm_to(x, w.pre_ffw_norm, s.rms_norm_eps, h);
    be.matmul(h, w.gate, gl);
    be.matmul(h, w.up, ul);
    be.gelu_mul(gl, ul);
    be.matmul(gl, w.down, h);
    if (ls.sandwich_norms) be.rmsnorm(h, &w.post_ffw_norm, H, s.rms_norm_eps);
    be.add(x, h);
  }
  cache.length_ = start + T;

  // Final norm and LM head, on every row or only the last.
  Act rows = x;
  Act last{};
  if (!all_logits) {
    last = be.alloc(1, H);
    be.copy_row(x, T - 1, last);
    rows = last;
  }
  be.rmsnorm(rows, &final_norm_, H, s.rms_norm_eps);
  Act logits = be.alloc(rows.rows, s.vocab_size);
  be.matmul(rows, lm_head_, logits);
  if (s.final_softcap > 0) be.softcap(logits, s.final_softcap);
  const size_t old = out.size();
  out.resize(old + static_cast<size_t>(rows.rows * s.vocab_size));
  be.download(logits, out.data() + old);

  for (Act* a : {&x, &h, &q, &k, &v, &att, &g, &u, &logits}) be.release(*a);
  if (last.data) be.release(last);
  return Ok();
}

}  // namespace gf
