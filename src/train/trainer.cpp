#include "train/trainer.h"

#include "train/lora_io.h"
#include "train/rank_reduce.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace gf::train {

namespace fs = std::filesystem;

Result<std::unique_ptr<Trainer>> Trainer::create(LoraModel& model, const TrainConfig& cfg, std::vector<Example> train,
                                                 std::vector<Example> eval, Collective* comm) {
  if (cfg.steps <= 0) return Err("--steps must be positive");
  if (cfg.batch <= 0 || cfg.grad_accum <= 0) return Err("--batch and --grad-accum must be positive");
  if (!(cfg.lr > 0)) return Err("--lr must be positive");
  if (cfg.warmup < 0) return Err("--warmup must not be negative");
  if (cfg.log_every <= 0) return Err("--log-every must be positive");
  if (train.empty()) return Err("no training examples");
  if (cfg.out_dir.empty()) return Err("no output folder (--out)");
  if (comm && cfg.batch % comm->world() != 0)
    return Err("--batch " + std::to_string(cfg.batch) + " is not a multiple of --dp " + std::to_string(comm->world()) +
               " (--batch is the global micro-batch, split evenly between the ranks)");
  std::unique_ptr<Trainer> t(new Trainer(model, cfg, comm));
  t->train_ = std::move(train);
  t->eval_ = std::move(eval);
  if (!cfg.init_adapter.empty()) {
    GF_ASSIGN_OR_RETURN(t->adapter_, load_adapter(cfg.init_adapter, model.spec()));
    t->adapter_.cfg.dropout = cfg.lora.dropout;
    t->cfg_.lora = t->adapter_.cfg;
  } else {
    GF_ASSIGN_OR_RETURN(t->adapter_, make_adapter(model.spec(), cfg.lora, cfg.seed));
  }
  t->grads_ = LoraGrads::zeros_like(t->adapter_);
  std::vector<size_t> sizes;
  for (size_t i = 0; i < t->adapter_.num_tensors(); ++i) sizes.push_back(t->adapter_.tensor(i).size());
  t->opt_ = AdamW(cfg.adam, sizes);
  if (!cfg.resume.empty()) GF_RETURN_IF_ERROR(t->resume_from(cfg.resume));
  if (t->step_ > cfg.steps) return Err("--resume: the checkpoint is at step " + std::to_string(t->step_) + ", past --steps " + std::to_string(cfg.steps));
  if (!t->leads()) return t;
  std::error_code ec;
  fs::create_directories(cfg.out_dir, ec);
  if (!fs::is_directory(cfg.out_dir)) return Err("cannot create the output folder " + cfg.out_dir + (ec ? ": " + ec.message() : ""));
  // metrics.jsonl: a fresh run starts it; a resumed one keeps the lines up to its step.
  const std::string metrics = cfg.out_dir + "/metrics.jsonl";
  std::string kept;
  if (t->step_ > 0) {
    std::ifstream in(metrics);
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() <= t->step_) kept += line + "\n";
    }
  }
  std::ofstream out(metrics, std::ios::trunc);
  if (!out) return Err("cannot write " + metrics);
  out << kept;
  return t;
}

// The data stream: epoch e visits the examples in an order drawn from (seed, e).
const Example& Trainer::example_at(int64_t g) {
  const int64_t n = static_cast<int64_t>(train_.size());
  const int64_t epoch = g / n;
  if (epoch != epoch_) {
    order_.resize(train_.size());
    for (size_t i = 0; i < order_.size(); ++i) order_[i] = i;
    Rng rng(mix_seed(cfg_.seed, 0xDA7A0000ull + static_cast<uint64_t>(epoch)));
    for (size_t i = order_.size() - 1; i > 0; --i) std::swap(order_[i], order_[static_cast<size_t>(rng.next() % (i + 1))]);
    epoch_ = epoch;
  }
  return train_[order_[static_cast<size_t>(g % n)]];
}

Status Trainer::agreed(const Status& s) { return comm_ ? all_ok(*comm_, s) : s; }

Result<SeqLoss> Trainer::forward_backward(const std::vector<LoraModel::Seq>& seqs, LoraGrads* grads, float grad_scale) {
  if (!comm_) return model_.forward_backward(seqs, adapter_, grads, grad_scale);
  // Rank r's share: the r-th contiguous N-th (uneven when N does not divide the count, as for evaluation).
  const size_t n = seqs.size(), r = static_cast<size_t>(comm_->rank()), w = static_cast<size_t>(comm_->world());
  const std::vector<LoraModel::Seq> mine(seqs.begin() + static_cast<std::ptrdiff_t>(n * r / w),
                                         seqs.begin() + static_cast<std::ptrdiff_t>(n * (r + 1) / w));
  Result<SeqLoss> l = mine.empty() ? Result<SeqLoss>(SeqLoss{}) : model_.forward_backward(mine, adapter_, grads, grad_scale);
  GF_RETURN_IF_ERROR(all_ok(*comm_, l.status()));
  if (grads) GF_RETURN_IF_ERROR(all_reduce_grads(*comm_, *grads));
  SeqLoss sum;
  GF_ASSIGN_OR_RETURN(sum.nll_sum, sum_over_ranks(*comm_, l->nll_sum));
  GF_ASSIGN_OR_RETURN(const double tokens, sum_over_ranks(*comm_, static_cast<double>(l->tokens)));
  sum.tokens = static_cast<int64_t>(tokens);
  return sum;
}

