// The one Gemma decoder: the forward pass written once against the Backend
// ops, driven by the ModelSpec's per-layer table. forward_batch runs many
// sequences in one step (prefill chunks and decode tokens mixed), which is
// what the server's continuous batching drives; KvCache is the convenience
// for one sequence (run, score, chat).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "core/status.h"
#include "model/adapter.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "model/rank_message.h"

namespace gf {

class Collective;

// One sequence's part of a batched step.
struct SeqStep {
  SeqState* seq = nullptr;
  std::vector<int32_t> ids;  // new tokens, appended at seq->length
  bool all_logits = false;   // logits for every new token, else only the last
  // forward_batch_sample: how to pick the token after the last new one; null
  // = no output (a prefill chunk that does not end its prompt).
  const RowSampling* sampling = nullptr;
  int adapter = 0;  // the add_adapter id whose LoRA its rows take (0: none)
};

// A single sequence with its own paged cache.
class KvCache {
 public:
  int64_t capacity() const { return cache_->capacity_tokens(); }
  int64_t length() const { return seq_.length; }
  void reset() { seq_.length = 0; }
  // Keeps the first n tokens, e.g. to rewind a chat after an interrupted reply.
  void truncate(int64_t n) { if (n < seq_.length) seq_.length = n; }

 private:
  friend class Decoder;
  std::unique_ptr<PagedKvCache> cache_;
  SeqState seq_;
};

class Decoder {
 public:
  // Uploads the model's weights (and an adapter's, applied unmerged) to the
  // backend. The model must outlive the decoder; the adapter is copied.
  // One rank of a tensor-parallel group: `model` is the rank's shard
  // (shard_model) and comm its link to the other ranks, whose decoders the
  // caller steps at the same time with the same inputs.
  static Result<std::unique_ptr<Decoder>> create(const Model& model, Backend& backend, const Adapter& adapter = {},
                                                 Collective* comm = nullptr);
  // Tensor parallelism over `world` ranks in this process
  // (tensor_parallel.cpp): a decoder per rank over its shard of `model`, rank
  // 0 on `backend` and the caller's thread, each other rank on a backend from
  // make_backend and a thread of its own. The returned decoder is the
  // driver: each step is planned once (blocks, layout) and run by every rank.
  using BackendFactory = std::function<Result<std::unique_ptr<Backend>>()>;
  static Result<std::unique_ptr<Decoder>> create_parallel(const Model& model, Backend& backend, int world,
                                                          const BackendFactory& make_backend);
  // One rank of a group of processes (comm from connect_tcp_collective), over
  // its shard of `model`. Rank 0 leads: callers use it as any decoder and it
  // sends every step (and cache) to the others, which run follow(); its
  // caches must not outlive it (freeing one tells the followers).
  static Result<std::unique_ptr<Decoder>> create_process_rank(const Model& model, Backend& backend, std::unique_ptr<Collective> comm);
  bool leads() const { return leads_; }
  // A following rank: runs the steps the leader sends until the leader's
  // decoder ends (ok) or the group fails.
  Status follow();
  ~Decoder();

  // The model's spec; under tensor parallelism the layer table holds rank 0's
  // heads and MLP width (model/shard.h).
  const ModelSpec& spec() const { return model_->spec; }
  int tp_world() const { return model_->tp.world; }
  Backend& backend() { return *be_; }

  // A single-sequence cache holding up to `capacity` tokens.
  Result<std::unique_ptr<KvCache>> new_cache(int64_t capacity);
  // A shared paged cache for many sequences.
  Result<std::unique_ptr<PagedKvCache>> new_paged_cache(int64_t num_blocks, int block_size = 16);

  // Runs ids at positions [cache.length(), cache.length() + n), appending to
  // the cache, in chunks of at most max_chunk tokens. Returns logits
  // [n, vocab] if all_logits, else the last row [1, vocab].
  Result<std::vector<float>> forward(const std::vector<int32_t>& ids, KvCache& cache, bool all_logits);

  // One step over several sequences sharing `cache`. Reserves blocks as
  // needed (an error leaves every sequence unchanged). Returns, per step, its
  // logits ([n, vocab] or [1, vocab]).
  Result<std::vector<std::vector<float>>> forward_batch(PagedKvCache& cache, std::vector<SeqStep>& steps);

  // The same step ended by the backend's sampling op: per step, the token
  // picked after its last new token (id -1 and no logits for a step without
  // `sampling`; see Backend::sample for rows that come back as logits).
  // Only ids (and requested log-probs) leave the backend.
  Result<std::vector<SampledToken>> forward_batch_sample(PagedKvCache& cache, std::vector<SeqStep>& steps);
  // One sequence: runs ids (in chunks) and samples the next token.
  Result<SampledToken> forward_sample(const std::vector<int32_t>& ids, KvCache& cache, const RowSampling& sampling);

  void set_max_chunk(int64_t n) { max_chunk_ = n; }

  // Adapters served beside the base model (serve --lora name=DIR): the rows
  // of a step take their SeqStep's adapter; each adapter's A and B run once
  // on the rows gathered for it (decoder_lora.cpp). id > 0; the adapter is
  // copied. Not while a step runs (the engine serialises them).
  Status add_adapter(int id, const Adapter& adapter);
  void remove_adapter(int id);

