#include "model/decoder.h"

#include <algorithm>
#include <cmath>

#include "backend/collective.h"
#include "core/half.h"
#include "model/shard.h"

namespace gf {

Decoder::~Decoder() {
  if (leads_) (void)tell_followers({});  // quit
  auto free = [&](Weight& w) { be_->free_weight(w); };
  free(embed_);
  if (lm_head_.device != embed_.device || lm_head_.host.data != embed_.host.data) free(lm_head_);
  for (Weight* w : {&final_norm_, &ple_embed_, &ple_model_proj_, &ple_proj_norm_}) free(*w);
  for (auto& l : layers_) l.for_each_weight(free);
  free_lora(lora_);
  for (auto& [id, set] : adapters_) free_lora(set);
}

namespace {
AttentionParams attention_params(const LayerSpec& ls) {
  return {ls.num_heads, ls.num_kv_heads, ls.head_dim, ls.sliding_window, ls.attn_scale, ls.attn_softcap};
}
std::vector<int32_t> identity_rows(int64_t n) {
  std::vector<int32_t> r(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) r[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  return r;
}
}  // namespace

Result<std::unique_ptr<Decoder>> Decoder::create(const Model& m, Backend& be, const Adapter& adapter, Collective* comm) {
  GF_RETURN_IF_ERROR(m.spec.check_supported());
  if (m.tp.world > 1 && (!comm || comm->world() != m.tp.world || comm->rank() != m.tp.rank))
    return Err("a tensor-parallel shard (rank " + std::to_string(m.tp.rank) + " of " + std::to_string(m.tp.world) +
               ") needs the collective of that rank");
  std::unique_ptr<Decoder> d(new Decoder(m, be));
  if (m.tp.world > 1) d->comm_ = comm;
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
    if (Status st = be.supports(attention_params(ls)); !st.ok())
      return st.error().with_context(be.name() + " backend cannot run layer " + std::to_string(i));
    auto matrix = [&](const TensorView* t, Weight& out) -> Status {
      if (!t) return Ok();
      GF_ASSIGN_OR_RETURN(out, be.upload_matrix(*t));
      return Ok();
    };
    auto vector = [&](const std::vector<float>& v, const char* name, Weight& out) -> Status {
      if (v.empty()) return Ok();
      GF_ASSIGN_OR_RETURN(out, be.upload_vector(v, name));
      return Ok();
    };
    for (auto [src, out] : {std::pair{t.q, &w.q}, {t.k, &w.k}, {t.v, &w.v}, {t.o, &w.o}, {t.gate, &w.gate}, {t.up, &w.up},
                          {t.down, &w.down}, {t.ple_gate, &w.ple_gate}, {t.ple_proj, &w.ple_proj}, {t.router_proj, &w.router_proj}})
      GF_RETURN_IF_ERROR(matrix(src, *out));
    w.experts.resize(t.experts.size());
    for (size_t e = 0; e < t.experts.size(); ++e) {
      GF_RETURN_IF_ERROR(matrix(&t.experts[e].gate, w.experts[e].gate));
      GF_RETURN_IF_ERROR(matrix(&t.experts[e].up, w.experts[e].up));
      GF_RETURN_IF_ERROR(matrix(&t.experts[e].down, w.experts[e].down));
    }
    for (auto [v, name, out] : {std::tuple{&t.input_norm, "input_norm", &w.input_norm}, {&t.pre_ffw_norm, "pre_ffw_norm", &w.pre_ffw_norm},
                                {&t.post_attn_norm, "post_attn_norm", &w.post_attn_norm}, {&t.post_ffw_norm, "post_ffw_norm", &w.post_ffw_norm},
                                {&t.q_norm, "q_norm", &w.q_norm}, {&t.k_norm, "k_norm", &w.k_norm},
                                {&t.ple_post_norm, "ple_post_norm", &w.ple_post_norm}, {&t.router_scale, "router_scale", &w.router_scale},
                                {&t.post_ffw_norm_1, "post_ffw_norm_1", &w.post_ffw_norm_1},
                                {&t.pre_ffw_norm_2, "pre_ffw_norm_2", &w.pre_ffw_norm_2},
                                {&t.post_ffw_norm_2, "post_ffw_norm_2", &w.post_ffw_norm_2}})
      GF_RETURN_IF_ERROR(vector(*v, name, *out));
    GF_ASSIGN_OR_RETURN(w.inv_freq, be.upload_vector(ls.rope.inv_freq(ls.head_dim), "inv_freq"));
    w.per_expert_scale = t.per_expert_scale;
    w.layer_scalar = t.layer_scalar;
  }
  if (m.ple_embed) {
    GF_ASSIGN_OR_RETURN(d->ple_embed_, be.upload_matrix(*m.ple_embed));
    GF_ASSIGN_OR_RETURN(d->ple_model_proj_, be.upload_matrix(*m.ple_model_proj));
    GF_ASSIGN_OR_RETURN(d->ple_proj_norm_, be.upload_vector(m.ple_proj_norm, "ple_proj_norm"));
  }
  GF_ASSIGN_OR_RETURN(d->lora_, d->upload_lora(adapter));
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
  // Under create_parallel, one part per rank (rank order), sharing the block accounting.
  std::vector<PagedKvCache::Part> parts = {{be_, &model_->spec}};
  if (group_)
    for (const Decoder* d : peers()) parts.push_back({d->be_, &d->model_->spec});
  GF_ASSIGN_OR_RETURN(auto cache, PagedKvCache::create(parts, num_blocks, block_size));
  if (leads_) GF_RETURN_IF_ERROR(announce_cache(*cache));
  return cache;
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

namespace {
// Gemma 4 layers end with extras (per-layer input, layer scalar) after the MLP's residual step.
bool ends_with_extras(const LayerSpec& ls) { return ls.per_layer_input || ls.layer_scalar; }
Act shaped(Act a, int64_t cols) {
  a.cols = cols;
  return a;
}
}  // namespace

// The step's activations, sized for the widest layer; released on scope exit.
struct Decoder::Scratch {
  Backend& be;
  const ModelSpec& s;
  int64_t T;
  size_t kv_part;  // this rank's part of the cache
  Act x, h, q, k, v, att, g, u;
  std::vector<Act> ple;  // Gemma 4: per layer [T, P]

