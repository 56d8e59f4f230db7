// Trainer checkpoints: DIR/checkpoint-<step>/ holds the adapter in PEFT's
// format, optimizer.safetensors (AdamW's exp_avg / exp_avg_sq per adapter
// tensor, in the adapter's canonical order) and trainer_state.json. Written
// into a temporary folder, synced, and renamed into place (then DIR synced),
// so a process killed while saving (or a crash of the machine) leaves the
// previous checkpoints as they were and never a partial checkpoint-N.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/mapped_file.h"
#include "formats/safetensors.h"
#include "train/lora_io.h"
#include "train/trainer.h"

namespace gf::train {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

namespace {

Status write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  if (!out) return Err("cannot write " + path + ": " + std::strerror(errno));
  out << text;
  out.close();
  if (!out) return Err("error writing " + path);
  return Ok();
}

// Flushes a file's or a folder's entries to disk.
Status sync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return Err("cannot open " + path + " to sync it: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Err("cannot sync " + path + ": " + std::strerror(errno));
  return Ok();
}

// Test hook: GEMFORGE_TEST_STALL_SAVE=N stops the save of step N with its
// files written but not yet renamed, so a test can kill the process there.
void stall_if_asked(int64_t step) {
  const char* s = std::getenv("GEMFORGE_TEST_STALL_SAVE");
  if (!s || std::to_string(step) != s) return;
  std::fprintf(stderr, "stalled in the save of checkpoint %lld\n", static_cast<long long>(step));
  for (;;) ::pause();
}

// checkpoint-<n> folders of dir, by step.
std::vector<std::pair<int64_t, std::string>> checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.rfind("checkpoint-", 0) != 0) continue;
    const std::string num = name.substr(11);
    if (num.empty() || num.find_first_not_of("0123456789") != std::string::npos) continue;
    out.emplace_back(std::stoll(num), e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

Result<std::string> latest_checkpoint(const std::string& dir) {
  if (file_exists(dir + "/trainer_state.json")) return dir;
  auto cks = checkpoints(dir);
  if (cks.empty()) return Err("--resume " + dir + ": no trainer_state.json and no checkpoint-N folder in it");
  return cks.back().second;
}

Status Trainer::save_adapter_to(const std::string& dir) const {
  // Both files written beside their final names, then renamed over them.
  const std::string tmp = dir + "/.adapter.tmp";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  if (!fs::create_directories(tmp, ec) && ec) return Err("cannot create " + tmp + ": " + ec.message());
  GF_RETURN_IF_ERROR(save_adapter(tmp, adapter_, {cfg_.base_model, cfg_.module_path}));
  for (const char* f : {"adapter_model.safetensors", "adapter_config.json"}) {
    GF_RETURN_IF_ERROR(sync_path(tmp + "/" + f));
    fs::rename(tmp + "/" + f, dir + "/" + f, ec);
    if (ec) return Err("cannot move " + std::string(f) + " into " + dir + ": " + ec.message());
  }
  fs::remove_all(tmp, ec);
  return Ok();
}

Status Trainer::save_checkpoint() {
  const std::string name = "checkpoint-" + std::to_string(step_);
  const std::string tmp = cfg_.out_dir + "/." + name + ".tmp", final_dir = cfg_.out_dir + "/" + name;
  std::error_code ec;
  fs::remove_all(tmp, ec);
  if (!fs::create_directories(tmp, ec) && ec) return Err("cannot create " + tmp + ": " + ec.message());
  GF_RETURN_IF_ERROR(save_adapter(tmp, adapter_, {cfg_.base_model, cfg_.module_path}));
  std::vector<OwnedTensor> state;
  for (int which = 0; which < 2; ++which)
    for (size_t i = 0; i < adapter_.num_tensors(); ++i) {
      const std::vector<float>& v = which ? opt_.v()[i] : opt_.m()[i];
      OwnedTensor t;
      t.name = (which ? "exp_avg_sq." : "exp_avg.") + std::to_string(i);
      t.dtype = DType::F32;
      t.shape = {static_cast<int64_t>(v.size())};
      t.bytes.resize(v.size() * 4);
      std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
      state.push_back(std::move(t));
    }
  GF_RETURN_IF_ERROR(write_safetensors(tmp + "/optimizer.safetensors", state));
  Json js;
  js["step"] = step_;
  js["adam_steps"] = opt_.steps();
  js["total_steps"] = cfg_.steps;
  js["seed"] = cfg_.seed;
  js["lr"] = cfg_.lr;
  js["batch"] = cfg_.batch;
  js["grad_accum"] = cfg_.grad_accum;
  js["train_examples"] = train_.size();
  GF_RETURN_IF_ERROR(write_text(tmp + "/trainer_state.json", js.dump(2) + "\n"));
  for (const char* f : {"adapter_model.safetensors", "adapter_config.json", "optimizer.safetensors", "trainer_state.json"})
    GF_RETURN_IF_ERROR(sync_path(tmp + "/" + f));
  GF_RETURN_IF_ERROR(sync_path(tmp));
  stall_if_asked(step_);
  fs::remove_all(final_dir, ec);
  fs::rename(tmp, final_dir, ec);
  if (ec) return Err("cannot move " + tmp + " to " + final_dir + ": " + ec.message());
  GF_RETURN_IF_ERROR(sync_path(cfg_.out_dir));
  // Prune: keep the newest `keep`.
  auto cks = checkpoints(cfg_.out_dir);
  for (size_t i = 0; i + static_cast<size_t>(std::max(1, cfg_.keep)) < cks.size(); ++i) fs::remove_all(cks[i].second, ec);
  return Ok();
}

Status Trainer::resume_from(const std::string& path) {
  GF_ASSIGN_OR_RETURN(std::string dir, latest_checkpoint(path));
  GF_ASSIGN_OR_RETURN(std::string text, read_text_file(dir + "/trainer_state.json"));
  Json js = Json::parse(text, nullptr, false);
  if (js.is_discarded() || !js.contains("step") || !js["step"].is_number_integer()) return Err(dir + "/trainer_state.json is malformed");
  if (js.value("seed", cfg_.seed) != cfg_.seed || js.value("batch", cfg_.batch) != cfg_.batch ||
      js.value("grad_accum", cfg_.grad_accum) != cfg_.grad_accum)
    return Err("--resume " + dir + ": the checkpoint was trained with another --seed, --batch or --grad-accum (the data order would differ)");
  GF_ASSIGN_OR_RETURN(LoraAdapter a, load_adapter(dir, model_.spec()));
  if (a.cfg.rank != adapter_.cfg.rank || a.mats.size() != adapter_.mats.size())
    return Err("--resume " + dir + ": the checkpoint's adapter (rank " + std::to_string(a.cfg.rank) + ", " + std::to_string(a.mats.size()) +
               " matrices) differs from the one asked for (rank " + std::to_string(adapter_.cfg.rank) + ", " +
               std::to_string(adapter_.mats.size()) + ")");
  a.cfg = adapter_.cfg;  // dropout etc. from the command line (they are not all in adapter_config.json)
  GF_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::open(dir + "/optimizer.safetensors"));
  for (int which = 0; which < 2; ++which)
    for (size_t i = 0; i < a.num_tensors(); ++i) {
      const std::string name = (which ? "exp_avg_sq." : "exp_avg.") + std::to_string(i);
      const TensorView* t = f.find(name);
      std::vector<float>& dst = which ? opt_.v()[i] : opt_.m()[i];
      if (!t || t->dtype != DType::F32 || t->nbytes != dst.size() * 4) return Err(dir + "/optimizer.safetensors: " + name + " is missing or has the wrong size");
      std::memcpy(dst.data(), t->data, t->nbytes);
    }
  adapter_ = std::move(a);
  step_ = js["step"].get<int64_t>();
  opt_.set_steps(js.value("adam_steps", step_));
  return Ok();
}

}  // namespace gf::train
