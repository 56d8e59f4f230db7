// The pictures: `gemforge bench plot` over --json files of each bench kind,
// --plot on bench offline and bench --batch, and finetune's loss.png. Each
// checks a real PNG (signature, size from the figure layout) and the plotted
// numbers the command keeps beside it (OUT.plot.json: panels and series);
// bad input and a missing python3 give a clear error and no PNG.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace gf {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string kGemforge = GEMFORGE_BINARY;

struct Png {
  uint32_t width = 0, height = 0;
};

// The width and height of a PNG file; a failed expectation when it is not one.
Png read_png(const std::string& path) {
  const std::string b = test::read_bytes(path);
  EXPECT_GT(b.size(), 1000u) << path;
  if (b.size() < 24 || b.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0 || b.compare(12, 4, "IHDR") != 0) {
    ADD_FAILURE() << path << " is not a PNG";
    return {};
  }
  auto be32 = [&](size_t at) {
    return (uint32_t(uint8_t(b[at])) << 24) | (uint32_t(uint8_t(b[at + 1])) << 16) | (uint32_t(uint8_t(b[at + 2])) << 8) | uint8_t(b[at + 3]);
  };
  return {be32(16), be32(20)};
}

std::string stats(double base) {
  return json{{"mean_ms", base}, {"p50_ms", base}, {"p90_ms", base * 1.5}, {"p99_ms", base * 2}}.dump();
}

// A bench serve --json result: rates 1, 4, inf.
json serve_result(double scale) {
  json results = json::array();
  int i = 0;
  for (json rate : {json(1), json(4), json("inf")}) {
    ++i;
    results.push_back({{"request_rate", rate}, {"completed", 8}, {"failed", 0}, {"output_throughput", 100.0 * i / scale},
                       {"total_token_throughput", 300.0 * i / scale}, {"ttft", json::parse(stats(50 * scale * i))},
                       {"tpot", json::parse(stats(10 * scale))}, {"itl", json::parse(stats(9 * scale))}, {"e2e", json::parse(stats(900))}});
  }
  return {{"server", "127.0.0.1:1"}, {"results", results}};
}

class Plots : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::temp_path("plots");
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name, const json& j) {
    const std::string p = dir_ + "/" + name;
    std::ofstream(p) << j.dump();
    return p;
  }
  std::string run(const std::string& args, int* rc, const std::string& env = "") {
    return test::run_command(env + kGemforge + " " + args + " 2>&1", rc);
  }
  json spec(const std::string& png) {
    return json::parse(test::read_bytes(png.substr(0, png.size() - 4) + ".plot.json"));
  }
  std::string dir_;
};

TEST_F(Plots, BenchServeRunsOverlaid) {
  const std::string a = file("gemforge.json", serve_result(1)), b = file("llama-server.json", serve_result(3)), png = dir_ + "/serve.png";
  int rc = -1;
  const std::string out = run("bench plot " + a + " " + b + " -o " + png, &rc);
  ASSERT_EQ(rc, 0) << out;
  // 6 panels at 3 columns x 2 rows of 5.2 x 3.8 inches, 80 dpi.
  const Png p = read_png(png);
  EXPECT_EQ(p.width, 1248u);
  EXPECT_EQ(p.height, 608u);
  const json s = spec(png);
  ASSERT_EQ(s["panels"].size(), 6u);
  for (int i = 0; i < 3; ++i) {  // TTFT, TPOT, ITL: p50 and p99 of each run
    ASSERT_EQ(s["panels"][i]["series"].size(), 4u) << s["panels"][i]["title"];
    EXPECT_EQ(s["panels"][i]["series"][3]["label"], "llama-server p99");
  }
  for (int i = 3; i < 6; ++i) EXPECT_EQ(s["panels"][i]["series"].size(), 2u);  // throughput, latency against throughput
  // "inf" sits right of the largest finite rate, labelled as such.
  const json& ttft = s["panels"][0];
  EXPECT_EQ(ttft["series"][0]["x"], json({1.0, 4.0, 8.0}));
  EXPECT_EQ(ttft["series"][1]["y"], json({100.0, 200.0, 300.0}));  // p99 = 2 x p50
  EXPECT_EQ(ttft["xticks"].back(), json({8.0, "inf"}));
  // --labels names the runs.
  ASSERT_EQ(run("bench plot " + a + " " + b + " -o " + png + " --labels gf,llama", &rc).find("error"), std::string::npos);
  EXPECT_EQ(spec(png)["panels"][3]["series"][1]["label"], "llama");
}

