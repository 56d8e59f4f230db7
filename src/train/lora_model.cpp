#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/dequant.h"
#include "backend/cpu/elementwise.h"
#include "backend/cpu/matmul.h"
#include "core/half.h"
#include "core/thread_pool.h"
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

namespace {

// A float32 copy of w (same shape).
Result<Transposed> to_f32(const TensorView& w) {
  Transposed t;
  t.view = w;
  t.view.dtype = DType::F32;
  t.bytes.resize(static_cast<size_t>(w.numel()) * 4);
  for (int64_t r = 0; r < w.rows(); ++r)
    GF_RETURN_IF_ERROR(dequantize_row(w.dtype, w.row(r), reinterpret_cast<float*>(t.bytes.data()) + r * w.cols(), w.cols()));
  t.view.data = t.bytes.data();
  t.view.nbytes = t.bytes.size();
  return t;
}

// [rows, cols] -> [cols, rows]: a plain dtype keeps its bytes, a block-quantized one becomes float32.
Result<Transposed> transpose(const TensorView& w) {
  Transposed t;
  const int64_t rows = w.rows(), cols = w.cols();
  t.view.name = w.name + "^T";
  t.view.shape = {cols, rows};
  const bool plain = w.dtype == DType::F32 || w.dtype == DType::BF16 || w.dtype == DType::F16;
  const size_t es = plain ? (w.dtype == DType::F32 ? 4 : 2) : 4;
  t.view.dtype = plain ? w.dtype : DType::F32;
  t.bytes.resize(static_cast<size_t>(rows * cols) * es);
  if (plain) {
    // 64 x 64 tiles: both the rows read and the rows written stay in cache.
    auto copy = [&](auto* dst, const auto* src) {
      parallel_for((rows + 63) / 64, [&](int64_t b0, int64_t b1) {
        for (int64_t r0 = b0 * 64; r0 < std::min(rows, b1 * 64); r0 += 64)
          for (int64_t c0 = 0; c0 < cols; c0 += 64)
            for (int64_t r = r0; r < std::min(rows, r0 + 64); ++r)
              for (int64_t c = c0; c < std::min(cols, c0 + 64); ++c) dst[c * rows + r] = src[r * cols + c];
      });
    };
    if (es == 4) copy(reinterpret_cast<uint32_t*>(t.bytes.data()), reinterpret_cast<const uint32_t*>(w.data));
    else copy(reinterpret_cast<uint16_t*>(t.bytes.data()), reinterpret_cast<const uint16_t*>(w.data));
  } else {
    std::vector<float> row(static_cast<size_t>(cols));
    float* dst = reinterpret_cast<float*>(t.bytes.data());
    for (int64_t r = 0; r < rows; ++r) {
      GF_RETURN_IF_ERROR(dequantize_row(w.dtype, w.row(r), row.data(), cols));
      for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = row[static_cast<size_t>(c)];
    }
  }
  t.view.data = t.bytes.data();
  t.view.nbytes = t.bytes.size();
  return t;
}

}  // namespace

LoraModel::LoraModel(const Model& m) : model_(&m) {}
LoraModel::~LoraModel() = default;

