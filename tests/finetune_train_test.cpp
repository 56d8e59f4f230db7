// The fine-tuning loop end to end on a fixture model (CPU, a few seconds):
//  - memorising four short sequences drops the loss by a large factor;
//  - the saved PEFT adapter reloads and gives the same loss (to 1e-6 relative);
//  - resuming from a checkpoint repeats the uninterrupted run's loss curve exactly;
//  - old checkpoints are pruned, a half-written one (killed while saving) is ignored,
//    and a process really killed inside a save leaves the previous one to resume from;
//  - the `gemforge finetune` command keeps its external contract.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include <signal.h>
#include <sys/wait.h>

#include "formats/safetensors.h"
#include "test_util.h"
#include "train/lora_io.h"
#include "train/trainer.h"

namespace gf {
namespace {

namespace fs = std::filesystem;
using namespace train;

// Gemma 3 style: QK-norm, sandwich norms, 5:1 local/global. (The gemma2 fixture's
// attention soft-cap of 2.0 keeps attention too flat to memorise random tokens quickly.)
const char* kModel = "gemma3-1b-like";

std::vector<Example> memorise_set() {
  std::vector<Example> out;
  Rng rng(5);
  for (int i = 0; i < 4; ++i) {
    Example e;
    e.ids.push_back(2);
    for (int t = 0; t < 19; ++t) e.ids.push_back(static_cast<int32_t>(3 + rng.next() % 500));
    e.mask.assign(e.ids.size(), 1);
    for (int t = 0; t < 4; ++t) e.mask[static_cast<size_t>(t)] = 0;  // a prompt outside the loss
    e.line = i + 1;
    out.push_back(e);
  }
  return out;
}

TrainConfig base_config(const std::string& out) {
  TrainConfig c;
  c.steps = 30;
  c.lr = 1e-2;
  c.warmup = 2;
  c.batch = 2;
  c.grad_accum = 2;
  c.seed = 3;
  c.out_dir = out;
  c.lora.rank = 4;
  c.lora.alpha = 8;
  return c;
}

std::vector<double> losses(const std::string& metrics) {
  std::vector<double> out;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  return out;
}

TEST(FinetuneTrain, MemorisesAndTheSavedAdapterReloads) {
  auto model = load_model(test::hf_tiny(kModel));
  ASSERT_TRUE(model.ok()) << model.message();
  auto lm = LoraModel::create(*model);
  ASSERT_TRUE(lm.ok()) << lm.message();
  const std::string out = test::temp_path("ft_memorise");
  fs::remove_all(out);
  TrainConfig cfg = base_config(out);
  cfg.lora.dropout = 0.05f;
  auto tr = Trainer::create(**lm, cfg, memorise_set(), memorise_set());
  ASSERT_TRUE(tr.ok()) << tr.message();
  auto before = (*tr)->mean_loss(memorise_set());
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE((*tr)->run(nullptr).ok());
  auto after = (*tr)->mean_loss(memorise_set());
  ASSERT_TRUE(after.ok());
  EXPECT_GT(*before / *after, 20.0) << "loss " << *before << " -> " << *after;
  const auto curve = losses(out + "/metrics.jsonl");
  ASSERT_EQ(curve.size(), 30u);
  RecordProperty("loss_before", std::to_string(*before));
  RecordProperty("loss_after", std::to_string(*after));

  auto reloaded = load_adapter(out, model->spec);
  ASSERT_TRUE(reloaded.ok()) << reloaded.message();
  EXPECT_EQ(reloaded->mats.size(), (*tr)->adapter().mats.size());
  double nll = 0;
  int64_t n = 0;
  for (const Example& e : memorise_set()) {
    auto l = (*lm)->forward_backward(e.ids, e.mask, *reloaded, nullptr, 1.0f, 0);
    ASSERT_TRUE(l.ok());
    nll += l->nll_sum, n += l->tokens;
  }
  EXPECT_NEAR(nll / n, *after, 1e-6 * *after);
  fs::remove_all(out);
}

TEST(FinetuneTrain, ResumeRepeatsTheLossCurve) {
  auto model = load_model(test::hf_tiny(kModel));
  ASSERT_TRUE(model.ok());
  auto lm = LoraModel::create(*model);
  ASSERT_TRUE(lm.ok());
  const std::string a = test::temp_path("ft_full"), b = test::temp_path("ft_resumed");
  fs::remove_all(a);
  fs::remove_all(b);
  TrainConfig cfg = base_config(a);
  cfg.steps = 12;
  cfg.save_every = 4;
  cfg.keep = 2;
  cfg.lora.dropout = 0.1f;  // the dropout masks must follow the step, not the process
  {
    auto tr = Trainer::create(**lm, cfg, memorise_set(), {});
    ASSERT_TRUE(tr.ok());
    ASSERT_TRUE((*tr)->run(nullptr).ok());
  }
  // Kept: the newest two.
  EXPECT_FALSE(fs::exists(a + "/checkpoint-4"));
  EXPECT_TRUE(fs::exists(a + "/checkpoint-8/optimizer.safetensors"));
  EXPECT_TRUE(fs::exists(a + "/checkpoint-12/adapter_model.safetensors"));
  const auto full = losses(a + "/metrics.jsonl");
  ASSERT_EQ(full.size(), 12u);

  // Another folder resumes from the step-8 checkpoint; a half-written checkpoint beside it
  // (a process killed while saving) is not taken for a checkpoint.
  fs::create_directories(b);
  fs::copy(a + "/checkpoint-8", b + "/checkpoint-8");
  fs::create_directories(b + "/.checkpoint-12.tmp");
  { std::ofstream(b + "/.checkpoint-12.tmp/trainer_state.json") << "{\"step\": 1"; }
  std::ofstream(b + "/metrics.jsonl") << [&] {
    std::string s;
    std::ifstream in(a + "/metrics.jsonl");
    std::string line;
    for (int i = 0; i < 8 && std::getline(in, line); ++i) s += line + "\n";
    return s;
  }();
  TrainConfig rc = cfg;
  rc.out_dir = b;
  rc.resume = b;
  auto tr = Trainer::create(**lm, rc, memorise_set(), {});
  ASSERT_TRUE(tr.ok()) << tr.message();
  EXPECT_EQ((*tr)->step(), 8);
  ASSERT_TRUE((*tr)->run(nullptr).ok());
  const auto resumed = losses(b + "/metrics.jsonl");
  ASSERT_EQ(resumed.size(), 12u);
  for (size_t i = 0; i < 12; ++i) EXPECT_EQ(resumed[i], full[i]) << "step " << i + 1;
  // A different seed would change the data order: refused.
  rc.seed = 4;
  auto bad = Trainer::create(**lm, rc, memorise_set(), {});
  EXPECT_FALSE(bad.ok());
  fs::remove_all(a);
  fs::remove_all(b);
}

// A fresh folder with data.jsonl: the memorise set as token ids (the CLI's input).
std::string cli_data_dir(const std::string& name) {
  const std::string dir = test::temp_path(name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream d(dir + "/data.jsonl");
  for (const Example& e : memorise_set()) d << nlohmann::json{{"input_ids", e.ids}}.dump() << "\n";
  return dir;
}

// A real kill: `gemforge finetune` stopped by SIGKILL inside the save of
// checkpoint-4, its files written but not yet renamed into place (the
// GEMFORGE_TEST_STALL_SAVE hook holds it there). checkpoint-2 stays whole and
// --resume continues from it with the uninterrupted run's loss curve.
TEST(FinetuneCli, KilledWhileSavingKeepsThePreviousCheckpoint) {
  const std::string dir = cli_data_dir("ft_kill");
  auto cmd = [&](const std::string& out) {
    return std::string(GEMFORGE_BINARY) + " finetune -m " + test::hf_tiny(kModel) + " --data " + dir + "/data.jsonl --out " + dir + "/" +
           out + " --steps 6 --lr 1e-2 --rank 4 --alpha 8 --batch 2 --seq 24 --seed 1 --save-every 2 --keep 5";
  };
  int rc = 0;
  std::string log = test::run_command(cmd("full") + " 2>&1", &rc);
  ASSERT_EQ(rc, 0) << log;
  const auto full = losses(dir + "/full/metrics.jsonl");
  ASSERT_EQ(full.size(), 6u);

  const std::string killed = dir + "/killed", err = dir + "/killed.log";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setenv("GEMFORGE_TEST_STALL_SAVE", "4", 1);
    execl("/bin/sh", "sh", "-c", ("exec " + cmd("killed") + " > /dev/null 2> " + err).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  bool stalled = false;
  for (int i = 0; i < 1200 && !stalled; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    stalled = test::read_bytes(err).find("stalled in the save of checkpoint 4") != std::string::npos;
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(stalled) << test::read_bytes(err);
  ASSERT_TRUE(WIFSIGNALED(status));
  // The save was under way (every file written) and is not taken for a checkpoint.
  EXPECT_TRUE(fs::exists(killed + "/.checkpoint-4.tmp/trainer_state.json"));
  EXPECT_FALSE(fs::exists(killed + "/checkpoint-4"));
  auto model = load_model(test::hf_tiny(kModel));
  ASSERT_TRUE(model.ok());
  auto prev = load_adapter(killed + "/checkpoint-2", model->spec);
  ASSERT_TRUE(prev.ok()) << prev.message();
  auto latest = latest_checkpoint(killed);
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(*latest, killed + "/checkpoint-2");

  log = test::run_command(cmd("killed") + " --resume " + killed + " 2>&1", &rc);
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("resumed at step 2"), std::string::npos) << log;
  const auto resumed = losses(killed + "/metrics.jsonl");
  ASSERT_EQ(resumed.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(resumed[i], full[i]) << "step " << i + 1;
  EXPECT_TRUE(fs::exists(killed + "/checkpoint-6/optimizer.safetensors"));
  fs::remove_all(dir);
}

TEST(FinetuneCli, ContractFormWritesAdapterAndMetrics) {
  const std::string dir = cli_data_dir("ft_cli");
  { std::ofstream(dir + "/data.jsonl", std::ios::app) << "\n"; }
  int rc = 0;
  const std::string cmd = std::string(GEMFORGE_BINARY) + " finetune -m " + test::hf_tiny("gemma3-1b-like") + " --data " + dir +
                          "/data.jsonl --out " + dir + "/out --steps 3 --lr 1e-3 --rank 4 --alpha 8 --batch 2 --seq 16 --seed 1 2>&1";
  const std::string log = test::run_command(cmd, &rc);
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("step 3/3"), std::string::npos) << log;
  EXPECT_NE(log.find("4 truncated"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(dir + "/out/adapter_model.safetensors"));
  auto cfg = nlohmann::json::parse(test::read_bytes(dir + "/out/adapter_config.json"));
  EXPECT_EQ(cfg["r"], 4);
  EXPECT_EQ(cfg["lora_alpha"], 8.0);
  EXPECT_EQ(cfg["peft_type"], "LORA");
  const auto curve = losses(dir + "/out/metrics.jsonl");
  EXPECT_EQ(curve.size(), 3u);
  // PEFT key names.
  auto st = SafetensorsFile::open(dir + "/out/adapter_model.safetensors");
  ASSERT_TRUE(st.ok());
  const TensorView* a = st->find("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{4, 64}));
  const TensorView* b = st->find("base_model.model.model.layers.6.mlp.down_proj.lora_B.weight");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->shape, (std::vector<int64_t>{64, 4}));

  // A malformed line names its line; --skip-bad-lines counts it.
  { std::ofstream(dir + "/data.jsonl", std::ios::app) << "{\"input_ids\": [2, 3,\n"; }
  std::string err = test::run_command(cmd, &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find("data.jsonl:6:"), std::string::npos) << err;
  err = test::run_command(cmd.substr(0, cmd.size() - 5) + " --skip-bad-lines 2>&1", &rc);
  EXPECT_EQ(rc, 0) << err;
  EXPECT_NE(err.find("1 malformed lines skipped"), std::string::npos) << err;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace gf