TEST_F(Plots, BenchOfflineAndBatchRuns) {
  json off = serve_result(1)["results"][0];
  off["backend"] = "cpu";
  const std::string o1 = file("o1.json", off), o2 = file("o2.json", off), png = dir_ + "/off.png";
  int rc = -1;
  std::string out = run("bench plot " + o1 + " " + o2 + " -o " + png, &rc);
  ASSERT_EQ(rc, 0) << out;
  Png p = read_png(png);
  EXPECT_EQ(p.width, 832u);  // 2 x 2 panels
  EXPECT_EQ(p.height, 608u);
  json s = spec(png);
  ASSERT_EQ(s["panels"].size(), 4u);
  EXPECT_EQ(s["panels"][0]["kind"], "bar");
  EXPECT_EQ(s["panels"][1]["series"][1]["y"], json({50.0, 50.0, 75.0, 100.0}));  // TTFT mean, p50, p90, p99

  const json batch = {{"batch", {{"1", {{"tokens_per_s", 40.0}, {"ms_per_step", 25.0}}}, {"16", {{"tokens_per_s", 400.0}, {"ms_per_step", 40.0}}},
                                 {"4", {{"tokens_per_s", 150.0}, {"ms_per_step", 26.7}}}}}};
  const std::string b1 = file("b1.json", batch), b2 = file("b2.json", batch);
  out = run("bench plot " + b1 + " " + b2 + " -o " + png, &rc);
  ASSERT_EQ(rc, 0) << out;
  p = read_png(png);
  EXPECT_EQ(p.width, 832u);
  EXPECT_EQ(p.height, 304u);
  s = spec(png);
  ASSERT_EQ(s["panels"].size(), 2u);
  ASSERT_EQ(s["panels"][0]["series"].size(), 2u);
  EXPECT_EQ(s["panels"][0]["series"][0]["x"], json({1, 4, 16}));  // sorted by batch size, not as text
  EXPECT_EQ(s["panels"][0]["series"][0]["y"], json({40.0, 150.0, 400.0}));
}

TEST_F(Plots, BadInputGivesClearErrors) {
  const std::string png = dir_ + "/x.png";
  std::ofstream(dir_ + "/broken.json") << "{\"results\": [";
  json tg_only = {{"tg128", {{"tokens_per_s", 10}}}};
  json no_ttft = {{"results", {{{"request_rate", 1}, {"output_throughput", 3}}}}};
  json off = serve_result(1)["results"][0];
  const std::vector<std::pair<std::string, std::string>> cases = {
      {dir_ + "/missing.json", "cannot read " + dir_ + "/missing.json"},
      {dir_ + "/broken.json", dir_ + "/broken.json is not valid JSON"},
      {file("list.json", json::array({1, 2})), "list: not a JSON object"},
      {file("other.json", {{"hello", 1}}), "other: not the --json output of bench serve, bench offline or bench --batch"},
      {file("tg.json", tg_only), "tg: a `bench` result without --batch rows"},
      {file("no_ttft.json", no_ttft), "no_ttft: unexpected layout for a bench serve result"},
      {file("serve.json", serve_result(1)) + " " + file("off.json", off), "off is a bench offline result and serve a bench serve result"},
      {file("one.json", off) + " --labels a,b", "--labels has 2 names for 1 files"},
  };
  for (const auto& [args, message] : cases) {
    int rc = 0;
    const std::string out = run("bench plot " + args + " -o " + png, &rc);
    EXPECT_EQ(rc, 1) << args << ": " << out;
    EXPECT_NE(out.find("error: " + message), std::string::npos) << args << ": " << out;
    EXPECT_FALSE(fs::exists(png)) << args;
  }
  // No python3 at all: the message says what to install.
  int rc = 0;
  const std::string out = run("bench plot " + file("s.json", serve_result(1)) + " -o " + png, &rc, "PATH=/nonexistent ");
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("python3 is not installed or not on PATH"), std::string::npos) << out;
  EXPECT_NE(out.find("python3-matplotlib"), std::string::npos) << out;
}