Result<std::unique_ptr<LoraModel>> LoraModel::create(const Model& m, bool f32_weights) {
  const ModelSpec& s = m.spec;
  GF_RETURN_IF_ERROR(s.check_supported());
  if (!m.embed || !m.lm_head || m.layers.size() != static_cast<size_t>(s.num_layers)) return Err("finetune: the model's weights are not bound");
  for (int i = 0; i < s.num_layers; ++i) {
    const LayerSpec& l = s.layers[static_cast<size_t>(i)];
    const std::string at = "finetune does not support " + std::string(family_name(s.family)) + " layer " + std::to_string(i) + ": ";
    if (l.moe) return Err(at + "mixture-of-experts blocks are not trainable yet (dense models only)");
  }
  std::unique_ptr<LoraModel> lm(new LoraModel(m));
  lm->frozen_ = std::make_unique<Frozen>();
  lm->frozen_->layers.resize(static_cast<size_t>(s.num_layers));
  for (int i = 0; i < s.num_layers; ++i) {
    auto& fl = lm->frozen_->layers[static_cast<size_t>(i)];
    const LayerSpec& ls = s.layers[static_cast<size_t>(i)];
    for (int p = 0; p < kNumProj; ++p)
      if (const TensorView* w = proj_weight(m.layers[static_cast<size_t>(i)], static_cast<Proj>(p))) {
        GF_ASSIGN_OR_RETURN(fl.wt[static_cast<size_t>(p)], transpose(*w));
        if (f32_weights) {
          GF_ASSIGN_OR_RETURN(fl.wf[static_cast<size_t>(p)], to_f32(*w));
        }
      }
    fl.inv_freq = ls.rope.inv_freq(ls.head_dim);
    const LayerTensors& lt = m.layers[static_cast<size_t>(i)];
    if (ls.per_layer_input) {
      if (!lt.ple_gate || !lt.ple_proj || !m.ple_embed || !m.ple_model_proj) return Err("finetune: the per-layer input weights are not bound");
      GF_ASSIGN_OR_RETURN(fl.ple_gate_t, transpose(*lt.ple_gate));
      GF_ASSIGN_OR_RETURN(fl.ple_proj_t, transpose(*lt.ple_proj));
      if (f32_weights) {
        GF_ASSIGN_OR_RETURN(fl.ple_gate_f, to_f32(*lt.ple_gate));
        GF_ASSIGN_OR_RETURN(fl.ple_proj_f, to_f32(*lt.ple_proj));
        GF_ASSIGN_OR_RETURN(fl.ple_gate_t, to_f32(fl.ple_gate_t.view));
        GF_ASSIGN_OR_RETURN(fl.ple_proj_t, to_f32(fl.ple_proj_t.view));
      }
    }
  }
  if (f32_weights && m.ple_model_proj) {
    GF_ASSIGN_OR_RETURN(lm->frozen_->ple_model_proj_f, to_f32(*m.ple_model_proj));
  }
  GF_ASSIGN_OR_RETURN(lm->frozen_->lm_head_t, transpose(*m.lm_head));
  if (f32_weights) {
    GF_ASSIGN_OR_RETURN(lm->frozen_->lm_head_f, to_f32(*m.lm_head));
    // The backward's transposes too, so both directions use the same kernel.
    for (auto& fl : lm->frozen_->layers)
      for (auto& t : fl.wt)
        if (t.view.data && t.view.dtype != DType::F32) {
          GF_ASSIGN_OR_RETURN(t, to_f32(t.view));
        }
    if (lm->frozen_->lm_head_t.view.dtype != DType::F32) {
      GF_ASSIGN_OR_RETURN(lm->frozen_->lm_head_t, to_f32(lm->frozen_->lm_head_t.view));
    }
  }
  lm->frozen_->f32 = f32_weights;
  return lm;
}

const TensorView& LoraModel::lm_head() const { return frozen_->f32 ? frozen_->lm_head_f.view : *model_->lm_head; }

Status LoraModel::check_ids(const std::vector<int32_t>& ids) const {
  if (ids.size() < 2) return Err("a training sequence needs at least 2 tokens");
  for (int32_t id : ids)
    if (id < 0 || id >= spec().vocab_size)
      return Err("token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(spec().vocab_size) + ")");
  return Ok();
}

