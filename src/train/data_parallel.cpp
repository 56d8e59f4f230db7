#include "train/data_parallel.h"

namespace gf::train {

Result<std::unique_ptr<TrainerGroup>> TrainerGroup::create(const Model& m, const OpsFactory& make_ops, const TrainConfig& cfg,
                                                           const std::vector<Example>& train, const std::vector<Example>& eval,
                                                           int world) {
  if (world < 1) return Err("--dp must be at least 1, not " + std::to_string(world));
  std::unique_ptr<TrainerGroup> g(new TrainerGroup());
  if (world > 1) g->comms_ = make_thread_collectives(world);
  // Rank 0 first: it prepares the output folder (and metrics.jsonl) the others never touch.
  for (int r = 0; r < world; ++r)
    GF_RETURN_IF_ERROR(g->add_rank(m, make_ops, cfg, train, eval, world > 1 ? g->comms_[static_cast<size_t>(r)].get() : nullptr));
  if (world > 1) g->threads_ = std::make_unique<RankThreads>(world);
  return g;
}

Result<std::unique_ptr<TrainerGroup>> TrainerGroup::create_process_rank(const Model& m, const OpsFactory& make_ops, const TrainConfig& cfg,
                                                                        const std::vector<Example>& train,
                                                                        const std::vector<Example>& eval, std::unique_ptr<Collective> comm) {
  std::unique_ptr<TrainerGroup> g(new TrainerGroup());
  g->comms_.push_back(std::move(comm));
  GF_RETURN_IF_ERROR(g->add_rank(m, make_ops, cfg, train, eval, g->comms_[0].get()));
  return g;
}

Status TrainerGroup::add_rank(const Model& m, const OpsFactory& make_ops, const TrainConfig& cfg, const std::vector<Example>& train,
                              const std::vector<Example>& eval, Collective* comm) {
  GF_ASSIGN_OR_RETURN(auto ops, make_ops());
  GF_ASSIGN_OR_RETURN(auto lm, LoraModel::create(m, std::move(ops)));
  GF_ASSIGN_OR_RETURN(auto t, Trainer::create(*lm, cfg, train, eval, comm));
  models_.push_back(std::move(lm));
  trainers_.push_back(std::move(t));
  return Ok();
}

Status TrainerGroup::run(const std::function<void(const StepStats&)>& on_log) {
  if (!threads_) return trainer().run(on_log);
  return threads_->run([&](int r) { return trainers_[static_cast<size_t>(r)]->run(on_log); });
}

}  // namespace gf::train