 private:
  struct ExpertWeights {
    Weight gate, up, down;
  };
  struct LayerWeights {
    Weight q, k, v, o, gate, up, down;
    Weight input_norm, post_attn_norm, pre_ffw_norm, post_ffw_norm, q_norm, k_norm, inv_freq;
    // Gemma 4: per-layer input (PLE) step, MoE block.
    Weight ple_gate, ple_proj, ple_post_norm;
    Weight router_proj, router_scale, post_ffw_norm_1, pre_ffw_norm_2, post_ffw_norm_2;
    std::vector<ExpertWeights> experts;
    std::vector<float> per_expert_scale;  // host: the router's top-k weights are formed on the host
    float layer_scalar = 1.0f;
    // Every weight of the layer, for uploads and frees alike (unset ones are skipped by the backend).
    template <class F>
    void for_each_weight(F&& f) {
      for (Weight* w : {&q, &k, &v, &o, &gate, &up, &down, &input_norm, &post_attn_norm, &pre_ffw_norm, &post_ffw_norm, &q_norm,
                        &k_norm, &inv_freq, &ple_gate, &ple_proj, &ple_post_norm, &router_proj, &router_scale, &post_ffw_norm_1,
                        &pre_ffw_norm_2, &post_ffw_norm_2})
        f(*w);
      for (auto& e : experts)
        for (Weight* w : {&e.gate, &e.up, &e.down}) f(*w);
    }
  };
  // One adapter's uploaded LoRA, per layer * kNumProjections + projection
  // (unset when not adapted): A [rank, in] and scale * B [out, rank].
  struct LoraSet {
    std::vector<Weight> a, b;
    std::vector<std::vector<float>> host;  // what the weights view (the CPU backend reads host memory)
  };
  // The rows of a step that take one adapter (all rows: `rows` empty).
  struct LoraGroup {
    const LoraSet* set;
    std::vector<int32_t> rows;
  };
  // The step's scratch activations, shaped per layer by the blocks below.
  struct Scratch;
  // The blocks of one layer (gemma.cpp's TransformerLayer names them the same way).
  Status attention_block(int li, PagedKvCache& cache, Scratch& sc);
  Status mlp_block(int li, Scratch& sc);
  void moe_block(int li, Scratch& sc);
  void per_layer_input_step(int li, Scratch& sc);
  // out = x W^T of projection p, plus its LoRA term when adapted (decoder_lora.cpp).
  void project(int li, Projection p, const Act& x, const Weight& w, Act& out);
  void add_lora(int li, Projection p, const Act& x, Act& out);
  bool adapted(int li, Projection p) const;
  Result<LoraSet> upload_lora(const Adapter& adapter);
  void free_lora(LoraSet& set);
  // Groups the step's rows by adapter into step_lora_ (an error names an unknown adapter).
  Status group_lora_rows(const std::vector<SeqStep>& steps);
  // Gemma 4 PLE inputs of the step: per layer, [T, P] (empty without PLE).
  std::vector<Act> per_layer_inputs(const std::vector<int32_t>& ids, const Act& x0);
  Decoder(const Model& m, Backend& be) : model_(&m), be_(&be) {}
  // The step up to the soft-capped logits of the rows its steps ask for (all
  // tokens, the last, or none when `output` is false for the step). The
  // caller releases the returned Act (rows = 0 when no step has output).
  static Status check_fits(const std::vector<int32_t>& ids, const KvCache& cache);
  Result<Act> step_logits(PagedKvCache& cache, std::vector<SeqStep>& steps, const std::vector<bool>& output);
  Result<StepInput> plan_step(PagedKvCache& cache, std::vector<SeqStep>& steps, const std::vector<bool>& output);
  // This rank's run of a planned step on its part `kv_part` of the cache: the
  // logits of in.logit_rows, gathered from every rank (rows = 0 when none).
  Result<Act> run_step(const StepInput& in, PagedKvCache& cache, size_t kv_part);
  // run_step on every rank of the group (just this one without a group); the driver's logits.
  Result<Act> run_ranks(const StepInput& in, PagedKvCache& cache);
  // Tensor parallelism: x = the embedding rows of ids, looked up in this
  // rank's vocabulary rows and summed over the ranks; x = all-reduced x.
  Status embed_tokens(const std::vector<int32_t>& ids, Act& x);
  Status reduce(Act& x);

  const Model* model_;
  Backend* be_;
  Collective* comm_ = nullptr;  // tensor parallelism: this rank's link to the others (null: one rank)
  // The driver's (create_parallel): the shards, the other ranks' decoders and their threads.
  struct Group;
  std::shared_ptr<Group> group_;
  std::vector<Decoder*> peers() const;  // the group's other ranks, in rank order
  // A multi-process group's leader: broadcasts its messages to the followers.
  bool leads_ = false;
  uint32_t next_cache_id_ = 0;
  std::map<const PagedKvCache*, uint32_t> cache_ids_;
  Status tell_followers(const RankMessage& m);
  // The leader's new cache: the followers make theirs (and free it with it).
  Status announce_cache(PagedKvCache& cache);
  Weight embed_, lm_head_, final_norm_;
  Weight ple_embed_, ple_model_proj_, ple_proj_norm_;  // Gemma 4 PLE
  std::vector<LayerWeights> layers_;
  LoraSet lora_;                   // create()'s adapter: every row takes it
  std::map<int, LoraSet> adapters_;  // add_adapter's
  std::vector<LoraGroup> step_lora_;  // the running step's, by group_lora_rows
  int64_t max_chunk_ = 512;
};

}  // namespace gf