void LoraModel::forward(Acts& a, const LoraAdapter& ad, uint64_t dropout_seed, bool training) {
  const ModelSpec& s = spec();
  const Model& m = *model_;
  const int64_t T = a.T, H = s.hidden_size;
  const float eps = s.rms_norm_eps;
  std::vector<float> x(static_cast<size_t>(T * H));
  for (int64_t t = 0; t < T; ++t) {
    float* row = x.data() + t * H;
    (void)dequantize_row(m.embed->dtype, m.embed->row(a.ids[static_cast<size_t>(t)]), row, H);
    for (int64_t i = 0; i < H; ++i) row[i] *= s.embed_scale;
  }
  a.layers.resize(static_cast<size_t>(s.num_layers));
  if (s.per_layer_input_dim > 0) per_layer_inputs(a, x);
  for (int li = 0; li < s.num_layers; ++li) {
    const LayerSpec& ls = s.layers[static_cast<size_t>(li)];
    const LayerTensors& t = m.layers[static_cast<size_t>(li)];
    LayerActs& L = a.layers[static_cast<size_t>(li)];
    const int64_t hd = ls.head_dim, qd = ls.num_heads * hd, kvd = ls.num_kv_heads * hd, I = ls.intermediate_size;
    // One adapted (or frozen) projection: out = in W^T (+ LoRA).
    auto proj = [&](Proj p, const float* in, std::vector<float>& out) {
      const TensorView* W = frozen_->f32 ? &frozen_->layers[static_cast<size_t>(li)].wf[static_cast<size_t>(p)].view : proj_weight(t, p);
      out.resize(static_cast<size_t>(T * W->rows()));
      linear(*W, in, T, out.data());
      if (const LoraMatrix* lm = ad.find(li, p)) {
        Rng rng(mix_seed(dropout_seed, static_cast<uint64_t>(li * kNumProj + static_cast<int>(p))));
        lora_forward(*lm, ad.cfg, in, T, out.data(), L.lora[static_cast<size_t>(p)], training ? &rng : nullptr);
      }
    };
    auto norm = [&](const std::vector<float>& in, const std::vector<float>* w, int64_t group, std::vector<float>& out,
                    std::vector<float>& r) {
      out.resize(in.size());
      r.resize(in.size() / static_cast<size_t>(group));
      rmsnorm_fwd(in.data(), w ? w->data() : nullptr, static_cast<int64_t>(r.size()), group, eps, out.data(), r.data());
    };
    // Attention block.
    L.x_in = x;
    norm(L.x_in, &t.input_norm, H, L.h1, L.r_in);
    const auto& fl = frozen_->layers[static_cast<size_t>(li)];
    proj(Proj::Q, L.h1.data(), L.q_raw);
    if (ls.qk_norm) norm(L.q_raw, &t.q_norm, hd, L.q, L.r_q);
    else L.q = L.q_raw;
    rope_apply(L.q.data(), T, qd, static_cast<int>(hd), fl.inv_freq, false, a.pos_ptr());
    // Gemma 4 KV sharing: keys and values are the source layer's (normed and rotated there).
    const LayerActs* kv = &L;
    if (ls.kv_source_layer >= 0) {
      kv = &a.layers[static_cast<size_t>(ls.kv_source_layer)];
    } else {
      proj(Proj::K, L.h1.data(), L.k_raw);
      // Gemma 4 k_eq_v: the value is the raw k projection (before k_norm and RoPE), as in the decoder.
      if (ls.k_eq_v) L.v_raw = L.k_raw;
      else proj(Proj::V, L.h1.data(), L.v_raw);
      if (ls.qk_norm) norm(L.k_raw, &t.k_norm, hd, L.k, L.r_k);
      else L.k = L.k_raw;
      if (ls.v_norm) norm(L.v_raw, nullptr, hd, L.v, L.r_v);
      else L.v = L.v_raw;
      rope_apply(L.k.data(), T, kvd, static_cast<int>(hd), fl.inv_freq, false, a.pos_ptr());
    }
    L.att.resize(static_cast<size_t>(T * qd));
    L.p.resize(static_cast<size_t>(ls.num_heads * T * T));
    attention_fwd(attn_shape(ls, T, a.pos_ptr()), L.q.data(), kv->k.data(), kv->v.data(), L.att.data(), L.p.data());
    proj(Proj::O, L.att.data(), L.a);
    std::vector<float> tmp;
    if (ls.sandwich_norms) norm(L.a, &t.post_attn_norm, H, tmp, L.r_a);
    const std::vector<float>& add_a = ls.sandwich_norms ? tmp : L.a;
    for (size_t i = 0; i < x.size(); ++i) x[i] += add_a[i];
    // MLP block.
    L.x_mid = x;
    norm(L.x_mid, &t.pre_ffw_norm, H, L.h2, L.r_mid);
    proj(Proj::Gate, L.h2.data(), L.g);
    proj(Proj::Up, L.h2.data(), L.u);
    L.m = L.g;
    cpu::gelu_tanh_mul(L.m.data(), L.u.data(), T * I);  // the decoder's kernel, bit for bit
    proj(Proj::Down, L.m.data(), L.d);
    if (ls.sandwich_norms) norm(L.d, &t.post_ffw_norm, H, tmp, L.r_d);
    const std::vector<float>& add_d = ls.sandwich_norms ? tmp : L.d;
    for (size_t i = 0; i < x.size(); ++i) x[i] += add_d[i];
    if (ls.per_layer_input) {
      // x += post_norm(proj(gelu_tanh(gate(x)) * ple[l])), as Decoder::per_layer_input_step.
      const int64_t P = s.per_layer_input_dim;
      L.ple_g.resize(static_cast<size_t>(T * P));
      linear(frozen_->f32 ? fl.ple_gate_f.view : *t.ple_gate, x.data(), T, L.ple_g.data());
      std::vector<float> gm = L.ple_g;
      cpu::gelu_tanh_mul(gm.data(), a.ple[static_cast<size_t>(li)].data(), T * P);
      L.ple_h.resize(static_cast<size_t>(T * H));
      linear(frozen_->f32 ? fl.ple_proj_f.view : *t.ple_proj, gm.data(), T, L.ple_h.data());
      norm(L.ple_h, &t.ple_post_norm, H, tmp, L.r_ple);
      for (size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];
    }
    if (ls.layer_scalar && t.layer_scalar != 1.0f)
      for (auto& v : x) v *= t.layer_scalar;
  }
  a.x_last = std::move(x);
  a.xf.resize(a.x_last.size());
  a.r_f.resize(static_cast<size_t>(T));
  rmsnorm_fwd(a.x_last.data(), m.final_norm.data(), T, H, eps, a.xf.data(), a.r_f.data());
}

