#include <algorithm>
#include <cmath>

#include "core/half.h"
#include "train/cpu_train_ops.h"
#include "train/lora_model_impl.h"

namespace gf::train {

AttnShape attn_shape(const LayerSpec& ls, int64_t T, const int32_t* pos) {
  AttnShape s;
  s.pos = pos;
  s.T = T;
  s.heads = ls.num_heads;
  s.kv_heads = ls.num_kv_heads;
  s.hd = ls.head_dim;
  s.window = ls.sliding_window;
  s.scale = ls.attn_scale;
  s.softcap = ls.attn_softcap;
  return s;
}

const TensorView* proj_weight(const LayerTensors& t, Proj p) {
  switch (p) {
    case Proj::Q: return t.q;
    case Proj::K: return t.k;
    case Proj::V: return t.v;
    case Proj::O: return t.o;
    case Proj::Gate: return t.gate;
    case Proj::Up: return t.up;
    case Proj::Down: return t.down;
  }
  return nullptr;
}

TBuf clone(TrainOps& o, const TBuf& b) {
  TBuf c = o.alloc(b.size());
  o.copy(c, b);
  return c;
}

LoraModel::LoraModel(const Model& m) : model_(&m) {}
LoraModel::~LoraModel() = default;

Result<std::unique_ptr<LoraModel>> LoraModel::create(const Model& m, bool f32_weights) {
  return create(m, make_cpu_train_ops(f32_weights));
}

Result<std::unique_ptr<LoraModel>> LoraModel::create(const Model& m, std::unique_ptr<TrainOps> ops) {
  const ModelSpec& s = m.spec;
  if (!ops) return Err("finetune: no training ops");
  GF_RETURN_IF_ERROR(s.check_supported());
  if (!m.embed || !m.lm_head || m.layers.size() != static_cast<size_t>(s.num_layers)) return Err("finetune: the model's weights are not bound");
  for (int i = 0; i < s.num_layers; ++i) {
    const LayerSpec& l = s.layers[static_cast<size_t>(i)];
    const std::string at = "finetune does not support " + std::string(family_name(s.family)) + " layer " + std::to_string(i) + ": ";
    if (l.moe) return Err(at + "mixture-of-experts blocks are not trainable yet (dense models only)");
  }
  std::unique_ptr<LoraModel> lm(new LoraModel(m));
  TrainOps& o = *ops;
  auto vec = [&](const std::vector<float>& v) { return o.input(v.data(), static_cast<int64_t>(v.size())); };
  lm->frozen_ = std::make_unique<Frozen>();
  Frozen& fz = *lm->frozen_;
  fz.layers.resize(static_cast<size_t>(s.num_layers));
  for (int i = 0; i < s.num_layers; ++i) {
    auto& fl = fz.layers[static_cast<size_t>(i)];
    const LayerSpec& ls = s.layers[static_cast<size_t>(i)];
    const LayerTensors& lt = m.layers[static_cast<size_t>(i)];
    for (int p = 0; p < kNumProj; ++p) {
      fl.w[static_cast<size_t>(p)] = -1;
      if (const TensorView* w = proj_weight(lt, static_cast<Proj>(p))) {
        GF_ASSIGN_OR_RETURN(fl.w[static_cast<size_t>(p)], o.add_weight(*w, true));
        fl.out[static_cast<size_t>(p)] = w->rows();
      }
    }
    fl.inv_freq_host = ls.rope.inv_freq(ls.head_dim);
    fl.inv_freq = vec(fl.inv_freq_host);
    fl.input_norm = vec(lt.input_norm);
    fl.post_attn_norm = vec(lt.post_attn_norm);
    fl.pre_ffw_norm = vec(lt.pre_ffw_norm);
    fl.post_ffw_norm = vec(lt.post_ffw_norm);
    fl.q_norm = vec(lt.q_norm);
    fl.k_norm = vec(lt.k_norm);
    fl.ple_post_norm = vec(lt.ple_post_norm);
    if (ls.per_layer_input) {
      if (!lt.ple_gate || !lt.ple_proj || !m.ple_embed || !m.ple_model_proj) return Err("finetune: the per-layer input weights are not bound");
      GF_ASSIGN_OR_RETURN(fl.ple_gate, o.add_weight(*lt.ple_gate, true));
      GF_ASSIGN_OR_RETURN(fl.ple_proj, o.add_weight(*lt.ple_proj, true));
    }
  }
  if (s.per_layer_input_dim > 0) {
    if (!m.ple_embed || !m.ple_model_proj) return Err("finetune: the per-layer input weights are not bound");
    GF_ASSIGN_OR_RETURN(fz.ple_embed, o.add_weight(*m.ple_embed, false));
    GF_ASSIGN_OR_RETURN(fz.ple_model_proj, o.add_weight(*m.ple_model_proj, false));
  }
  GF_ASSIGN_OR_RETURN(fz.lm_head, o.add_weight(*m.lm_head, true));
  if (m.embed == m.lm_head) {
    fz.embed = fz.lm_head;
  } else {
    GF_ASSIGN_OR_RETURN(fz.embed, o.add_weight(*m.embed, false));
  }
  fz.final_norm = vec(m.final_norm);
  fz.ple_proj_norm = vec(m.ple_proj_norm);
  GF_RETURN_IF_ERROR(o.status());
  lm->ops_ = std::move(ops);
  return lm;
}

Status LoraModel::check_seq(const Seq& q) const {
  const std::vector<int32_t>& ids = *q.ids;
  if (ids.size() < 2) return Err("a training sequence needs at least 2 tokens");
  for (int32_t id : ids)
    if (id < 0 || id >= spec().vocab_size)
      return Err("token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(spec().vocab_size) + ")");
  if (q.pos && !q.pos->empty()) {
    const std::vector<int32_t>& pos = *q.pos;
    bool ok = pos.size() == ids.size() && pos[0] == 0;
    for (size_t t = 1; ok && t < pos.size(); ++t) ok = pos[t] == 0 || pos[t] == pos[t - 1] + 1;
    if (!ok) return Err("packed positions must restart at 0 and count up by 1 within each segment");
  }
  if (q.mask && !q.mask->empty() && q.mask->size() != ids.size())
    return Err("loss mask has " + std::to_string(q.mask->size()) + " entries for " + std::to_string(ids.size()) + " tokens");
  return Ok();
}

void LoraModel::forward(Acts& a, const LoraAdapter& ad, const Bound& b, uint64_t dropout_seed, bool training) {
  TrainOps& o = *ops_;
  const ModelSpec& s = spec();
  const Frozen& fz = *frozen_;
  const int64_t T = a.T, H = s.hidden_size;
  const float eps = s.rms_norm_eps;
  o.begin_sequence(a.ids, a.pos);
  TBuf x = o.alloc(T * H);
  o.embed(fz.embed, s.embed_scale, x);
  a.layers.resize(static_cast<size_t>(s.num_layers));
  if (s.per_layer_input_dim > 0) per_layer_inputs(a, x);
  for (int li = 0; li < s.num_layers; ++li) {
    const LayerSpec& ls = s.layers[static_cast<size_t>(li)];
    const LayerTensors& t = model_->layers[static_cast<size_t>(li)];
    const auto& fl = fz.layers[static_cast<size_t>(li)];
    LayerActs& L = a.layers[static_cast<size_t>(li)];
    const int64_t hd = ls.head_dim, qd = ls.num_heads * hd, kvd = ls.num_kv_heads * hd, I = ls.intermediate_size;
    // One adapted (or frozen) projection: out = in W^T (+ LoRA).
    auto proj = [&](Proj p, const TBuf& in, TBuf& out) {
      out = o.alloc(T * fl.out[static_cast<size_t>(p)]);
      o.linear(fl.w[static_cast<size_t>(p)], in, T, out, false);
      const int idx = ad.index[static_cast<size_t>(li * kNumProj + static_cast<int>(p))];
      if (idx < 0) return;
      const LoraMatrix& m = ad.mats[static_cast<size_t>(idx)];
      LoraSaved& sv = L.lora[static_cast<size_t>(p)];
      const TBuf* xin = &in;
      sv.keep.clear();
      sv.xd.reset();
      if (ad.cfg.dropout > 0 && training) {
        Rng rng(mix_seed(dropout_seed, static_cast<uint64_t>(li * kNumProj + static_cast<int>(p))));
        sv.keep.resize(static_cast<size_t>(T * m.in));
        for (auto& k : sv.keep) k = rng.uniform() >= ad.cfg.dropout;
        sv.xd = o.alloc(T * m.in);
        o.dropout(in, sv.keep, 1.0f / (1.0f - ad.cfg.dropout), sv.xd);
        xin = &sv.xd;
      }
      sv.u = o.alloc(T * ad.cfg.rank);
      o.lora_fwd(b.A[static_cast<size_t>(idx)], b.B[static_cast<size_t>(idx)], ad.cfg.rank, m.in, m.out, ad.cfg.scaling(), *xin, T, out,
                 sv.u);
    };
    auto norm = [&](const TBuf& in, const TBuf* w, int64_t group, TBuf& out, TBuf& r) {
      out = o.alloc(in.size());
      r = o.alloc(in.size() / group);
      o.rmsnorm_fwd(in, w, r.size(), group, eps, out, r);
    };
    // Attention block.
    L.x_in = clone(o, x);
    norm(L.x_in, weights_or_null(fl.input_norm), H, L.h1, L.r_in);
    proj(Proj::Q, L.h1, L.q_raw);
    if (ls.qk_norm) norm(L.q_raw, weights_or_null(fl.q_norm), hd, L.q, L.r_q);
    else L.q = clone(o, L.q_raw);
    o.rope(L.q, T, qd, static_cast<int>(hd), fl.inv_freq, false);
    // Gemma 4 KV sharing: keys and values are the source layer's (normed and rotated there).
    const LayerActs* kv = &L;
    if (ls.kv_source_layer >= 0) {
      kv = &a.layers[static_cast<size_t>(ls.kv_source_layer)];
    } else {
      proj(Proj::K, L.h1, L.k_raw);
      // Gemma 4 k_eq_v: the value is the raw k projection (before k_norm and RoPE), as in the decoder.
      if (ls.k_eq_v) L.v_raw = clone(o, L.k_raw);
      else proj(Proj::V, L.h1, L.v_raw);
      if (ls.qk_norm) norm(L.k_raw, weights_or_null(fl.k_norm), hd, L.k, L.r_k);
      else L.k = clone(o, L.k_raw);
      if (ls.v_norm) norm(L.v_raw, nullptr, hd, L.v, L.r_v);
      else L.v = clone(o, L.v_raw);
      o.rope(L.k, T, kvd, static_cast<int>(hd), fl.inv_freq, false);
    }
    L.att = o.alloc(T * qd);
    o.attention_fwd(attn_shape(ls, T, a.pos_ptr()), L.q, kv->k, kv->v, L.att, L.p);
    proj(Proj::O, L.att, L.a);
    TBuf tmp;
    if (ls.sandwich_norms) norm(L.a, weights_or_null(fl.post_attn_norm), H, tmp, L.r_a);
    o.add(x, ls.sandwich_norms ? tmp : L.a);
    // MLP block.
    L.x_mid = clone(o, x);
    norm(L.x_mid, weights_or_null(fl.pre_ffw_norm), H, L.h2, L.r_mid);
    proj(Proj::Gate, L.h2, L.g);
    proj(Proj::Up, L.h2, L.u);
    L.m = clone(o, L.g);
    o.gelu_mul(L.m, L.u, T * I);
    proj(Proj::Down, L.m, L.d);
    if (ls.sandwich_norms) norm(L.d, weights_or_null(fl.post_ffw_norm), H, tmp, L.r_d);
    o.add(x, ls.sandwich_norms ? tmp : L.d);
    if (ls.per_layer_input) {
      // x += post_norm(proj(gelu_tanh(gate(x)) * ple[l])), as Decoder::per_layer_input_step.
      const int64_t P = s.per_layer_input_dim;
      L.ple_g = o.alloc(T * P);
      o.linear(fl.ple_gate, x, T, L.ple_g, false);
      TBuf gm = clone(o, L.ple_g);
      o.gelu_mul(gm, a.ple[static_cast<size_t>(li)], T * P);
      L.ple_h = o.alloc(T * H);
      o.linear(fl.ple_proj, gm, T, L.ple_h, false);
      norm(L.ple_h, weights_or_null(fl.ple_post_norm), H, tmp, L.r_ple);
      o.add(x, tmp);
    }
    if (ls.layer_scalar && t.layer_scalar != 1.0f) o.scale(x, t.layer_scalar);
  }
  a.x_last = std::move(x);
  a.xf = o.alloc(a.x_last.size());
  a.r_f = o.alloc(T);
  o.rmsnorm_fwd(a.x_last, weights_or_null(fz.final_norm), T, H, eps, a.xf, a.r_f);
}

// Gemma 4 PLE: per layer l, (rmsnorm(x0 W_proj / sqrt(hidden))[l] + E_ple[ids][l] * sqrt(P)) / sqrt(2), as the decoder.
void LoraModel::per_layer_inputs(Acts& a, const TBuf& x0) {
  TrainOps& o = *ops_;
  const ModelSpec& s = spec();
  const int64_t T = a.T, L = s.num_layers, P = s.per_layer_input_dim;
  TBuf tok = o.alloc(T * L * P), ctx = o.alloc(T * L * P), r = o.alloc(T * L);
  float tok_scale = std::sqrt(static_cast<float>(P));
  if (s.weights_dtype == "bfloat16") tok_scale = bf16_to_f32(f32_to_bf16(tok_scale));
  o.embed(frozen_->ple_embed, tok_scale, tok);
  o.linear(frozen_->ple_model_proj, x0, T, ctx, false);
  o.scale(ctx, static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.hidden_size))));
  o.rmsnorm_fwd(ctx, weights_or_null(frozen_->ple_proj_norm), T * L, P, s.rms_norm_eps, ctx, r);
  o.add(ctx, tok);
  o.scale(ctx, static_cast<float>(1.0 / std::sqrt(2.0)));
  a.ple.clear();
  for (int64_t l = 0; l < L; ++l) {
    a.ple.push_back(o.alloc(T * P));
    o.copy_block(a.ple.back(), 0, P, ctx, l * P, L * P, T, P);
  }
}

