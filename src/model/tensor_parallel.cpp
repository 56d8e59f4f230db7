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
  std::vector<std::unique_ptr<Model>> shards;  // per rank
  std::vector<std::unique_ptr<Collective>> comms;  // per rank
  std::vector<std::unique_ptr<Backend>> backends;  // ranks 1..world-1
  std::vector<std::unique_ptr<Decoder>> peers;     // ranks 1..world-1
  std::unique_ptr<RankThreads> threads;  // none in a multi-process group
};

Result<std::unique_ptr<Decoder>> Decoder::create_parallel(const Model& m, Backend& be, int world, const BackendFactory& make_backend) {
  if (world < 1) return Err("--tp must be at least 1, not " + std::to_string(world));
  if (world == 1) return create(m, be);
  auto g = std::make_shared<Group>();
  g->comms = make_thread_collectives(world);
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

Result<std::unique_ptr<Decoder>> Decoder::create_process_rank(const Model& m, Backend& be, std::unique_ptr<Collective> comm) {
  const int rank = comm->rank(), world = comm->world();
  auto g = std::make_shared<Group>();
  GF_ASSIGN_OR_RETURN(Model shard, shard_model(m, rank, world));
  g->shards.push_back(std::make_unique<Model>(std::move(shard)));
  g->comms.push_back(std::move(comm));
  GF_ASSIGN_OR_RETURN(auto d, create(*g->shards[0], be, {}, g->comms[0].get()));
  d->leads_ = rank == 0 && world > 1;
  d->group_ = std::move(g);
  return d;
}

Status Decoder::tell_followers(const RankMessage& m) {
  std::string bytes = encode(m);
  return comm_->broadcast_bytes(bytes, 0);
}

Status Decoder::announce_cache(PagedKvCache& cache) {
  RankMessage m;
  m.kind = RankMessage::kNewCache;
  m.cache = next_cache_id_++;
  m.num_blocks = cache.num_blocks();
  m.block_size = cache.block_size();
  GF_RETURN_IF_ERROR(tell_followers(m));
  cache_ids_[&cache] = m.cache;
  cache.set_on_free([this, c = &cache, id = m.cache] {
    RankMessage f;
    f.kind = RankMessage::kFreeCache;
    f.cache = id;
    (void)tell_followers(f);  // a group that failed already reported it
    cache_ids_.erase(c);
  });
  return Ok();
}

Status Decoder::follow() {
  if (!comm_ || leads_) return Err("follow: this decoder is not a following rank of a multi-process group");
  std::map<uint32_t, std::unique_ptr<PagedKvCache>> caches;
  for (;;) {
    std::string bytes;
    GF_RETURN_IF_ERROR(comm_->broadcast_bytes(bytes, 0));
    GF_ASSIGN_OR_RETURN(RankMessage m, decode_rank_message(bytes));
    switch (m.kind) {
      case RankMessage::kQuit:
        return Ok();
      case RankMessage::kNewCache: {
        GF_ASSIGN_OR_RETURN(caches[m.cache], PagedKvCache::create(*be_, model_->spec, m.num_blocks, m.block_size));
        break;
      }
      case RankMessage::kFreeCache:
        caches.erase(m.cache);
        break;
      case RankMessage::kStep: {
        auto it = caches.find(m.cache);
        if (it == caches.end()) return Err("tensor parallelism: the leader stepped cache " + std::to_string(m.cache) + ", unknown here");
        GF_ASSIGN_OR_RETURN(Act logits, run_step(m.step, *it->second, 0));
        if (logits.data) be_->release(logits);
        break;
      }
    }
  }
}

std::vector<Decoder*> Decoder::peers() const {
  std::vector<Decoder*> out;
  if (group_)
    for (auto& d : group_->peers) out.push_back(d.get());
  return out;
}

Result<Act> Decoder::run_ranks(const StepInput& in, PagedKvCache& cache) {
  if (leads_) {
    RankMessage m;
    m.kind = RankMessage::kStep;
    m.cache = cache_ids_.at(&cache);
    m.step = in;
    GF_RETURN_IF_ERROR(tell_followers(m));
  }
  if (!group_ || !group_->threads) return run_step(in, cache, 0);
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
