// Data-parallel fine-tuning (train/data_parallel.h, `gemforge finetune --dp N`)
// on a fixture model, against the single-rank run with the same global batch:
//  - dp = 2 and 4 give the loss, grad-norm and eval-loss curves of dp = 1 and
//    (nearly) its adapter, every rank ending with the same adapter bits;
//  - resuming a dp run from its checkpoint repeats its loss curve exactly;
//  - errors: a batch the ranks cannot split, a bad sequence on one rank only
//    (every rank stops, none waits forever), --dp with --backend cuda;
//  - the CLI writes adapter_config.json, adapter_model.safetensors, metrics.jsonl;
//    two processes over loopback (--nnodes 2) give the bits of two threads.
//
// Tolerance: the only difference from dp = 1 is the order in which the
// per-sequence gradient contributions are added (dp = 1 adds sequence after
// sequence into one sum; rank r sums its contiguous share, then the all-reduce
// adds the ranks' sums in rank order), so the gradients differ by float32
// rounding (~1e-7 relative) and the curves by what AdamW makes of that over a
// few steps: 1e-5 relative (measured up to 4.8e-7 over 8 steps at lr 1e-2).
// The adapters: within 5e-4 of their largest value (measured 9.2e-5). AdamW
// divides each element's gradient by its own running RMS, so an element whose
// gradient is a near-cancelling sum moves by a visible part of lr when that
// sum's last bits change; the eval loss (above) shows the adapters act alike.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "test_util.h"
#include "train/cpu_train_ops.h"
#include "train/data_parallel.h"

namespace gf {
namespace {

namespace fs = std::filesystem;
using namespace train;

const char* kModel = "gemma3-1b-like";
constexpr double kRel = 1e-5, kAdapterRel = 5e-4;

// Eight sequences of different lengths (so the ranks' shares differ in tokens).
std::vector<Example> data_set(int n, uint64_t seed) {
  std::vector<Example> out;
  Rng rng(seed);
  for (int i = 0; i < n; ++i) {
    Example e;
    e.ids.push_back(2);
    const int len = 10 + static_cast<int>(rng.next() % 12);
    for (int t = 0; t < len; ++t) e.ids.push_back(static_cast<int32_t>(3 + rng.next() % 500));
    e.mask.assign(e.ids.size(), 1);
    e.mask[0] = e.mask[1] = 0;
    e.line = i + 1;
    out.push_back(e);
  }
  return out;
}

TrainConfig config(const std::string& out) {
  TrainConfig c;
  c.out_dir = out;
  c.steps = 8, c.lr = 1e-2, c.warmup = 1, c.batch = 4, c.grad_accum = 2, c.seed = 7;
  c.lora.rank = 4, c.lora.alpha = 8;
  c.lora.dropout = 0.1f;  // the masks must follow the sequence's place in the global batch, not the rank
  return c;
}

// The ranks' ops share their weight copies, as the CLI's do.
TrainerGroup::OpsFactory cpu_ops() {
  return [shared = make_cpu_weight_copies()]() -> Result<std::unique_ptr<TrainOps>> { return make_cpu_train_ops(false, shared); };
}

struct Curve {
  std::vector<double> loss, grad_norm, eval_loss;
};

Curve read_curve(const std::string& metrics) {
  Curve c;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    c.loss.push_back(j["loss"].get<double>());
    c.grad_norm.push_back(j["grad_norm"].get<double>());
    if (j.contains("eval_loss")) c.eval_loss.push_back(j["eval_loss"].get<double>());
  }
  return c;
}

double max_rel(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::abs(a[i] - b[i]) / std::max(1e-12, std::abs(b[i])));
  return m;
}

// The largest difference of two adapters' values over the largest value.
double adapter_rel(const LoraAdapter& a, const LoraAdapter& b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.num_tensors(); ++i)
    for (size_t k = 0; k < a.tensor(i).size(); ++k) {
      diff = std::max(diff, static_cast<double>(std::abs(a.tensor(i)[k] - b.tensor(i)[k])));
      scale = std::max(scale, static_cast<double>(std::abs(b.tensor(i)[k])));
    }
  return diff / scale;
}

struct Trained {
  Curve curve;
  LoraAdapter adapter;
};

Trained train_with(const Model& m, const TrainConfig& cfg, int dp) {
  fs::remove_all(cfg.out_dir);
  auto g = TrainerGroup::create(m, cpu_ops(), cfg, data_set(8, 11), data_set(3, 12), dp);
  EXPECT_TRUE(g.ok()) << g.message();
  if (!g.ok()) return {};
  Status s = (*g)->run(nullptr);
  EXPECT_TRUE(s.ok()) << s.message();
  for (int r = 1; r < dp; ++r) EXPECT_EQ(adapter_rel((*g)->trainer(r).adapter(), (*g)->trainer().adapter()), 0.0) << "rank " << r;
  return {read_curve(cfg.out_dir + "/metrics.jsonl"), (*g)->trainer().adapter()};
}