  Scratch(Backend& b, const ModelSpec& spec, int64_t tokens, size_t part) : be(b), s(spec), T(tokens), kv_part(part) {
    int64_t max_q = 0, max_kv = 0, max_i = 0;
    for (const auto& l : s.layers) {
      max_q = std::max<int64_t>(max_q, static_cast<int64_t>(l.num_heads) * l.head_dim);
      max_kv = std::max<int64_t>(max_kv, static_cast<int64_t>(l.num_kv_heads) * l.head_dim);
      max_i = std::max<int64_t>(max_i, l.intermediate_size);
    }
    max_i = std::max<int64_t>(max_i, s.per_layer_input_dim);  // g also holds the PLE gate
    const int64_t H = s.hidden_size;
    x = be.alloc(T, H), h = be.alloc(T, H), q = be.alloc(T, max_q), k = be.alloc(T, max_kv), v = be.alloc(T, max_kv),
    att = be.alloc(T, max_q), g = be.alloc(T, max_i), u = be.alloc(T, max_i);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() {
    release();
    if (x.data) be.release(x);
  }
  // Everything but x (the residual stream the LM head reads).
  void release() {
    for (Act* a : {&h, &q, &k, &v, &att, &g, &u})
      if (a->data) be.release(*a);
    for (auto& a : ple)
      if (a.data) be.release(a);
  }
  Act take_x() {
    Act out = x;
    x = Act{};
    return out;
  }
};

// x += post_norm(o(attention(rope(qk_norm(q)), K, V))); then h = pre_ffw_norm(x).
Status Decoder::attention_block(int li, PagedKvCache& cache, Scratch& sc) {
  const ModelSpec& s = spec();
  Backend& be = *be_;
  const LayerSpec& ls = s.layers[static_cast<size_t>(li)];
  LayerWeights& w = layers_[static_cast<size_t>(li)];
  const float eps = s.rms_norm_eps;
  const int64_t qd = static_cast<int64_t>(ls.num_heads) * ls.head_dim, kvd = static_cast<int64_t>(ls.num_kv_heads) * ls.head_dim;
  Act ql = shaped(sc.q, qd), kl = shaped(sc.k, kvd), vl = shaped(sc.v, kvd), al = shaped(sc.att, qd);
  const Weight* q_norm = ls.qk_norm ? &w.q_norm : nullptr;
  if (ls.kv_source_layer >= 0) {
    // Gemma 4 KV sharing: only q; keys and values are the source layer's, already in its pool.
    project(li, Projection::Q, sc.h, w.q, ql);
    if (q_norm) be.rmsnorm(ql, q_norm, ls.head_dim, eps);
    be.rope(ql, ls.head_dim, w.inv_freq);
    be.attention(ql, cache.pool(static_cast<size_t>(li), sc.kv_part), attention_params(ls), al);
  } else {
    const Weight* qkv_w[3] = {&w.q, &w.k, &w.v};
    Act* qkv_out[3] = {&ql, &kl, &vl};
    be.matmul_shared_input(sc.h, qkv_w, qkv_out, ls.k_eq_v ? 2 : 3);
    add_lora(li, Projection::Q, sc.h, ql);
    add_lora(li, Projection::K, sc.h, kl);
    if (!ls.k_eq_v) add_lora(li, Projection::V, sc.h, vl);
    // Gemma 4 k_eq_v: the value is the raw k projection (before k_norm and RoPE).
    if (ls.k_eq_v) be.gather_rows(kl, identity_rows(sc.T), vl);
    if (ls.v_norm) be.rmsnorm(vl, nullptr, ls.head_dim, eps);
    KvPool& pool = cache.pool(static_cast<size_t>(li), sc.kv_part);
    be.attention_inputs(ql, kl, vl, q_norm, ls.qk_norm ? &w.k_norm : nullptr, ls.head_dim, eps, w.inv_freq, pool);
    be.attention(ql, pool, attention_params(ls), al);
  }
  project(li, Projection::O, al, w.o, sc.h);
  GF_RETURN_IF_ERROR(reduce(sc.h));  // row-parallel o: the ranks' heads summed
  be.residual_add_norm(sc.x, sc.h, ls.sandwich_norms ? &w.post_attn_norm : nullptr, &w.pre_ffw_norm, eps, sc.h);
  return Ok();
}

// x += post_norm(down(gelu_tanh(gate(h)) * up(h))) [+ the MoE block beside it]; Gemma 1-3 then h = next input_norm(x).
Status Decoder::mlp_block(int li, Scratch& sc) {
  const ModelSpec& s = spec();
  Backend& be = *be_;
  const LayerSpec& ls = s.layers[static_cast<size_t>(li)];
  LayerWeights& w = layers_[static_cast<size_t>(li)];
  Act gl = shaped(sc.g, ls.intermediate_size), ul = shaped(sc.u, ls.intermediate_size);
  if (adapted(li, Projection::Gate) || adapted(li, Projection::Up)) {
    project(li, Projection::Gate, sc.h, w.gate, gl);
    project(li, Projection::Up, sc.h, w.up, ul);
    be.gelu_mul(gl, ul);
  } else {
    be.gated_mlp_up(sc.h, w.gate, w.up, gl, ul);
  }
  project(li, Projection::Down, gl, w.down, sc.h);
  GF_RETURN_IF_ERROR(reduce(sc.h));  // row-parallel down: the ranks' MLP parts summed
  if (ls.moe) moe_block(li, sc);  // whole on every rank (shard.h)
  const Weight* next = !ends_with_extras(ls) && li + 1 < s.num_layers ? &layers_[static_cast<size_t>(li) + 1].input_norm : nullptr;
  be.residual_add_norm(sc.x, sc.h, ls.sandwich_norms ? &w.post_ffw_norm : nullptr, next, s.rms_norm_eps, sc.h);
  return Ok();
}

// Gemma 4 MoE beside the dense MLP (whose output is in h; x is the residual r):
// h = post_ffw_norm_1(h) + post_ffw_norm_2(sum_k w_k expert_k(pre_ffw_norm_2(r))),
// routed by softmax(router(rmsnorm(r) * scale / sqrt(hidden))) top-k, renormalised,
// times per_expert_scale. Routing and the weighted sum run on the host, in
// transformers' order (experts ascending); each expert reads only its tokens.
void Decoder::moe_block(int li, Scratch& sc) {
  const ModelSpec& s = spec();
  Backend& be = *be_;
  LayerWeights& w = layers_[static_cast<size_t>(li)];
  const float eps = s.rms_norm_eps;
  const int64_t T = sc.T, H = s.hidden_size, E = s.num_experts, K = s.top_k_experts, I = s.moe_intermediate_size;
  const std::vector<int32_t> all = identity_rows(T);
  // Router.
  Act z = be.alloc(T, H), logits = be.alloc(T, E);
  be.gather_rows(sc.x, all, z);
  be.rmsnorm(z, &w.router_scale, H, eps);
  be.scale(z, static_cast<float>(1.0 / std::sqrt(static_cast<double>(H))));
  be.matmul(z, w.router_proj, logits);
  std::vector<float> lg(static_cast<size_t>(T * E));
  be.download(logits, lg.data());
  be.release(logits);
  std::vector<std::vector<int32_t>> rows(static_cast<size_t>(E));
  std::vector<std::vector<float>> weights(static_cast<size_t>(E));
  std::vector<int32_t> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    const float* r = lg.data() + t * E;
    const float mx = *std::max_element(r, r + E);
    std::vector<float> p(static_cast<size_t>(E));
    float sum = 0;
    for (int64_t e = 0; e < E; ++e) sum += (p[static_cast<size_t>(e)] = std::exp(r[e] - mx));
    for (auto& v : p) v /= sum;
    for (int64_t e = 0; e < E; ++e) order[static_cast<size_t>(e)] = static_cast<int32_t>(e);
    std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](int32_t a, int32_t b) {
      return p[static_cast<size_t>(a)] > p[static_cast<size_t>(b)] || (p[static_cast<size_t>(a)] == p[static_cast<size_t>(b)] && a < b);
    });
    float topsum = 0;
    for (int64_t k = 0; k < K; ++k) topsum += p[static_cast<size_t>(order[static_cast<size_t>(k)])];
    for (int64_t k = 0; k < K; ++k) {
      const int32_t e = order[static_cast<size_t>(k)];
      rows[static_cast<size_t>(e)].push_back(static_cast<int32_t>(t));
      weights[static_cast<size_t>(e)].push_back(p[static_cast<size_t>(e)] / topsum * w.per_expert_scale[static_cast<size_t>(e)]);
    }
  }
  // Experts on pre_ffw_norm_2(r), each over its own tokens.
  be.gather_rows(sc.x, all, z);
  be.rmsnorm(z, &w.pre_ffw_norm_2, H, eps);
  std::vector<float> acc(static_cast<size_t>(T * H), 0.0f), y;
  for (int64_t e = 0; e < E; ++e) {
    const auto& rs = rows[static_cast<size_t>(e)];
    if (rs.empty()) continue;
    const int64_t n = static_cast<int64_t>(rs.size());
    Act xe = be.alloc(n, H), ge = be.alloc(n, I), ue = be.alloc(n, I), ye = be.alloc(n, H);
    be.gather_rows(z, rs, xe);
    const ExpertWeights& ew = w.experts[static_cast<size_t>(e)];
    be.gated_mlp_up(xe, ew.gate, ew.up, ge, ue);
    be.matmul(ge, ew.down, ye);
    y.resize(static_cast<size_t>(n * H));
    be.download(ye, y.data());
    for (Act* a : {&xe, &ge, &ue, &ye}) be.release(*a);
    for (int64_t i = 0; i < n; ++i) {
      const float wt = weights[static_cast<size_t>(e)][static_cast<size_t>(i)];
      float* dst = acc.data() + static_cast<int64_t>(rs[static_cast<size_t>(i)]) * H;
      for (int64_t c = 0; c < H; ++c) dst[c] += y[static_cast<size_t>(i * H + c)] * wt;
    }
  }
  be.upload(z, acc.data());
  be.rmsnorm(z, &w.post_ffw_norm_2, H, eps);
  be.rmsnorm(sc.h, &w.post_ffw_norm_1, H, eps);
  be.add(sc.h, z);
  be.release(z);
}