// Gemma 4 PLE: per layer l, (rmsnorm(x0 W_proj / sqrt(hidden))[l] + E_ple[ids][l] * sqrt(P)) / sqrt(2), as the decoder.
void LoraModel::per_layer_inputs(Acts& a, const std::vector<float>& x0) {
  const ModelSpec& s = spec();
  const Model& m = *model_;
  const int64_t T = a.T, L = s.num_layers, P = s.per_layer_input_dim;
  std::vector<float> tok(static_cast<size_t>(T * L * P)), ctx(tok.size()), r(static_cast<size_t>(T * L));
  float tok_scale = std::sqrt(static_cast<float>(P));
  if (s.weights_dtype == "bfloat16") tok_scale = bf16_to_f32(f32_to_bf16(tok_scale));
  for (int64_t t = 0; t < T; ++t) {
    float* row = tok.data() + t * L * P;
    (void)dequantize_row(m.ple_embed->dtype, m.ple_embed->row(a.ids[static_cast<size_t>(t)]), row, L * P);
    for (int64_t i = 0; i < L * P; ++i) row[i] *= tok_scale;
  }
  linear(frozen_->f32 ? frozen_->ple_model_proj_f.view : *m.ple_model_proj, x0.data(), T, ctx.data());
  const float inv_h = static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.hidden_size)));
  for (auto& v : ctx) v *= inv_h;
  rmsnorm_fwd(ctx.data(), m.ple_proj_norm.data(), T * L, P, s.rms_norm_eps, ctx.data(), r.data());
  const float inv2 = static_cast<float>(1.0 / std::sqrt(2.0));
  for (size_t i = 0; i < ctx.size(); ++i) ctx[i] = (ctx[i] + tok[i]) * inv2;
  a.ple.assign(static_cast<size_t>(L), std::vector<float>(static_cast<size_t>(T * P)));
  for (int64_t l = 0; l < L; ++l)
    for (int64_t t = 0; t < T; ++t) std::copy_n(ctx.data() + (t * L + l) * P, P, a.ple[static_cast<size_t>(l)].data() + t * P);
}

Result<SeqLoss> LoraModel::forward_backward(const std::vector<int32_t>& ids, const std::vector<uint8_t>& mask, const LoraAdapter& ad,
                                            LoraGrads* grads, float grad_scale, uint64_t dropout_seed) {
  return forward_backward(ids, mask, {}, ad, grads, grad_scale, dropout_seed);
}

