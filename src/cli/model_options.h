// Options shared by every command that loads a model: -m MODEL or --synthetic NAME.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "backend/backend.h"
#include "backend/collective.h"
#include "backend/train_ops.h"
#include "model/decoder.h"
#include "model/model.h"
#include "tokenizer/chat_format.h"
#include <optional>

namespace gf::train {
struct CpuWeightCopies;
}

namespace gf::cli {

struct ModelOptions {
  std::string model;
  std::string synthetic;
  uint64_t seed = 1;
  int threads = 0;
  std::string backend = "cpu";
  std::string lora;  // a LoRA adapter folder (PEFT format), applied unmerged
  int tp = 1;        // tensor-parallel ranks
  // Ranks over processes (one rank each; tensor or data parallel), met like torchrun's.
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};

// --lora DIR, for the commands that run the model (run, chat, score, perplexity, serve).
void add_lora_option(CLI::App* cmd, ModelOptions& o);

// --tp N and --nnodes/--node-rank/--master-addr/--master-port, for the commands that run the model.
void add_tp_option(CLI::App* cmd, ModelOptions& o);
// --nnodes/--node-rank/--master-addr/--master-port alone (finetune: data parallelism over processes).
void add_rendezvous_options(CLI::App* cmd, ModelOptions& o);
// This process's collective of --nnodes processes (says so on stderr, then meets the others).
Result<std::unique_ptr<Collective>> connect_rendezvous(const ModelOptions& o);
// What --tp runs with (the CPU backend, no --lora), checked before the model
// loads (load_model_from_options does).
Status check_tp_options(const ModelOptions& o);

// -m, --synthetic, --seed-weights, --backend, --threads.
void add_model_options(CLI::App* cmd, ModelOptions& o);

// Loads -m / --synthetic; with neither, the default model (the real Gemma 3
// 270M GGUF installed by scripts/setup.sh) when allow_default.
Result<Model> load_model_from_options(const ModelOptions& o, bool allow_default);

// Finds the default model file (GEMFORGE_MODEL, then the pip package's cache).
Result<std::string> default_model_path();

// "2,17,301" -> ids; an error names the bad item.
Result<std::vector<int32_t>> parse_id_list(const std::string& s);

// The backend named by --backend (cpu, or cuda when built with CUDA).
Result<std::unique_ptr<Backend>> make_backend_from_options(const ModelOptions& o);
// The LoRA training ops of --backend (float32 CPU, or the CUDA plugin's); shared:
// the CPU ops' weight copies shared with other ranks' ops (train/cpu_train_ops.h).
Result<std::unique_ptr<TrainOps>> make_train_ops_from_options(const ModelOptions& o,
                                                              std::shared_ptr<train::CpuWeightCopies> shared = nullptr);
// The decoder over m on be, with o.lora's adapter when given; with --tp N,
// the driver of N ranks (be is rank 0's backend, the others get their own).
// With --nnodes N, this process's rank of N processes: rank 0 returns the
// leading decoder; any other rank runs the leader's steps here until the
// leader ends, then the process exits.
Result<std::unique_ptr<Decoder>> create_decoder(const Model& m, Backend& be, const ModelOptions& o);

// The chat template a model folder or GGUF ships (chat_template.jinja,
// tokenizer_config.json's chat_template, or tokenizer.chat_template), if any.
std::optional<std::string> shipped_template(const std::string& model);
// Gemma 4: the empty thought block after the generation prompt as the model's
// own template has it (31B/26B yes, E2B/E4B no; the 31B form when none ships).
void follow_shipped_template(ChatFormat& fmt, const std::string& model);

// Prints "error: <message>" to stderr and returns 1 (for command callbacks).
int fail(const Status& s);

}  // namespace gf::cli