// Gemma 4 per-layer input: x += post_norm(proj(gelu_tanh(gate(x)) * ple[l])).
void Decoder::per_layer_input_step(int li, Scratch& sc) {
  const ModelSpec& s = spec();
  Backend& be = *be_;
  LayerWeights& w = layers_[static_cast<size_t>(li)];
  Act gl = shaped(sc.g, s.per_layer_input_dim);
  be.matmul(sc.x, w.ple_gate, gl);
  be.gelu_mul(gl, sc.ple[static_cast<size_t>(li)]);
  be.matmul(gl, w.ple_proj, sc.h);
  be.residual_add_norm(sc.x, sc.h, &w.ple_post_norm, nullptr, s.rms_norm_eps, sc.h);
}

// Gemma 4 PLE: per layer l, (rmsnorm(x0 W_proj / sqrt(hidden))[l] + E_ple[ids][l] * sqrt(P)) / sqrt(2).
std::vector<Act> Decoder::per_layer_inputs(const std::vector<int32_t>& ids, const Act& x0) {
  const ModelSpec& s = spec();
  std::vector<Act> out;
  if (s.per_layer_input_dim <= 0) return out;
  Backend& be = *be_;
  const int64_t T = static_cast<int64_t>(ids.size()), L = s.num_layers, P = s.per_layer_input_dim;
  Act tok = be.alloc(T, L * P), ctx = be.alloc(T, L * P);
  // The per-layer table's scale is a buffer like the main one: rounded with a bf16 checkpoint.
  float tok_scale = std::sqrt(static_cast<float>(P));
  if (s.weights_dtype == "bfloat16") tok_scale = bf16_to_f32(f32_to_bf16(tok_scale));
  be.embed(ple_embed_, ids, tok_scale, tok);
  be.matmul(x0, ple_model_proj_, ctx);
  be.scale(ctx, static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.hidden_size))));
  be.rmsnorm(ctx, &ple_proj_norm_, P, s.rms_norm_eps);
  be.add(ctx, tok);
  be.scale(ctx, static_cast<float>(1.0 / std::sqrt(2.0)));
  // Split [T, L*P] into L activations of [T, P] (through the host: PLE dims are small).
  std::vector<float> all(static_cast<size_t>(T * L * P)), part(static_cast<size_t>(T * P));
  be.download(ctx, all.data());
  be.release(tok);
  be.release(ctx);
  for (int64_t l = 0; l < L; ++l) {
    for (int64_t t = 0; t < T; ++t)
      std::copy_n(all.data() + (t * L + l) * P, P, part.data() + t * P);
    Act a = be.alloc(T, P);
    be.upload(a, part.data());
    out.push_back(a);
  }
  return out;
}