TEST(FinetuneDp, CurvesEqualTheSingleRankRun) {
  auto model = load_model(test::hf_tiny(kModel));
  ASSERT_TRUE(model.ok()) << model.message();
  const Trained one = train_with(*model, config(test::temp_path("ft_dp1")), 1);
  ASSERT_EQ(one.curve.loss.size(), 8u);
  ASSERT_EQ(one.curve.eval_loss.size(), 8u);
  for (int dp : {2, 4}) {
    const Trained r = train_with(*model, config(test::temp_path("ft_dp" + std::to_string(dp))), dp);
    ASSERT_EQ(r.curve.loss.size(), 8u) << "dp " << dp;
    ASSERT_EQ(r.curve.eval_loss.size(), 8u) << "dp " << dp;  // 3 eval sequences: uneven shares
    // The first step's loss: the same adapter, only the per-sequence NLL sums (double) added in another order.
    EXPECT_NEAR(r.curve.loss[0], one.curve.loss[0], 1e-12 * one.curve.loss[0]) << "dp " << dp;
    const double loss = max_rel(r.curve.loss, one.curve.loss), gn = max_rel(r.curve.grad_norm, one.curve.grad_norm),
                 ev = max_rel(r.curve.eval_loss, one.curve.eval_loss), ad = adapter_rel(r.adapter, one.adapter);
    EXPECT_LT(loss, kRel) << "dp " << dp;
    EXPECT_LT(gn, kRel) << "dp " << dp;
    EXPECT_LT(ev, kRel) << "dp " << dp;
    EXPECT_LT(ad, kAdapterRel) << "dp " << dp;
    RecordProperty("dp" + std::to_string(dp) + "_loss_rel", std::to_string(loss));
    RecordProperty("dp" + std::to_string(dp) + "_adapter_rel", std::to_string(ad));
    std::printf("dp %d vs 1: loss %.2e grad_norm %.2e eval %.2e adapter %.2e (relative)\n", dp, loss, gn, ev, ad);
    fs::remove_all(config(test::temp_path("ft_dp" + std::to_string(dp))).out_dir);
  }
  fs::remove_all(config(test::temp_path("ft_dp1")).out_dir);
}

TEST(FinetuneDp, ResumeRepeatsTheLossCurve) {
  auto model = load_model(test::hf_tiny(kModel));
  ASSERT_TRUE(model.ok());
  const std::string a = test::temp_path("ft_dp_full"), b = test::temp_path("ft_dp_resumed");
  TrainConfig cfg = config(a);
  cfg.save_every = 4;
  const Trained full = train_with(*model, cfg, 2);
  ASSERT_TRUE(fs::exists(a + "/checkpoint-4/optimizer.safetensors"));
  fs::remove_all(b);
  fs::create_directories(b);
  fs::copy(a + "/checkpoint-4", b + "/checkpoint-4");
  TrainConfig rc = cfg;
  rc.out_dir = b;
  rc.resume = b;
  auto g = TrainerGroup::create(*model, cpu_ops(), rc, data_set(8, 11), data_set(3, 12), 2);
  ASSERT_TRUE(g.ok()) << g.message();
  EXPECT_EQ((*g)->trainer(1).step(), 4);
  ASSERT_TRUE((*g)->run(nullptr).ok());
  const Curve resumed = read_curve(b + "/metrics.jsonl");
  ASSERT_EQ(resumed.loss.size(), 4u);  // steps 5..8 (the first four lines were not copied)
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(resumed.loss[i], full.curve.loss[i + 4]) << "step " << i + 5;
  EXPECT_EQ(adapter_rel((*g)->trainer().adapter(), full.adapter), 0.0);
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST(FinetuneDp, Errors) {
  auto model = load_model(test::hf_tiny(kModel));
  ASSERT_TRUE(model.ok());
  const std::string out = test::temp_path("ft_dp_err");
  fs::remove_all(out);
  TrainConfig cfg = config(out);
  auto uneven = TrainerGroup::create(*model, cpu_ops(), cfg, data_set(8, 11), {}, 3);
  ASSERT_FALSE(uneven.ok());
  EXPECT_NE(uneven.message().find("--batch 4 is not a multiple of --dp 3"), std::string::npos) << uneven.message();
  auto none = TrainerGroup::create(*model, cpu_ops(), cfg, data_set(8, 11), {}, 0);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.message().find("--dp must be at least 1"), std::string::npos) << none.message();

  // Two examples, one with a token outside the vocabulary: a step's batch of 2 puts
  // one on each rank, so one rank fails; every rank stops with its error (none waits forever).
  cfg.batch = 2;
  cfg.grad_accum = 1;
  std::vector<Example> two = data_set(2, 11);
  two[1].ids.back() = 100000;
  auto g = TrainerGroup::create(*model, cpu_ops(), cfg, two, {}, 2);
  ASSERT_TRUE(g.ok()) << g.message();
  Status s = (*g)->run(nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("outside the vocabulary"), std::string::npos) << s.message();
  fs::remove_all(out);
}

