// Tensor parallelism in one process (vLLM / Megatron SPMD): a Decoder per
// rank over its shard (model/shard.h), joined by the in-process collective,
// each rank on its own thread. The driver (rank 0, the decoder callers hold)
// plans every step once and every rank runs the same plan.
#include "backend/collective.h"
#include "core/rank_threads.h"
#include "model/decoder.h"
#include "model/shard.h"

namespace gf {

// Members are destroyed bottom-up: the threads stop first, then the other
// ranks' decoders free their weights on their backends, then the shards go.
struct Decoder::Group {
  explicit Group(int world) : comms(make_thread_collectives(world)) {}
  std::vector<std::unique_ptr<Model>> shards;  // per rank
  std::vector<std::unique_ptr<Collective>> comms;  // per rank
  std::vector<std::unique_ptr<Backend>> backends;  // ranks 1..world-1
  std::vector<std::unique_ptr<Decoder>> peers;     // ranks 1..world-1
  std::unique_ptr<RankThreads> threads;
};

Result<std::unique_ptr<Decoder>> Decoder::create_parallel(const Model& m, Backend& be, int world, const BackendFactory& make_backend) {
  if (world < 1) return Err("--tp must be at least 1, not " + std::to_string(world));
  if (world == 1) return create(m, be);
  auto g = std::make_shared<Group>(world);
  for (int r = 0; r < world; ++r) {
    GF_ASSIGN_OR_RETURN(Model shard, shard_model(m, r, world));
    g->shards.push_back(std::make_unique<Model>(std::move(shard)));
  }
  GF_ASSIGN_OR_RETURN(auto driver, create(*g->shards[0], be, {}, g->comms[0].get()));
  for (int r = 1; r < world; ++r) {
    GF_ASSIGN_OR_RETURN(auto rank_be, make_backend());
    GF_ASSIGN_OR_RETURN(auto d, create(*g->shards[static_cast<size_t>(r)], *rank_be, {}, g->comms[static_cast<size_t>(r)].get()));
    g->backends.push_back(std::move(rank_be));
    g->peers.push_back(std::move(d));
  }
  g->threads = std::make_unique<RankThreads>(world);
  driver->group_ = std::move(g);
  return driver;
}

std::vector<Decoder*> Decoder::peers() const {
  std::vector<Decoder*> out;
  if (group_)
    for (auto& d : group_->peers) out.push_back(d.get());
  return out;
}

Result<Act> Decoder::run_ranks(const StepInput& in, PagedKvCache& cache) {
  if (!group_) return run_step(in, cache, 0);
  const std::vector<Decoder*> others = peers();
  std::vector<Act> logits(others.size() + 1);
  Status st = group_->threads->run([&](int r) -> Status {
    Decoder& d = r == 0 ? *this : *others[static_cast<size_t>(r) - 1];
    GF_ASSIGN_OR_RETURN(logits[static_cast<size_t>(r)], d.run_step(in, cache, static_cast<size_t>(r)));
    return Ok();
  });
  // Every rank holds the gathered logits; the driver's go to the sampler.
  for (size_t r = 1; r < logits.size(); ++r)
    if (logits[r].data) others[r - 1]->be_->release(logits[r]);
  if (!st.ok()) {
    if (logits[0].data) be_->release(logits[0]);
    return st.error();
  }
  return logits[0];
}

}  // namespace gf