Result<StepInput> Decoder::plan_step(PagedKvCache& cache, std::vector<SeqStep>& steps, const std::vector<bool>& output) {
  const ModelSpec& s = spec();
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
  GF_RETURN_IF_ERROR(group_lora_rows(steps));
  if (need_blocks > cache.free_blocks())
    return Err("KV cache is full: this step needs " + std::to_string(need_blocks) + " more blocks, " +
               std::to_string(cache.free_blocks()) + " are free");
  for (auto& st : steps) GF_RETURN_IF_ERROR(cache.reserve(*st.seq, st.seq->length + static_cast<int64_t>(st.ids.size())));

  // Token layout of the step.
  StepInput in;
  BatchLayout& layout = in.layout;
  for (size_t si = 0; si < steps.size(); ++si) {
    const SeqStep& st = steps[si];
    const int64_t start = st.seq->length;
    for (size_t j = 0; j < st.ids.size(); ++j) {
      const int64_t p = start + static_cast<int64_t>(j);
      if (output[si] && (st.all_logits || j + 1 == st.ids.size())) in.logit_rows.push_back(static_cast<int32_t>(in.ids.size()));
      in.ids.push_back(st.ids[j]);
      layout.positions.push_back(static_cast<int32_t>(p));
      layout.token_seq.push_back(static_cast<int32_t>(si));
      layout.slots.push_back(st.seq->blocks[static_cast<size_t>(p / bs)] * bs + static_cast<int32_t>(p % bs));
    }
    layout.block_tables.push_back(st.seq->blocks);
    layout.seq_lens.push_back(static_cast<int32_t>(start + static_cast<int64_t>(st.ids.size())));
  }
  return in;
}

