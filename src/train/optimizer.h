// AdamW over the adapter tensors (fp32 state), the learning-rate schedule and
// global-norm gradient clipping, with the definitions PyTorch uses
// (torch.optim.AdamW, decoupled weight decay; transformers' warmup + cosine /
// linear / constant schedules; clip_grad_norm_ with max_norm / (norm + 1e-6)).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace gf::train {

struct AdamWConfig {
  double lr = 1e-4;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW() = default;
  AdamW(const AdamWConfig& cfg, const std::vector<size_t>& sizes);
  // One update of params[i] with grads[i] at learning rate lr (the schedule's value).
  void step(std::vector<std::vector<float>*>& params, const std::vector<std::vector<float>>& grads, double lr);
  int64_t steps() const { return t_; }
  // State for checkpoints: m and v of every tensor, and the step count.
  std::vector<std::vector<float>>& m() { return m_; }
  std::vector<std::vector<float>>& v() { return v_; }
  void set_steps(int64_t t) { t_ = t; }
  const AdamWConfig& config() const { return cfg_; }

 private:
  AdamWConfig cfg_;
  std::vector<std::vector<float>> m_, v_;
  int64_t t_ = 0;
};

enum class Schedule { Cosine, Linear, Constant };
Result<Schedule> parse_schedule(const std::string& s);
const char* schedule_name(Schedule s);

// Learning rate of optimizer step `step` (0-based) of `total`: linear warmup over
// `warmup` steps from 0, then the schedule's decay to 0 at `total` (transformers'
// get_cosine/linear/constant_schedule_with_warmup).
double lr_at(Schedule s, double base_lr, int64_t step, int64_t warmup, int64_t total);

// The global L2 norm of the gradients; scales them to max_norm when above it (max_norm <= 0: no clipping).
double clip_grad_norm(std::vector<std::vector<float>>& grads, double max_norm);

}  // namespace gf::train