Result<SeqLoss> LoraModel::forward_backward(const std::vector<int32_t>& ids, const std::vector<uint8_t>& mask,
                                            const std::vector<int32_t>& positions, const LoraAdapter& ad, LoraGrads* grads,
                                            float grad_scale, uint64_t dropout_seed) {
  GF_RETURN_IF_ERROR(check_ids(ids));
  if (!positions.empty()) {
    bool ok = positions.size() == ids.size() && positions[0] == 0;
    for (size_t t = 1; ok && t < positions.size(); ++t) ok = positions[t] == 0 || positions[t] == positions[t - 1] + 1;
    if (!ok) return Err("packed positions must restart at 0 and count up by 1 within each segment");
  }
  if (!mask.empty() && mask.size() != ids.size()) return Err("loss mask has " + std::to_string(mask.size()) + " entries for " + std::to_string(ids.size()) + " tokens");
  const ModelSpec& s = spec();
  Acts a;
  a.T = static_cast<int64_t>(ids.size());
  a.ids = ids;
  a.pos = positions;
  forward(a, ad, dropout_seed, grads != nullptr);
  const int64_t T = a.T, H = s.hidden_size, V = s.vocab_size;
  const float cap = s.final_softcap;
  // Rows whose next token is a target.
  std::vector<int32_t> rows;
  for (int64_t t = 0; t + 1 < T; ++t)
    if ((mask.empty() || mask[static_cast<size_t>(t + 1)]) && (positions.empty() || positions[static_cast<size_t>(t + 1)] != 0))
      rows.push_back(static_cast<int32_t>(t));  // a segment's first token is not predicted from the one before
  SeqLoss out;
  out.tokens = static_cast<int64_t>(rows.size());
  std::vector<float> dxf(grads ? static_cast<size_t>(T * H) : 0, 0.0f);
  // The LM head and cross entropy chunk by chunk: at most loss_chunk_ x vocab logits live at once.
  const int64_t C = std::max<int64_t>(1, loss_chunk_);
  std::vector<float> xc, lg, dh;
  for (size_t c0 = 0; c0 < rows.size(); c0 += static_cast<size_t>(C)) {
    const int64_t n = std::min<int64_t>(C, static_cast<int64_t>(rows.size() - c0));
    xc.resize(static_cast<size_t>(n * H));
    lg.resize(static_cast<size_t>(n * V));
    for (int64_t i = 0; i < n; ++i) std::copy_n(a.xf.data() + rows[c0 + static_cast<size_t>(i)] * H, H, xc.data() + i * H);
    linear(lm_head(), xc.data(), n, lg.data());
    for (int64_t i = 0; i < n; ++i) {
      float* l = lg.data() + i * V;
      if (cap > 0)
        for (int64_t v = 0; v < V; ++v) l[v] = cap * std::tanh(l[v] / cap);
      const int32_t target = ids[static_cast<size_t>(rows[c0 + static_cast<size_t>(i)] + 1)];
      const float mx = *std::max_element(l, l + V);
      double z = 0;
      for (int64_t v = 0; v < V; ++v) z += std::exp(static_cast<double>(l[v]) - mx);
      const double lse = mx + std::log(z);
      out.nll_sum += lse - l[target];
      if (!grads) continue;
      // d nll / d logit = softmax - onehot, through the soft-cap's tanh.
      for (int64_t v = 0; v < V; ++v) {
        double gv = std::exp(static_cast<double>(l[v]) - lse) - (v == target ? 1.0 : 0.0);
        if (cap > 0) gv *= 1.0 - (static_cast<double>(l[v]) / cap) * (static_cast<double>(l[v]) / cap);
        l[v] = static_cast<float>(gv * grad_scale);
      }
    }
    if (!grads) continue;
    dh.resize(static_cast<size_t>(n * H));
    linear(frozen_->lm_head_t.view, lg.data(), n, dh.data());
    for (int64_t i = 0; i < n; ++i) std::copy_n(dh.data() + i * H, H, dxf.data() + rows[c0 + static_cast<size_t>(i)] * H);
  }
  if (!grads) return out;
  std::vector<float> dx(static_cast<size_t>(T * H));
  rmsnorm_bwd(a.x_last.data(), model_->final_norm.data(), a.r_f.data(), dxf.data(), T, H, dx.data(), false);
  for (int li = s.num_layers - 1; li >= 0; --li) backward_layer(li, a, ad, *grads, dx, li > 0);
  return out;
}

Result<std::vector<float>> LoraModel::logits(const std::vector<int32_t>& ids, const LoraAdapter& ad) {
  if (ids.empty()) return Err("no tokens");
  for (int32_t id : ids)
    if (id < 0 || id >= spec().vocab_size) return Err("token id " + std::to_string(id) + " is outside the vocabulary");
  Acts a;
  a.T = static_cast<int64_t>(ids.size());
  a.ids = ids;
  forward(a, ad, 0, false);
  const int64_t V = spec().vocab_size;
  std::vector<float> out(static_cast<size_t>(a.T * V));
  linear(lm_head(), a.xf.data(), a.T, out.data());
  if (spec().final_softcap > 0)
    for (auto& v : out) v = spec().final_softcap * std::tanh(v / spec().final_softcap);
  return out;
}

}  // namespace gf::train