Status Decoder::embed_tokens(const std::vector<int32_t>& ids, Act& x) {
  const float scale = spec().embed_scale;
  if (!comm_) {
    be_->embed(embed_, ids, scale, x);
    return Ok();
  }
  // Vocabulary-parallel: each token's row is on one rank, zeros on the others (their sum is exact).
  const int64_t begin = model_->tp.vocab_begin, end = begin + model_->embed->rows();
  std::vector<int32_t> local, rows;
  for (size_t t = 0; t < ids.size(); ++t)
    if (ids[t] >= begin && ids[t] < end) {
      local.push_back(static_cast<int32_t>(ids[t] - begin));
      rows.push_back(static_cast<int32_t>(t));
    }
  const std::vector<float> zeros(static_cast<size_t>(x.rows * x.cols), 0.0f);
  be_->upload(x, zeros.data());
  if (!local.empty()) {
    Act part = be_->alloc(static_cast<int64_t>(local.size()), x.cols);
    be_->embed(embed_, local, scale, part);
    be_->add_rows(x, rows, part);
    be_->release(part);
  }
  return reduce(x);
}

Status Decoder::reduce(Act& x) { return comm_ ? be_->all_reduce_sum(x, *comm_) : Ok(); }

Result<Act> Decoder::run_step(const StepInput& in, PagedKvCache& cache, size_t kv_part) {
  const ModelSpec& s = spec();
  Backend& be = *be_;
  be.begin_batch(in.layout);
  const int64_t T = static_cast<int64_t>(in.ids.size());
  const int64_t H = s.hidden_size;
  Scratch sc(be, s, T, kv_part);
  GF_RETURN_IF_ERROR(embed_tokens(in.ids, sc.x));
  sc.ple = per_layer_inputs(in.ids, sc.x);
  // h holds the normed input of each block: the first layer's here, the
  // others' from the residual step that ends the layer before.
  if (s.num_layers > 0) be.rmsnorm_to(sc.x, layers_[0].input_norm, s.rms_norm_eps, sc.h);
  for (int li = 0; li < s.num_layers; ++li) {
    const LayerSpec& ls = s.layers[static_cast<size_t>(li)];
    GF_RETURN_IF_ERROR(attention_block(li, cache, sc));
    GF_RETURN_IF_ERROR(mlp_block(li, sc));
    if (ls.per_layer_input) per_layer_input_step(li, sc);
    const float scalar = layers_[static_cast<size_t>(li)].layer_scalar;
    if (ls.layer_scalar && scalar != 1.0f) be.scale(sc.x, scalar);
    // Gemma 1-3 norm the next layer's input in the MLP's residual step; Gemma 4 here, after its extras.
    if (ends_with_extras(ls) && li + 1 < s.num_layers)
      be.rmsnorm_to(sc.x, layers_[static_cast<size_t>(li) + 1].input_norm, s.rms_norm_eps, sc.h);
  }
  Act x = sc.take_x();
  sc.release();
  // Final norm and LM head on the rows that need logits only.
  if (in.logit_rows.empty()) {
    be.release(x);
    return Act{};
  }
  Act rows = be.alloc(static_cast<int64_t>(in.logit_rows.size()), H);
  be.gather_rows(x, in.logit_rows, rows);
  be.release(x);
  be.rmsnorm(rows, &final_norm_, H, s.rms_norm_eps);
  Act logits = be.alloc(rows.rows, s.vocab_size);
  Status gathered = Ok();
  if (!comm_) {
    be.matmul(rows, lm_head_, logits);
  } else {
    // Vocabulary-parallel: each rank's columns of the logits, gathered on every rank.
    Act part = be.alloc(rows.rows, model_->lm_head->rows());
    be.matmul(rows, lm_head_, part);
    std::vector<int64_t> cols;
    for (int r = 0; r < comm_->world(); ++r) cols.push_back(vocab_shard(s.vocab_size, r, comm_->world()).rows);
    gathered = be.all_gather_cols(part, cols, *comm_, logits);
    be.release(part);
  }
  be.release(rows);
  if (!gathered.ok()) {
    be.release(logits);
    return gathered.error();
  }
  if (s.final_softcap > 0) be.softcap(logits, s.final_softcap);
  return logits;
}

Result<Act> Decoder::step_logits(PagedKvCache& cache, std::vector<SeqStep>& steps, const std::vector<bool>& output) {
  GF_ASSIGN_OR_RETURN(StepInput in, plan_step(cache, steps, output));
  GF_ASSIGN_OR_RETURN(Act logits, run_ranks(in, cache));
  for (auto& st : steps) st.seq->length += static_cast<int64_t>(st.ids.size());
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