Result<SeqLoss> LoraModel::forward_backward(const std::vector<int32_t>& ids, const std::vector<uint8_t>& mask, const LoraAdapter& ad,
                                            LoraGrads* grads, float grad_scale, uint64_t dropout_seed) {
  return forward_backward(ids, mask, {}, ad, grads, grad_scale, dropout_seed);
}

Result<SeqLoss> LoraModel::forward_backward(const std::vector<int32_t>& ids, const std::vector<uint8_t>& mask,
                                            const std::vector<int32_t>& positions, const LoraAdapter& ad, LoraGrads* grads,
                                            float grad_scale, uint64_t dropout_seed) {
  return forward_backward(std::vector<Seq>{Seq{&ids, &mask, &positions, dropout_seed}}, ad, grads, grad_scale);
}

LoraModel::Bound LoraModel::bind(const LoraAdapter& ad, LoraGrads* grads) {
  TrainOps& o = *ops_;
  Bound b;
  for (size_t i = 0; i < ad.mats.size(); ++i) {
    const LoraMatrix& m = ad.mats[i];
    b.A.push_back(o.input(m.A.data(), static_cast<int64_t>(m.A.size())));
    b.B.push_back(o.input(m.B.data(), static_cast<int64_t>(m.B.size())));
    if (grads) {
      b.gA.push_back(o.grad_of(grads->A(i).data(), static_cast<int64_t>(m.A.size())));
      b.gB.push_back(o.grad_of(grads->B(i).data(), static_cast<int64_t>(m.B.size())));
    }
  }
  return b;
}

