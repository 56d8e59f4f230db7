// Data-parallel fine-tuning in one process (`gemforge finetune --dp N`): N
// ranks, each a thread (core/rank_threads.h) with its own LoraModel (and
// TrainOps) over the one frozen Model, read-only and shared, and its own
// Trainer joined to the others by the in-process collective. What a rank runs
// and what the ranks agree on: train/trainer.h. With N = 1 it is a plain
// Trainer (no collective, no threads).
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "backend/collective.h"
#include "core/rank_threads.h"
#include "train/trainer.h"

namespace gf::train {

class TrainerGroup {
 public:
  using OpsFactory = std::function<Result<std::unique_ptr<TrainOps>>()>;
  // world ranks; make_ops gives each rank's ops (e.g. make_cpu_train_ops). m must outlive the group.
  static Result<std::unique_ptr<TrainerGroup>> create(const Model& m, const OpsFactory& make_ops, const TrainConfig& cfg,
                                                      const std::vector<Example>& train, const std::vector<Example>& eval,
                                                      int world);
  // This process's rank of a group over processes (comm: e.g. connect_tcp_collective).
  static Result<std::unique_ptr<TrainerGroup>> create_process_rank(const Model& m, const OpsFactory& make_ops, const TrainConfig& cfg,
                                                                   const std::vector<Example>& train, const std::vector<Example>& eval,
                                                                   std::unique_ptr<Collective> comm);
  int world() const { return static_cast<int>(trainers_.size()); }
  // The trainer of this process's rank r (0 with one rank per process); rank 0's adapter, step and files are the group's.
  Trainer& trainer(int r = 0) { return *trainers_[static_cast<size_t>(r)]; }
  // Runs the remaining steps on every rank of this process; on_log sees rank 0's steps.
  Status run(const std::function<void(const StepStats&)>& on_log);

 private:
  TrainerGroup() = default;
  Status add_rank(const Model& m, const OpsFactory& make_ops, const TrainConfig& cfg, const std::vector<Example>& train,
                  const std::vector<Example>& eval, Collective* comm);
  // Destroyed bottom-up: the threads stop before the trainers and models they run go.
  std::vector<std::unique_ptr<Collective>> comms_;  // per rank of this process (none with one rank alone)
  std::vector<std::unique_ptr<LoraModel>> models_;
  std::vector<std::unique_ptr<Trainer>> trainers_;
  std::unique_ptr<RankThreads> threads_;
};

}  // namespace gf::train