// --plot on the commands themselves, on the tiny fixture model.
TEST_F(Plots, BenchOfflineAndBatchPlotFlag) {
  const std::string model = test::hf_tiny("gemma3-1b-like");
  int rc = -1;
  std::string out = run("bench offline -m " + model + " --num-prompts 2 --input-tokens 8 --output-tokens 4 --json " + dir_ +
                            "/off.json --plot " + dir_ + "/off.png", &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(read_png(dir_ + "/off.png").width, 832u);
  EXPECT_EQ(spec(dir_ + "/off.png")["panels"][0]["series"][0]["label"], "cpu");
  out = run("bench -m " + model + " -p 0 -n 0 --batch 1,2 --batch-prompt 4 --batch-gen 4 -r 1 --plot " + dir_ + "/b.png", &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(read_png(dir_ + "/b.png").height, 304u);
  EXPECT_EQ(spec(dir_ + "/b.png")["panels"][0]["series"][0]["x"], json({1, 2}));
  // Without --batch there is nothing to draw: said before the run.
  out = run("bench -m " + model + " -p 4 -n 4 -r 1 --plot " + dir_ + "/none.png", &rc);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("error: --plot draws the --batch results"), std::string::npos) << out;
  EXPECT_EQ(out.find("| model"), std::string::npos) << out;
}

// finetune draws train and eval loss into DIR/loss.png; with no python3 it warns and still succeeds.
TEST_F(Plots, FinetuneLossCurve) {
  {
    std::ofstream d(dir_ + "/data.jsonl");
    for (int i = 0; i < 8; ++i) d << json{{"input_ids", {2, 10 + i, 20 + i, 30, 40 + i, 50}}}.dump() << "\n";
  }
  const std::string args = "finetune -m " + test::hf_tiny("gemma3-1b-like") + " --data " + dir_ + "/data.jsonl --eval-fraction 0.25 --out " +
                           dir_ + "/out --steps 4 --lr 1e-3 --rank 4 --alpha 8 --batch 2 --seq 16 --seed 1";
  int rc = -1;
  std::string out = run(args, &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("wrote " + dir_ + "/out/loss.png"), std::string::npos) << out;
  const Png p = read_png(dir_ + "/out/loss.png");
  EXPECT_EQ(p.width, 520u);  // one panel, 100 dpi
  EXPECT_EQ(p.height, 380u);
  const json s = spec(dir_ + "/out/loss.png");
  ASSERT_EQ(s["panels"].size(), 1u);
  const json& series = s["panels"][0]["series"];
  ASSERT_EQ(series.size(), 2u);
  EXPECT_EQ(series[0]["label"], "train");
  EXPECT_EQ(series[0]["x"], json({1, 2, 3, 4}));
  EXPECT_EQ(series[1]["label"], "eval");
  // The curve is metrics.jsonl's.
  std::ifstream m(dir_ + "/out/metrics.jsonl");
  std::string line;
  for (size_t i = 0; std::getline(m, line); ++i) EXPECT_EQ(series[0]["y"][i], json::parse(line)["loss"]);

  fs::remove_all(dir_ + "/out");
  out = run(args, &rc, "PATH=/nonexistent ");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("warning: no loss.png: python3 is not installed"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(dir_ + "/out/adapter_model.safetensors"));
  EXPECT_FALSE(fs::exists(dir_ + "/out/loss.png"));
}

}  // namespace
}  // namespace gf
