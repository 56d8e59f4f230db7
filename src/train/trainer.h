// The LoRA fine-tuning loop: deterministic data order, micro-batches with
// gradient accumulation, global-norm clipping, AdamW with a warmup +
// cosine/linear/constant schedule, evaluation, metrics.jsonl, atomic
// checkpoints (last K kept) and resume with the same loss curve.
//
// Determinism: the examples of optimizer step s are a function of (seed, s)
// (the data is reshuffled each epoch from the seed), LoRA dropout masks are
// drawn from (seed, s, example), and every kernel reduces in a fixed order,
// so a run resumed from a checkpoint repeats the uninterrupted run exactly.
//
// Data parallelism (train/data_parallel.h): a Trainer per rank, each given the
// group's Collective. Every rank walks the same loop over the same data
// stream; rank r of N runs the r-th contiguous N-th of each step's sequences,
// the gradients are all-reduced (summed in rank order) before clipping, and
// every rank makes the same AdamW update, so the adapters stay bitwise equal.
// Rank 0 alone writes metrics.jsonl, checkpoints and the adapter.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/collective.h"
#include "core/status.h"
#include "train/dataset.h"
#include "train/lora_model.h"
#include "train/optimizer.h"

namespace gf::train {

struct TrainConfig {
  int64_t steps = 100;
  double lr = 1e-4;
  int64_t warmup = 0;
  Schedule schedule = Schedule::Cosine;
  int64_t batch = 1;       // sequences per micro-batch
  int64_t grad_accum = 1;  // micro-batches per optimizer step
  double clip = 1.0;       // global grad-norm limit, <= 0: none
  AdamWConfig adam;        // lr is taken from the schedule
  uint64_t seed = 1;
  int64_t log_every = 1;
  int64_t eval_every = 0;  // 0: at every log step
  int64_t save_every = 0;  // 0: only the final adapter
  int keep = 2;            // checkpoints kept
  std::string out_dir;
  std::string resume;      // a checkpoint folder, or an output folder holding checkpoint-N folders
  LoraConfig lora;
  std::string init_adapter;  // start from this PEFT adapter (its rank, alpha, rsLoRA and targets) instead of a fresh one
  std::string base_model;  // for adapter_config.json
  std::string module_path = "model";
};

struct StepStats {
  int64_t step = 0, total = 0;  // step is 1-based (the number of optimizer steps done)
  double loss = 0;
  double eval_loss = -1;        // < 0: not evaluated at this step
  double lr = 0, grad_norm = 0;
  int64_t tokens = 0;           // tokens run through the model in this step
  double tokens_per_s = 0, elapsed_s = 0, eta_s = 0;
};

class Trainer {
 public:
  // comm: this rank's collective in a data-parallel group (null: one rank);
  // cfg.batch must be a multiple of its world.
  static Result<std::unique_ptr<Trainer>> create(LoraModel& model, const TrainConfig& cfg, std::vector<Example> train,
                                                 std::vector<Example> eval, Collective* comm = nullptr);
  // Runs the remaining steps; on_log is called at every logging step (by rank 0 only).
  Status run(const std::function<void(const StepStats&)>& on_log);
  // Mean loss per target token over the eval set (no dropout); -1 without one.
  Result<double> evaluate();
  // Mean loss per target token of the given examples with the current adapter
  // (in a group: every rank calls it with the same examples and runs its share).
  Result<double> mean_loss(const std::vector<Example>& examples);
  const LoraAdapter& adapter() const { return adapter_; }
  int64_t step() const { return step_; }
  // Writes DIR/checkpoint-<step> atomically and prunes old ones (see TrainConfig::keep).
  Status save_checkpoint();
  // Writes the adapter (adapter_config.json, adapter_model.safetensors) to dir, each file atomically.
  Status save_adapter_to(const std::string& dir) const;

 private:
  Trainer(LoraModel& m, const TrainConfig& cfg, Collective* comm) : model_(m), cfg_(cfg), comm_(comm) {}
  // Rank 0 (or the only rank): the one that writes files.
  bool leads() const { return !comm_ || comm_->rank() == 0; }
  // s, made the group's common verdict (see rank_reduce.h all_ok).
  Status agreed(const Status& s);
  // The loss (and gradients) of all of seqs: in a group, this rank's share, summed over the ranks.
  Result<SeqLoss> forward_backward(const std::vector<LoraModel::Seq>& seqs, LoraGrads* grads, float grad_scale);
  const Example& example_at(int64_t global_index);
  Status resume_from(const std::string& path);
  Status append_metrics(const StepStats& st);

  LoraModel& model_;
  TrainConfig cfg_;
  Collective* comm_ = nullptr;
  std::vector<Example> train_, eval_;
  LoraAdapter adapter_;
  LoraGrads grads_;
  AdamW opt_;
  int64_t step_ = 0;
  int64_t epoch_ = -1;
  std::vector<size_t> order_;
};

// The newest checkpoint-N folder under dir (or dir itself if it is one); error if none.
Result<std::string> latest_checkpoint(const std::string& dir);

}  // namespace gf::train