Result<double> Trainer::mean_loss(const std::vector<Example>& examples) {
  std::vector<LoraModel::Seq> seqs;
  for (const Example& e : examples) seqs.push_back({&e.ids, &e.mask, &e.pos, 0});
  GF_ASSIGN_OR_RETURN(SeqLoss l, forward_backward(seqs, nullptr, 1.0f));
  return l.tokens > 0 ? l.nll_sum / static_cast<double>(l.tokens) : 0.0;
}

Result<double> Trainer::evaluate() {
  if (eval_.empty()) return -1.0;
  return mean_loss(eval_);
}

Status Trainer::append_metrics(const StepStats& st) {
  nlohmann::ordered_json j;
  j["step"] = st.step;
  j["loss"] = st.loss;
  if (st.eval_loss >= 0) j["eval_loss"] = st.eval_loss;
  j["lr"] = st.lr;
  j["grad_norm"] = st.grad_norm;
  j["tokens"] = st.tokens;
  j["tokens_per_s"] = st.tokens_per_s;
  j["elapsed_s"] = st.elapsed_s;
  std::ofstream out(cfg_.out_dir + "/metrics.jsonl", std::ios::app);
  out << j.dump() << "\n";
  if (!out) return Err("error writing " + cfg_.out_dir + "/metrics.jsonl");
  return Ok();
}

Status Trainer::run(const std::function<void(const StepStats&)>& on_log) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const int64_t first = step_;
  const int64_t per_step = cfg_.batch * cfg_.grad_accum;
  const int64_t eval_every = cfg_.eval_every > 0 ? cfg_.eval_every : cfg_.log_every;
  std::vector<std::vector<float>*> params;
  for (size_t i = 0; i < adapter_.num_tensors(); ++i) params.push_back(&adapter_.tensor(i));
  while (step_ < cfg_.steps) {
    const auto ts = clock::now();
    const int64_t s = step_;
    // The step's examples; the loss is normalised by all their target tokens
    // (transformers' num_items_in_batch), so accumulation equals one big batch.
    std::vector<const Example*> ex;
    int64_t targets = 0, tokens = 0;
    for (int64_t j = 0; j < per_step; ++j) {
      ex.push_back(&example_at(s * per_step + j));
      targets += ex.back()->targets();
      tokens += static_cast<int64_t>(ex.back()->ids.size());
    }
    grads_.zero();
    // One call for the step's sequences: the adapter is bound to the ops once and the gradients come back once.
    std::vector<LoraModel::Seq> seqs;
    for (size_t j = 0; j < ex.size(); ++j)
      seqs.push_back({&ex[j]->ids, &ex[j]->mask, &ex[j]->pos, mix_seed(cfg_.seed, static_cast<uint64_t>(s) * 1000003ull + j)});
    GF_ASSIGN_OR_RETURN(SeqLoss l, forward_backward(seqs, &grads_, 1.0f / static_cast<float>(targets)));
    StepStats st;
    st.step = s + 1;
    st.total = cfg_.steps;
    st.loss = l.nll_sum / static_cast<double>(targets);
    if (!std::isfinite(st.loss)) return Err("the loss is not finite at step " + std::to_string(s + 1) + " (try a lower --lr)");
    st.grad_norm = clip_grad_norm(grads_.g, cfg_.clip);
    st.lr = lr_at(cfg_.schedule, cfg_.lr, s, cfg_.warmup, cfg_.steps);
    opt_.step(params, grads_.g, st.lr);
    ++step_;
    const double step_s = std::chrono::duration<double>(clock::now() - ts).count();
    st.tokens = tokens;
    st.tokens_per_s = static_cast<double>(tokens) / std::max(1e-9, step_s);
    if (!eval_.empty() && (step_ % eval_every == 0 || step_ == cfg_.steps)) {
      GF_ASSIGN_OR_RETURN(st.eval_loss, evaluate());
    }
    st.elapsed_s = std::chrono::duration<double>(clock::now() - t0).count();
    st.eta_s = st.elapsed_s / static_cast<double>(step_ - first) * static_cast<double>(cfg_.steps - step_);
    // Rank 0 writes; if it fails, the whole group stops.
    Status io = Ok();
    if (leads()) {
      io = append_metrics(st);
      if (io.ok() && on_log && (step_ % cfg_.log_every == 0 || step_ == cfg_.steps || step_ == first + 1)) on_log(st);
      if (io.ok() && cfg_.save_every > 0 && step_ % cfg_.save_every == 0) io = save_checkpoint();
    }
    GF_RETURN_IF_ERROR(agreed(io));
  }
  return agreed(leads() ? save_adapter_to(cfg_.out_dir) : Ok());
}

}  // namespace gf::train