Result<SeqLoss> LoraModel::forward_backward(const std::vector<Seq>& seqs, const LoraAdapter& ad, LoraGrads* grads, float grad_scale) {
  for (const Seq& q : seqs) GF_RETURN_IF_ERROR(check_seq(q));
  TrainOps& o = *ops_;
  Bound b = bind(ad, grads);
  SeqLoss total;
  for (const Seq& q : seqs) {
    GF_ASSIGN_OR_RETURN(SeqLoss l, run_seq(q, ad, b, grads != nullptr, grad_scale));
    total.nll_sum += l.nll_sum;
    total.tokens += l.tokens;
  }
  if (grads)
    for (size_t i = 0; i < ad.mats.size(); ++i) {
      o.add_back(b.gA[i], grads->A(i).data());
      o.add_back(b.gB[i], grads->B(i).data());
    }
  GF_RETURN_IF_ERROR(o.status());
  return total;
}

Result<SeqLoss> LoraModel::run_seq(const Seq& q, const LoraAdapter& ad, Bound& b, bool grads, float grad_scale) {
  TrainOps& o = *ops_;
  const ModelSpec& s = spec();
  const std::vector<int32_t>& ids = *q.ids;
  static const std::vector<uint8_t> kNoMask;
  static const std::vector<int32_t> kNoPos;
  const std::vector<uint8_t>& mask = q.mask ? *q.mask : kNoMask;
  const std::vector<int32_t>& positions = q.pos ? *q.pos : kNoPos;
  Acts a;
  a.T = static_cast<int64_t>(ids.size());
  a.ids = ids;
  a.pos = positions;
  forward(a, ad, b, q.dropout_seed, grads);
  const int64_t T = a.T, H = s.hidden_size;
  // Rows whose next token is a target.
  std::vector<int32_t> rows, targets;
  for (int64_t t = 0; t + 1 < T; ++t)
    if ((mask.empty() || mask[static_cast<size_t>(t + 1)]) && (positions.empty() || positions[static_cast<size_t>(t + 1)] != 0)) {
      rows.push_back(static_cast<int32_t>(t));  // a segment's first token is not predicted from the one before
      targets.push_back(ids[static_cast<size_t>(t + 1)]);
    }
  SeqLoss out;
  out.tokens = static_cast<int64_t>(rows.size());
  // The LM head and cross entropy chunk by chunk: at most loss_chunk_ x vocab logits live at once.
  TBuf dxf;
  if (grads) dxf = o.alloc(T * H);
  out.nll_sum = o.cross_entropy(frozen_->lm_head, a.xf, H, rows, targets, s.final_softcap, loss_chunk_, grad_scale, grads ? &dxf : nullptr);
  if (grads) {
    TBuf dx = o.alloc(T * H);
    o.rmsnorm_bwd(a.x_last, weights_or_null(frozen_->final_norm), a.r_f, dxf, T, H, dx, false);
    for (int li = s.num_layers - 1; li >= 0; --li) backward_layer(li, a, ad, b, dx, li > 0);
  }
  GF_RETURN_IF_ERROR(o.status());
  return out;
}

Result<std::vector<float>> LoraModel::logits(const std::vector<int32_t>& ids, const LoraAdapter& ad) {
  if (ids.empty()) return Err("no tokens");
  for (int32_t id : ids)
    if (id < 0 || id >= spec().vocab_size) return Err("token id " + std::to_string(id) + " is outside the vocabulary");
  TrainOps& o = *ops_;
  Bound b = bind(ad, nullptr);
  Acts a;
  a.T = static_cast<int64_t>(ids.size());
  a.ids = ids;
  forward(a, ad, b, 0, false);
  const int64_t V = spec().vocab_size;
  TBuf lg = o.alloc(a.T * V);
  o.linear(frozen_->lm_head, a.xf, a.T, lg, false);
  std::vector<float> out(static_cast<size_t>(a.T * V));
  o.download(lg, out.data());
  GF_RETURN_IF_ERROR(o.status());
  if (spec().final_softcap > 0)
    for (auto& v : out) v = spec().final_softcap * std::tanh(v / spec().final_softcap);
  return out;
}

}  // namespace gf::train
