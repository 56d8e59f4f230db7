// The backward of one decoder layer for the LoRA parameters, in the reverse
// order of LoraModel::forward (lora_model.cpp). dx holds the gradient of the
// loss with respect to the layer's output on entry and its input on return.
#include <algorithm>

#include "train/lora_model_impl.h"

namespace gf::train {

void LoraModel::backward_layer(int li, Acts& a, const LoraAdapter& ad, LoraGrads& g, std::vector<float>& dx, bool need_dx) {
  const ModelSpec& s = spec();
  const LayerSpec& ls = s.layers[static_cast<size_t>(li)];
  const LayerTensors& t = model_->layers[static_cast<size_t>(li)];
  LayerActs& L = a.layers[static_cast<size_t>(li)];
  const auto& fl = frozen_->layers[static_cast<size_t>(li)];
  const int64_t T = a.T, H = s.hidden_size, hd = ls.head_dim, qd = ls.num_heads * hd, kvd = ls.num_kv_heads * hd,
                I = ls.intermediate_size;

  // dx_in (+)= dy W (frozen), then the adapter's part: grads into its A and B, and its input gradient.
  auto proj_back = [&](Proj p, const float* in, const float* dy, float* dxin, bool accumulate) {
    if (dxin) {
      const TensorView& wt = fl.wt[static_cast<size_t>(p)].view;
      if (accumulate) linear_add(wt, dy, T, dxin);
      else linear(wt, dy, T, dxin);
    }
    const int idx = ad.index[static_cast<size_t>(li * kNumProj + static_cast<int>(p))];
    if (idx < 0) return;
    const LoraMatrix& m = ad.mats[static_cast<size_t>(idx)];
    lora_backward(m, ad.cfg, in, T, dy, L.lora[static_cast<size_t>(p)], dxin, g.A(static_cast<size_t>(idx)).data(),
                  g.B(static_cast<size_t>(idx)).data());
  };

  if (ls.layer_scalar && t.layer_scalar != 1.0f)
    for (auto& v : dx) v *= t.layer_scalar;

  // Gemma 4 per-layer input step: x_out = x + post_norm(proj(gelu(gate(x)) * ple)); ple is a constant.
  if (ls.per_layer_input) {
    const int64_t P = s.per_layer_input_dim;
    std::vector<float> dh(static_cast<size_t>(T * H)), dgm(static_cast<size_t>(T * P)), dg(dgm.size()), unused(dgm.size());
    rmsnorm_bwd(L.ple_h.data(), t.ple_post_norm.data(), L.r_ple.data(), dx.data(), T, H, dh.data(), false);
    linear(fl.ple_proj_t.view, dh.data(), T, dgm.data());
    gelu_mul_bwd(L.ple_g.data(), a.ple[static_cast<size_t>(li)].data(), dgm.data(), T * P, dg.data(), unused.data());
    linear_add(fl.ple_gate_t.view, dg.data(), T, dx.data());
  }

  // MLP block: x_out = x_mid + post_ffw_norm(down(gelu(gate(h2)) * up(h2))), h2 = pre_ffw_norm(x_mid).
  std::vector<float> dd(static_cast<size_t>(T * H));
  if (ls.sandwich_norms) rmsnorm_bwd(L.d.data(), t.post_ffw_norm.data(), L.r_d.data(), dx.data(), T, H, dd.data(), false);
  else dd = dx;
  std::vector<float> dm(static_cast<size_t>(T * I)), dg(dm.size()), du(dm.size());
  proj_back(Proj::Down, L.m.data(), dd.data(), dm.data(), false);
  gelu_mul_bwd(L.g.data(), L.u.data(), dm.data(), T * I, dg.data(), du.data());
  std::vector<float> dh(static_cast<size_t>(T * H));
  proj_back(Proj::Gate, L.h2.data(), dg.data(), dh.data(), false);
  proj_back(Proj::Up, L.h2.data(), du.data(), dh.data(), true);
  rmsnorm_bwd(L.x_mid.data(), t.pre_ffw_norm.data(), L.r_mid.data(), dh.data(), T, H, dx.data(), true);

  // Attention block: x_mid = x_in + post_attn_norm(o(attention(q, k, v))).
  std::vector<float> da(static_cast<size_t>(T * H));
  if (ls.sandwich_norms) rmsnorm_bwd(L.a.data(), t.post_attn_norm.data(), L.r_a.data(), dx.data(), T, H, da.data(), false);
  else da = dx;
  std::vector<float> datt(static_cast<size_t>(T * qd));
  proj_back(Proj::O, L.att.data(), da.data(), datt.data(), false);
  std::vector<float> dq(static_cast<size_t>(T * qd)), dk(static_cast<size_t>(T * kvd)), dv(dk.size());
  const bool shared = ls.kv_source_layer >= 0;
  LayerActs& kv = shared ? a.layers[static_cast<size_t>(ls.kv_source_layer)] : L;
  attention_bwd(attn_shape(ls, T, a.pos_ptr()), L.q.data(), kv.k.data(), kv.v.data(), L.p.data(), datt.data(), dq.data(), dk.data(), dv.data());
  if (shared) {
    // Gemma 4 KV sharing: the source layer (earlier, so backpropagated later) takes the k, v gradients.
    if (kv.dk_shared.empty()) kv.dk_shared.assign(dk.size(), 0.0f), kv.dv_shared.assign(dv.size(), 0.0f);
    for (size_t i = 0; i < dk.size(); ++i) kv.dk_shared[i] += dk[i], kv.dv_shared[i] += dv[i];
  } else if (!L.dk_shared.empty()) {
    for (size_t i = 0; i < dk.size(); ++i) dk[i] += L.dk_shared[i], dv[i] += L.dv_shared[i];
  }
  rope_apply(dq.data(), T, qd, static_cast<int>(hd), fl.inv_freq, true, a.pos_ptr());
  if (ls.qk_norm) rmsnorm_bwd(L.q_raw.data(), t.q_norm.data(), L.r_q.data(), dq.data(), T * ls.num_heads, hd, dq.data(), false);
  if (!shared) {
    rope_apply(dk.data(), T, kvd, static_cast<int>(hd), fl.inv_freq, true, a.pos_ptr());
    if (ls.qk_norm) rmsnorm_bwd(L.k_raw.data(), t.k_norm.data(), L.r_k.data(), dk.data(), T * ls.num_kv_heads, hd, dk.data(), false);
    if (ls.v_norm) rmsnorm_bwd(L.v_raw.data(), nullptr, L.r_v.data(), dv.data(), T * ls.num_kv_heads, hd, dv.data(), false);
    if (ls.k_eq_v)
      for (size_t i = 0; i < dk.size(); ++i) dk[i] += dv[i];
  }
  // The first layer's input is the frozen embedding: only the adapters' gradients are needed there.
  float* dh1 = need_dx ? dh.data() : nullptr;
  proj_back(Proj::Q, L.h1.data(), dq.data(), dh1, false);
  if (!shared) proj_back(Proj::K, L.h1.data(), dk.data(), dh1, true);
  if (!shared && !ls.k_eq_v) proj_back(Proj::V, L.h1.data(), dv.data(), dh1, true);
  if (need_dx) rmsnorm_bwd(L.x_in.data(), t.input_norm.data(), L.r_in.data(), dh.data(), T, H, dx.data(), true);
  // The layer's saved activations are no longer needed (layers sharing its K/V come later, so are done).
  L = LayerActs();
}

}  // namespace gf::train
