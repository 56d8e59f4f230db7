// The backward of one decoder layer for the LoRA parameters, in the reverse
// order of LoraModel::forward (lora_model.cpp). dx holds the gradient of the
// loss with respect to the layer's output on entry and its input on return.
#include "train/lora_model_impl.h"

namespace gf::train {

void LoraModel::backward_layer(int li, Acts& a, const LoraAdapter& ad, Bound& b, TBuf& dx, bool need_dx) {
  TrainOps& o = *ops_;
  const ModelSpec& s = spec();
  const LayerSpec& ls = s.layers[static_cast<size_t>(li)];
  const LayerTensors& t = model_->layers[static_cast<size_t>(li)];
  LayerActs& L = a.layers[static_cast<size_t>(li)];
  const auto& fl = frozen_->layers[static_cast<size_t>(li)];
  const int64_t T = a.T, H = s.hidden_size, hd = ls.head_dim, qd = ls.num_heads * hd, kvd = ls.num_kv_heads * hd,
                I = ls.intermediate_size;

  // dx_in (+)= dy W (frozen), then the adapter's part: grads into its A and B, and its input gradient.
  auto proj_back = [&](Proj p, const TBuf& in, const TBuf& dy, TBuf* dxin, bool accumulate) {
    if (dxin) o.linear_t(fl.w[static_cast<size_t>(p)], dy, T, *dxin, accumulate);
    const int idx = ad.index[static_cast<size_t>(li * kNumProj + static_cast<int>(p))];
    if (idx < 0) return;
    const size_t i = static_cast<size_t>(idx);
    const LoraMatrix& m = ad.mats[i];
    const LoraSaved& sv = L.lora[static_cast<size_t>(p)];
    const bool dropped = !sv.keep.empty();
    const float sc = ad.cfg.scaling();
    if (dropped && dxin) {
      // The input gradient goes through the dropout mask.
      TBuf d = o.alloc(T * m.in), dm = o.alloc(T * m.in);
      o.lora_bwd(b.A[i], b.B[i], ad.cfg.rank, m.in, m.out, sc, sv.xd, sv.u, dy, T, &d, false, b.gA[i], b.gB[i]);
      o.dropout(d, sv.keep, 1.0f / (1.0f - ad.cfg.dropout), dm);
      o.add(*dxin, dm);
    } else {
      o.lora_bwd(b.A[i], b.B[i], ad.cfg.rank, m.in, m.out, sc, dropped ? sv.xd : in, sv.u, dy, T, dxin, true, b.gA[i], b.gB[i]);
    }
  };
  auto norm_back = [&](const TBuf& x, const TBuf& w, const TBuf& r, const TBuf& dy, int64_t group, TBuf& out, bool accumulate) {
    o.rmsnorm_bwd(x, weights_or_null(w), r, dy, x.size() / group, group, out, accumulate);
  };

  if (ls.layer_scalar && t.layer_scalar != 1.0f) o.scale(dx, t.layer_scalar);

  // Gemma 4 per-layer input step: x_out = x + post_norm(proj(gelu(gate(x)) * ple)); ple is a constant.
  if (ls.per_layer_input) {
    const int64_t P = s.per_layer_input_dim;
    TBuf dh = o.alloc(T * H), dgm = o.alloc(T * P), dg = o.alloc(T * P), unused = o.alloc(T * P);
    norm_back(L.ple_h, fl.ple_post_norm, L.r_ple, dx, H, dh, false);
    o.linear_t(fl.ple_proj, dh, T, dgm, false);
    o.gelu_mul_bwd(L.ple_g, a.ple[static_cast<size_t>(li)], dgm, T * P, dg, unused);
    o.linear_t(fl.ple_gate, dg, T, dx, true);
  }

  // MLP block: x_out = x_mid + post_ffw_norm(down(gelu(gate(h2)) * up(h2))), h2 = pre_ffw_norm(x_mid).
  TBuf dd = o.alloc(T * H);
  if (ls.sandwich_norms) norm_back(L.d, fl.post_ffw_norm, L.r_d, dx, H, dd, false);
  else o.copy(dd, dx);
  TBuf dm = o.alloc(T * I), dg = o.alloc(T * I), du = o.alloc(T * I);
  proj_back(Proj::Down, L.m, dd, &dm, false);
  o.gelu_mul_bwd(L.g, L.u, dm, T * I, dg, du);
  TBuf dh = o.alloc(T * H);
  proj_back(Proj::Gate, L.h2, dg, &dh, false);
  proj_back(Proj::Up, L.h2, du, &dh, true);
  norm_back(L.x_mid, fl.pre_ffw_norm, L.r_mid, dh, H, dx, true);

  // Attention block: x_mid = x_in + post_attn_norm(o(attention(q, k, v))).
  TBuf da = o.alloc(T * H);
  if (ls.sandwich_norms) norm_back(L.a, fl.post_attn_norm, L.r_a, dx, H, da, false);
  else o.copy(da, dx);
  TBuf datt = o.alloc(T * qd);
  proj_back(Proj::O, L.att, da, &datt, false);
  TBuf dq = o.alloc(T * qd), dk = o.alloc(T * kvd), dv = o.alloc(T * kvd);
  const bool shared = ls.kv_source_layer >= 0;
  LayerActs& kv = shared ? a.layers[static_cast<size_t>(ls.kv_source_layer)] : L;
  o.attention_bwd(attn_shape(ls, T, a.pos_ptr()), L.q, kv.k, kv.v, L.att, L.p, datt, dq, dk, dv);
  if (shared) {
    // Gemma 4 KV sharing: the source layer (earlier, so backpropagated later) takes the k, v gradients.
    if (kv.dk_shared.empty()) kv.dk_shared = o.alloc(dk.size()), kv.dv_shared = o.alloc(dv.size());
    o.add(kv.dk_shared, dk);
    o.add(kv.dv_shared, dv);
  } else if (!L.dk_shared.empty()) {
    o.add(dk, L.dk_shared);
    o.add(dv, L.dv_shared);
  }
  o.rope(dq, T, qd, static_cast<int>(hd), fl.inv_freq, true);
  if (ls.qk_norm) norm_back(L.q_raw, fl.q_norm, L.r_q, dq, hd, dq, false);
  if (!shared) {
    o.rope(dk, T, kvd, static_cast<int>(hd), fl.inv_freq, true);
    if (ls.qk_norm) norm_back(L.k_raw, fl.k_norm, L.r_k, dk, hd, dk, false);
    if (ls.v_norm) o.rmsnorm_bwd(L.v_raw, nullptr, L.r_v, dv, T * ls.num_kv_heads, hd, dv, false);
    if (ls.k_eq_v) o.add(dk, dv);
  }
  // The first layer's input is the frozen embedding: only the adapters' gradients are needed there.
  TBuf* dh1 = need_dx ? &dh : nullptr;
  proj_back(Proj::Q, L.h1, dq, dh1, false);
  if (!shared) proj_back(Proj::K, L.h1, dk, dh1, true);
  if (!shared && !ls.k_eq_v) proj_back(Proj::V, L.h1, dv, dh1, true);
  if (need_dx) norm_back(L.x_in, fl.input_norm, L.r_in, dh, H, dx, true);
  // The layer's saved activations are no longer needed (layers sharing its K/V come later, so are done).
  L = LayerActs();
}

}  // namespace gf::train
