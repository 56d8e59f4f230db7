#include "train/lora.h"

#include <algorithm>
#include <cmath>
#include <sstream>


namespace gf::train {

const char* proj_module(Proj p) {
  static const char* names[kNumProj] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return names[static_cast<int>(p)];
}
const char* proj_block(Proj p) { return static_cast<int>(p) <= static_cast<int>(Proj::O) ? "self_attn" : "mlp"; }

float LoraConfig::scaling() const {
  return rslora ? alpha / std::sqrt(static_cast<float>(rank)) : alpha / static_cast<float>(rank);
}

Result<std::vector<Proj>> parse_targets(const std::string& s) {
  if (s == "all" || s == "all-linear" || s.empty())
    return std::vector<Proj>{Proj::Q, Proj::K, Proj::V, Proj::O, Proj::Gate, Proj::Up, Proj::Down};
  std::vector<Proj> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (item.size() > 5 && item.compare(item.size() - 5, 5, "_proj") == 0) item.resize(item.size() - 5);
    int found = -1;
    for (int p = 0; p < kNumProj; ++p)
      if (item + "_proj" == proj_module(static_cast<Proj>(p))) found = p;
    if (found < 0) return Err("unknown LoRA target \"" + item + "\": use q, k, v, o, gate, up, down (or all-linear)");
    bool dup = false;
    for (Proj p : out) dup |= static_cast<int>(p) == found;
    if (!dup) out.push_back(static_cast<Proj>(found));
  }
  if (out.empty()) return Err("no LoRA targets given");
  return out;
}

int64_t LoraAdapter::num_params() const {
  int64_t n = 0;
  for (const auto& m : mats) n += static_cast<int64_t>(m.A.size() + m.B.size());
  return n;
}

void proj_shape(const ModelSpec& s, int layer, Proj p, int64_t& in, int64_t& out) {
  const LayerSpec& l = s.layers[static_cast<size_t>(layer)];
  const int64_t H = s.hidden_size, qd = static_cast<int64_t>(l.num_heads) * l.head_dim,
                kvd = static_cast<int64_t>(l.num_kv_heads) * l.head_dim, I = l.intermediate_size;
  switch (p) {
    case Proj::Q: in = H, out = qd; break;
    case Proj::K: in = H, out = kvd; break;
    case Proj::V: in = H, out = l.k_eq_v ? 0 : kvd; break;
    case Proj::O: in = qd, out = H; break;
    case Proj::Gate: case Proj::Up: in = H, out = I; break;
    case Proj::Down: in = I, out = H; break;
  }
  // KV-sharing layers compute no k or v of their own.
  if (l.kv_source_layer >= 0 && (p == Proj::K || p == Proj::V)) out = 0;
}

uint64_t mix_seed(uint64_t a, uint64_t b) {
  Rng r(a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E019ull);
  r.next();
  return r.next();
}

Result<LoraAdapter> make_adapter(const ModelSpec& s, const LoraConfig& cfg, uint64_t seed) {
  if (cfg.rank <= 0) return Err("LoRA rank must be positive");
  if (!(cfg.dropout >= 0.0f && cfg.dropout < 1.0f)) return Err("LoRA dropout must be in [0, 1)");
  if (cfg.targets.empty()) return Err("no LoRA targets given");
  LoraAdapter a;
  a.cfg = cfg;
  std::sort(a.cfg.targets.begin(), a.cfg.targets.end());  // canonical order: (layer, projection)
  a.index.assign(static_cast<size_t>(s.num_layers * kNumProj), -1);
  for (int l = 0; l < s.num_layers; ++l)
    for (Proj p : a.cfg.targets) {
      LoraMatrix m;
      m.layer = l;
      m.proj = p;
      proj_shape(s, l, p, m.in, m.out);
      if (m.out == 0) continue;
      m.A.resize(static_cast<size_t>(cfg.rank * m.in));
      m.B.assign(static_cast<size_t>(m.out * cfg.rank), 0.0f);
      // kaiming_uniform_(a = sqrt(5)): bound = sqrt(6 / ((1 + 5) fan_in)) = 1 / sqrt(in).
      Rng rng(mix_seed(seed, static_cast<uint64_t>(l * kNumProj + static_cast<int>(p))));
      const double bound = 1.0 / std::sqrt(static_cast<double>(m.in));
      for (auto& v : m.A) v = static_cast<float>((2.0 * rng.uniform() - 1.0) * bound);
      a.index[static_cast<size_t>(l * kNumProj + static_cast<int>(p))] = static_cast<int>(a.mats.size());
      a.mats.push_back(std::move(m));
    }
  if (a.mats.empty()) return Err("the LoRA targets match no projection of this model");
  return a;
}

LoraGrads LoraGrads::zeros_like(const LoraAdapter& a) {
  LoraGrads g;
  for (size_t i = 0; i < a.num_tensors(); ++i) g.g.emplace_back(a.tensor(i).size(), 0.0f);
  return g;
}
void LoraGrads::zero() {
  for (auto& v : g) std::fill(v.begin(), v.end(), 0.0f);
}

}  // namespace gf::train