// `gemforge finetune` on dir/data.jsonl with extra options.
std::string cli_command(const std::string& dir, const std::string& extra) {
  return std::string(GEMFORGE_BINARY) + " finetune -m " + test::hf_tiny(kModel) + " --data " + dir +
         "/data.jsonl --steps 4 --lr 1e-3 --rank 4 --alpha 8 --batch 4 --seq 32 --seed 1 " + extra;
}

std::string cli(const std::string& dir, const std::string& extra, int* rc) { return test::run_command(cli_command(dir, extra) + " 2>&1", rc); }

// A fresh folder with data.jsonl: data_set(8, 11) as token ids.
std::string cli_dir(const std::string& name) {
  const std::string dir = test::temp_path(name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream d(dir + "/data.jsonl");
  for (const Example& e : data_set(8, 11)) d << nlohmann::json{{"input_ids", e.ids}}.dump() << "\n";
  return dir;
}

TEST(FinetuneDpCli, WritesTheAdapterAndTheSingleRankCurve) {
  const std::string dir = cli_dir("ft_dp_cli");
  int rc = 0;
  std::string log = cli(dir, "--out " + dir + "/dp2 --dp 2", &rc);
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("data parallel over 2 ranks"), std::string::npos) << log;
  EXPECT_NE(log.find("step 4/4"), std::string::npos) << log;
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors", "metrics.jsonl"})
    EXPECT_TRUE(fs::exists(dir + "/dp2/" + f)) << f;
  log = cli(dir, "--out " + dir + "/dp1", &rc);
  ASSERT_EQ(rc, 0) << log;
  const Curve one = read_curve(dir + "/dp1/metrics.jsonl"), two = read_curve(dir + "/dp2/metrics.jsonl");
  ASSERT_EQ(two.loss.size(), 4u);
  EXPECT_LT(max_rel(two.loss, one.loss), kRel);

  log = cli(dir, "--out " + dir + "/e --dp 3", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(log.find("--batch 4 is not a multiple of --dp 3"), std::string::npos) << log;
  log = cli(dir, "--out " + dir + "/e --dp 2 --backend cuda", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(log.find("multi-GPU data parallelism is not available"), std::string::npos) << log;
  log = cli(dir, "--out " + dir + "/e --nnodes 2 --dp 3", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(log.find("--nnodes 2 runs one rank per process: leave --dp out"), std::string::npos) << log;
  log = test::run_command(std::string(GEMFORGE_BINARY) + " finetune --help 2>&1", &rc);
  EXPECT_NE(log.find("--dp"), std::string::npos) << log;
  EXPECT_NE(log.find("--nnodes"), std::string::npos) << log;
  fs::remove_all(dir);
}

// Two processes on loopback (--nnodes 2, the TCP collective, rank 0 adding in
// rank order): the bits of --dp 2 on threads; only rank 0 writes (the
// follower's --out is never created) and the follower exits 0.
TEST(FinetuneDpCli, TwoProcessesMatchTwoThreads) {
  const std::string dir = cli_dir("ft_dp_procs");
  const std::string rendezvous = " --nnodes 2 --master-addr 127.0.0.1 --master-port " + std::to_string(test::free_port());
  const std::string follower_rc = dir + "/follower.rc";
  const std::string follower =
      cli_command(dir, "--out " + dir + "/follower" + rendezvous + " --node-rank 1") + " >/dev/null 2>&1; echo $? > " + follower_rc;
  ASSERT_EQ(std::system(("(" + follower + ") &").c_str()), 0);
  int rc = 0;
  std::string log = cli(dir, "--out " + dir + "/procs" + rendezvous + " --node-rank 0", &rc);
  ASSERT_EQ(rc, 0) << log;
  log = cli(dir, "--out " + dir + "/threads --dp 2", &rc);
  ASSERT_EQ(rc, 0) << log;
  EXPECT_EQ(read_curve(dir + "/procs/metrics.jsonl").loss, read_curve(dir + "/threads/metrics.jsonl").loss);
  EXPECT_EQ(test::read_bytes(dir + "/procs/adapter_model.safetensors"), test::read_bytes(dir + "/threads/adapter_model.safetensors"));
  std::string frc;
  for (int i = 0; i < 100 && frc.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    frc = test::read_bytes(follower_rc);
  }
  EXPECT_EQ(frc, "0\n");
  EXPECT_FALSE(fs::exists(dir + "/follower"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace gf
