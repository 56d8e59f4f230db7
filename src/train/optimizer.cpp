#include "train/optimizer.h"

#include <cmath>

#include "core/thread_pool.h"

namespace gf::train {

AdamW::AdamW(const AdamWConfig& cfg, const std::vector<size_t>& sizes) : cfg_(cfg) {
  for (size_t n : sizes) {
    m_.emplace_back(n, 0.0f);
    v_.emplace_back(n, 0.0f);
  }
}

void AdamW::step(std::vector<std::vector<float>*>& params, const std::vector<std::vector<float>>& grads, double lr) {
  ++t_;
  const double b1 = cfg_.beta1, b2 = cfg_.beta2;
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(t_)), bc2 = 1.0 - std::pow(b2, static_cast<double>(t_));
  const double step_size = lr / bc1, bc2_sqrt = std::sqrt(bc2);
  const double decay = 1.0 - lr * cfg_.weight_decay;
  for (size_t i = 0; i < params.size(); ++i) {
    std::vector<float>& p = *params[i];
    const std::vector<float>& g = grads[i];
    std::vector<float>& m = m_[i];
    std::vector<float>& v = v_[i];
    parallel_for(static_cast<int64_t>(p.size()), [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) {
        // torch.optim.AdamW: p *= 1 - lr wd; m, v updates; p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps).
        const double gj = g[static_cast<size_t>(j)];
        double pj = p[static_cast<size_t>(j)] * decay;
        const double mj = b1 * m[static_cast<size_t>(j)] + (1.0 - b1) * gj;
        const double vj = b2 * v[static_cast<size_t>(j)] + (1.0 - b2) * gj * gj;
        m[static_cast<size_t>(j)] = static_cast<float>(mj);
        v[static_cast<size_t>(j)] = static_cast<float>(vj);
        pj -= step_size * mj / (std::sqrt(vj) / bc2_sqrt + cfg_.eps);
        p[static_cast<size_t>(j)] = static_cast<float>(pj);
      }
    }, 4096);
  }
}

Result<Schedule> parse_schedule(const std::string& s) {
  if (s == "cosine") return Schedule::Cosine;
  if (s == "linear") return Schedule::Linear;
  if (s == "constant") return Schedule::Constant;
  return Err("unknown --schedule \"" + s + "\": use cosine, linear or constant");
}

const char* schedule_name(Schedule s) {
  switch (s) {
    case Schedule::Cosine: return "cosine";
    case Schedule::Linear: return "linear";
    case Schedule::Constant: return "constant";
  }
  return "?";
}

double lr_at(Schedule s, double base_lr, int64_t step, int64_t warmup, int64_t total) {
  if (step < warmup) return base_lr * static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup));
  if (s == Schedule::Constant) return base_lr;
  const double progress = static_cast<double>(step - warmup) / static_cast<double>(std::max<int64_t>(1, total - warmup));
  if (s == Schedule::Linear) return base_lr * std::max(0.0, 1.0 - progress);
  return base_lr * std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
}

double clip_grad_norm(std::vector<std::vector<float>>& grads, double max_norm) {
  // Per-matrix sums on the thread pool, added in matrix order: the same norm whatever the threads.
  std::vector<double> per(grads.size(), 0.0);
  parallel_for(static_cast<int64_t>(grads.size()), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      double ss = 0;
      for (float v : grads[static_cast<size_t>(i)]) ss += static_cast<double>(v) * v;
      per[static_cast<size_t>(i)] = ss;
    }
  }, 1);
  double ss = 0;
  for (double x : per) ss += x;
  const double norm = std::sqrt(ss);
  if (max_norm > 0 && norm > max_norm) {
    const float c = static_cast<float>(max_norm / (norm + 1e-6));
    parallel_for(static_cast<int64_t>(grads.size()), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        for (auto& v : grads[static_cast<size_t>(i)]) v *= c;
    }, 1);
  }
  return norm;
}

}  // namespace gf::train
