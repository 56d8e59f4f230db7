// gemforge finetune -m MODEL --data train.jsonl --out DIR: LoRA supervised
// fine-tuning (src/train) on the CPU (float32) or, with --backend cuda, on the
// GPU (bf16 frozen weights, float32 activations and adapters). Writes DIR/adapter_config.json
// and DIR/adapter_model.safetensors in PEFT's format, DIR/metrics.jsonl (one
// object per step) and DIR/checkpoint-N folders with --save-every. --dp N:
// data parallelism over N CPU threads (train/data_parallel.h); --nnodes N: over
// N processes, one rank each (rank 0 prints and writes, the others are silent).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "cli/loss_plot.h"
#include "cli/model_options.h"
#include "tokenizer/chat_format.h"
#include "tokenizer/tokenizer.h"
#include "train/cpu_train_ops.h"
#include "train/data_parallel.h"
#include "train/lora_io.h"

namespace gf::cli {
namespace {

struct FinetuneOptions {
  ModelOptions model;
  std::string data, eval_data, out, targets = "all-linear", schedule = "cosine", resume, init_adapter;
  double eval_fraction = 0;
  int64_t steps = 100, batch = 1, seq = 512, grad_accum = 1, warmup = 0, log_every = 1, eval_every = 0, save_every = 0;
  int keep = 2;
  int dp = 1;  // data-parallel ranks
  double peak_tflops = -1;  // < 0: 989 (H100/H200 bf16 dense) on cuda, none on cpu
  double lr = 1e-4, clip = 1.0, weight_decay = 0.0, beta1 = 0.9, beta2 = 0.999, adam_eps = 1e-8;
  int rank = 8;
  float alpha = 16, dropout = 0;
  bool rslora = false, skip_bad = false, truncate = false, drop_long = false, pack = false;
  uint64_t seed = 42;
};

struct LoraConfigView {
  int rank;
  float alpha;
  bool rslora;
};

// The data-parallel group: --dp threads of this process, or this process's rank of --nnodes.
Result<std::unique_ptr<train::TrainerGroup>> make_group(const FinetuneOptions& o, const Model& m, const train::TrainConfig& cfg,
                                                        const std::vector<train::Example>& train_set,
                                                        const std::vector<train::Example>& eval_set) {
  // The ranks of this process share the CPU ops' weight copies.
  auto ops = [&o, shared = train::make_cpu_weight_copies()] { return make_train_ops_from_options(o.model, shared); };
  if (o.model.nnodes == 1) return train::TrainerGroup::create(m, ops, cfg, train_set, eval_set, o.dp);
  GF_ASSIGN_OR_RETURN(auto comm, connect_rendezvous(o.model));
  return train::TrainerGroup::create_process_rank(m, ops, cfg, train_set, eval_set, std::move(comm));
}

std::string duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  char b[32];
  const long t = std::lround(s);
  if (t >= 3600) std::snprintf(b, sizeof b, "%ldh%02ldm", t / 3600, t / 60 % 60);
  else std::snprintf(b, sizeof b, "%ldm%02lds", t / 60, t % 60);
  return b;
}

int run_finetune(const FinetuneOptions& o) {
  if (o.truncate && o.drop_long) return fail(Err("--truncate and --drop-long exclude each other"));
  if (o.seq < 2) return fail(Err("--seq must be at least 2"));
  if (!o.eval_data.empty() && o.eval_fraction > 0) return fail(Err("give --eval-data or --eval-fraction, not both"));
  if (o.eval_fraction < 0 || o.eval_fraction >= 1) return fail(Err("--eval-fraction must be in [0, 1)"));
  if (o.model.nnodes > 1 && o.dp != 1 && o.dp != o.model.nnodes)
    return fail(Err("--nnodes " + std::to_string(o.model.nnodes) + " runs one rank per process: leave --dp out (or give --dp " +
                    std::to_string(o.model.nnodes) + ")"));
  const int world = std::max(o.dp, o.model.nnodes);
  if (world > 1 && o.model.backend != "cpu")
    return fail(Err("data parallelism over " + std::to_string(world) + " ranks with --backend " + o.model.backend +
                    ": multi-GPU data parallelism is not available yet (no NCCL collective); use --dp 1 on one GPU, "
                    "or --backend cpu for data parallelism over CPU threads"));
  auto m = load_model_from_options(o.model, false);
  if (!m.ok()) return fail(m.status());

  // Tokenizer and chat format, where the model ships them (fixtures do not: input_ids lines only).
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<ChatFormat> fmt;
  if (!m->tokenizer_path.empty()) {
    auto t = Tokenizer::from_path(m->tokenizer_path);
    if (!t.ok()) return fail(t.status());
    tok = std::make_unique<Tokenizer>(std::move(t).value());
    auto f = ChatFormat::for_tokenizer(*tok, m->spec.family >= Family::Gemma3);
    if (f.ok()) {
      fmt = std::make_unique<ChatFormat>(std::move(f).value());
      follow_shipped_template(*fmt, o.model.model);
    }
  }
  train::DataOptions dopt;
  dopt.max_len = o.seq;
  dopt.drop_long = o.drop_long;
  dopt.skip_bad_lines = o.skip_bad;
  dopt.bos_id = tok ? tok->bos_id() : m->spec.bos_token_id;
  dopt.eos_id = tok ? tok->eos_id() : (m->spec.eos_token_ids.empty() ? 1 : m->spec.eos_token_ids[0]);
  dopt.vocab_size = m->spec.vocab_size;
  train::DataStats st, est;
  auto train_set = train::load_jsonl(o.data, dopt, tok.get(), fmt.get(), st);
  if (!train_set.ok()) return fail(train_set.status());
  std::fprintf(stderr, "finetune: train data %s: %s\n", o.data.c_str(), st.summary().c_str());
  std::vector<train::Example> eval_set;
  if (!o.eval_data.empty()) {
    auto e = train::load_jsonl(o.eval_data, dopt, tok.get(), fmt.get(), est);
    if (!e.ok()) return fail(e.status());
    eval_set = std::move(e).value();
    std::fprintf(stderr, "finetune: eval data %s: %s\n", o.eval_data.c_str(), est.summary().c_str());
  } else if (o.eval_fraction > 0) {
    eval_set = train::split_eval(*train_set, o.eval_fraction, o.seed);
    std::fprintf(stderr, "finetune: %zu examples held out for evaluation\n", eval_set.size());
  }

  if (o.pack) {
    const size_t n = train_set->size();
    *train_set = train::pack_examples(std::move(*train_set), o.seq);
    std::fprintf(stderr, "finetune: packed %zu examples into %zu sequences of <= %lld tokens\n", n, train_set->size(),
                 static_cast<long long>(o.seq));
  }
  train::TrainConfig cfg;
  cfg.steps = o.steps;
  cfg.lr = o.lr;
  cfg.warmup = o.warmup;
  auto sched = train::parse_schedule(o.schedule);
  if (!sched.ok()) return fail(sched.status());
  cfg.schedule = *sched;
  cfg.batch = o.batch;
  cfg.grad_accum = o.grad_accum;
  cfg.clip = o.clip;
  cfg.adam.beta1 = o.beta1;
  cfg.adam.beta2 = o.beta2;
  cfg.adam.eps = o.adam_eps;
  cfg.adam.weight_decay = o.weight_decay;
  cfg.seed = o.seed;
  cfg.log_every = o.log_every;
  cfg.eval_every = o.eval_every;
  cfg.save_every = o.save_every;
  cfg.keep = o.keep;
  cfg.out_dir = o.out;
  cfg.resume = o.resume;
  cfg.lora.rank = o.rank;
  cfg.lora.alpha = o.alpha;
  cfg.lora.dropout = o.dropout;
  cfg.lora.rslora = o.rslora;
  auto targets = train::parse_targets(o.targets);
  if (!targets.ok()) return fail(targets.status());
  cfg.lora.targets = *targets;
  cfg.init_adapter = o.init_adapter;
  cfg.base_model = o.model.model;
  cfg.module_path = train::peft_module_path(*m);
  auto group = make_group(o, *m, cfg, *train_set, eval_set);
  if (!group.ok()) return fail(group.status());
  train::Trainer& t = (*group)->trainer();
  const bool lead = o.model.node_rank == 0;
  const LoraConfigView lc{t.adapter().cfg.rank, t.adapter().cfg.alpha, t.adapter().cfg.rslora};
  if (lead)
    std::fprintf(stderr, "finetune: %s, LoRA r=%d alpha=%g%s on %zu matrices (%lld parameters), %lld steps x %lld x %lld sequences of <= %lld tokens%s%s\n",
               family_name(m->spec.family), lc.rank, lc.alpha, lc.rslora ? " (rsLoRA)" : "", t.adapter().mats.size(),
               static_cast<long long>(t.adapter().num_params()), static_cast<long long>(o.steps), static_cast<long long>(o.batch),
               static_cast<long long>(o.grad_accum), static_cast<long long>(o.seq),
               t.step() > 0 ? (", resumed at step " + std::to_string(t.step())).c_str() : "",
               world > 1 ? (", data parallel over " + std::to_string(world) + " ranks").c_str() : "");
  // MFU: a LoRA step over a frozen base costs 4 N FLOPs per token (forward, and the input gradients of the
  // backward; no weight gradients), N the parameters of the linear layers; 6 N is the full fine-tune's count.
  const double peak = o.peak_tflops >= 0 ? o.peak_tflops : (o.model.backend == "cuda" ? 989.0 : 0.0);
  double linear_params = 0;
  for (const LayerTensors& lt : m->layers)
    for (const TensorView* w : {lt.q, lt.k, lt.v, lt.o, lt.gate, lt.up, lt.down})
      if (w) linear_params += static_cast<double>(w->numel());
  Status s = (*group)->run([&](const train::StepStats& st) {
    char eval[32] = "", mfu[64] = "";
    if (st.eval_loss >= 0) std::snprintf(eval, sizeof eval, "  eval %.4f", st.eval_loss);
    if (peak > 0)
      std::snprintf(mfu, sizeof mfu, "  MFU %.1f%% (4N) %.1f%% (6N)", 100 * 4 * linear_params * st.tokens_per_s / (peak * 1e12),
                    100 * 6 * linear_params * st.tokens_per_s / (peak * 1e12));
    std::printf("step %lld/%lld  loss %.4f%s  lr %.3e  grad_norm %.4f  %.0f tok/s%s  elapsed %s  ETA %s\n",
                static_cast<long long>(st.step), static_cast<long long>(st.total), st.loss, eval, st.lr, st.grad_norm,
                st.tokens_per_s, mfu, duration(st.elapsed_s).c_str(), duration(st.eta_s).c_str());
    std::fflush(stdout);
  });
  if (!s.ok()) return fail(s);
  if (!lead) return 0;
  std::fprintf(stderr, "finetune: wrote %s/adapter_config.json, adapter_model.safetensors and metrics.jsonl\n", o.out.c_str());
  // The picture is a convenience: a missing plotting tool does not fail the training.
  if (Status p = plot_loss(o.out); !p.ok()) std::fprintf(stderr, "finetune: warning: no loss.png: %s\n", p.message().c_str());
  else std::fprintf(stderr, "finetune: wrote %s/loss.png\n", o.out.c_str());
  return 0;
}

CommandRegistration reg(45, [](CLI::App& root) {
  auto o = std::make_shared<FinetuneOptions>();
  auto* c = root.add_subcommand("finetune", "LoRA fine-tuning (CPU float32, or --backend cuda); writes a PEFT adapter");
  c->footer(
      "\nData (--data, --eval-data): JSON Lines, one example per line:\n"
      "  {\"messages\": [{\"role\": \"user\", ...}, {\"role\": \"assistant\", ...}]}  loss on assistant turns\n"
      "  {\"prompt\": \"...\", \"completion\": \"...\"}                         loss on the completion\n"
      "  {\"text\": \"...\"}                                                  loss on every token\n"
      "  {\"input_ids\": [2, 17, ...], \"loss_mask\": [0, 1, ...]}            already tokenized (mask optional)\n"
      "Output (--out DIR): adapter_config.json + adapter_model.safetensors (PEFT format), metrics.jsonl,\n"
      "loss.png (train and eval loss at the end; needs matplotlib, else a warning),\n"
      "checkpoint-N/ every --save-every steps (the last --keep kept); --resume DIR continues one.\n"
      "Example: gemforge finetune -m gemma-3-270m --data train.jsonl --out lora --steps 200 --lr 2e-4 --rank 16 --alpha 32 --batch 4 --seq 512 --seed 1");
  add_model_options(c, o->model);
  add_rendezvous_options(c, o->model);
  c->add_option("--data", o->data, "Training data (JSON Lines)")->required();
  c->add_option("--out", o->out, "Output folder")->required();
  c->add_option("--eval-data", o->eval_data, "Evaluation data (JSON Lines)");
  c->add_option("--eval-fraction", o->eval_fraction, "Hold out this fraction of --data for evaluation instead");
  c->add_option("--steps", o->steps, "Optimizer steps")->capture_default_str();
  c->add_option("--lr", o->lr, "Peak learning rate (AdamW)")->capture_default_str();
  c->add_option("--rank", o->rank, "LoRA rank r")->capture_default_str();
  c->add_option("--alpha", o->alpha, "LoRA alpha (scaling alpha / r, or alpha / sqrt(r) with --rslora)")->capture_default_str();
  c->add_option("--dropout", o->dropout, "LoRA dropout on the adapters' input")->capture_default_str();
  c->add_flag("--rslora", o->rslora, "rsLoRA scaling alpha / sqrt(r)");
  c->add_option("--targets", o->targets, "Adapted projections: all-linear, or a list of q,k,v,o,gate,up,down")->capture_default_str();
  c->add_option("--batch", o->batch, "Sequences per micro-batch")->capture_default_str();
  c->add_option("--dp", o->dp, "Data parallelism: N ranks (CPU threads), each running --batch / N of every micro-batch; "
                               "gradients summed over the ranks, the loss curve that of --dp 1 (CPU backend; --nnodes N: one process a rank)")
      ->capture_default_str();
  c->add_option("--grad-accum", o->grad_accum, "Micro-batches per optimizer step")->capture_default_str();
  c->add_option("--seq", o->seq, "Maximum tokens per example")->capture_default_str();
  c->add_flag("--truncate", o->truncate, "Cut longer examples to --seq tokens (the default)");
  c->add_flag("--drop-long", o->drop_long, "Drop examples longer than --seq instead");
  c->add_flag("--pack", o->pack, "Pack consecutive examples into sequences of --seq tokens (they do not attend to each other)");
  c->add_flag("--skip-bad-lines", o->skip_bad, "Skip (and count) malformed data lines instead of stopping");
  c->add_option("--seed", o->seed, "Seed of the adapter init, data order and dropout")->capture_default_str();
  c->add_option("--warmup", o->warmup, "Linear warmup steps")->capture_default_str();
  c->add_option("--schedule", o->schedule, "Learning-rate decay after warmup: cosine, linear or constant")->capture_default_str();
  c->add_option("--clip", o->clip, "Global gradient-norm clipping (0: off)")->capture_default_str();
  c->add_option("--weight-decay", o->weight_decay, "AdamW decoupled weight decay")->capture_default_str();
  c->add_option("--beta1", o->beta1, "AdamW beta1")->capture_default_str();
  c->add_option("--beta2", o->beta2, "AdamW beta2")->capture_default_str();
  c->add_option("--adam-eps", o->adam_eps, "AdamW epsilon")->capture_default_str();
  c->add_option("--peak-tflops", o->peak_tflops, "Peak TFLOP/s of the device for the MFU on the progress line (default: 989 on cuda, none on cpu)");
  c->add_option("--log-every", o->log_every, "Print a progress line every N steps")->capture_default_str();
  c->add_option("--eval-every", o->eval_every, "Evaluate every N steps (default: every logging step)");
  c->add_option("--save-every", o->save_every, "Write DIR/checkpoint-N every N steps (0: only the final adapter)")->capture_default_str();
  c->add_option("--keep", o->keep, "Checkpoints kept")->capture_default_str();
  c->add_option("--init-adapter", o->init_adapter, "Start from this PEFT adapter folder (its rank, alpha, rsLoRA and targets)");
  c->add_option("--resume", o->resume, "Continue from a checkpoint folder (or the newest checkpoint-N in an output folder)");
  c->callback([o] { set_exit_code(run_finetune(*o)); });
});

}  // namespace
}  // namespace gf::cli
