// Serving several LoRA adapters beside the base model (serve --lora NAME=DIR):
// a request of adapter A inside one batch with B and base requests replies
// exactly as A served alone (the decoder with only A, as `--lora A`), the
// prefix cache never hands one adapter's KV to another, and over HTTP:
// /v1/models, picking by "model", load -> use -> unload -> 404, 409 while in
// use, 400 for bad adapters, all behind the API key. On the hf-tiny Gemma 3
// fixture (ids in, a real tokenizer only to print them).
#include <gtest/gtest.h>
#include <httplib.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <csignal>
#include <thread>

#include "model/decoder.h"
#include "runtime/adapters.h"
#include "runtime/decoder_runner.h"
#include "runtime/engine_core.h"
#include "server/openai_server.h"
#include "test_util.h"
#include "train/lora_io.h"

namespace gf {
namespace {

using json = nlohmann::json;

const std::string kPeftAdapter = std::string(GEMFORGE_SOURCE_DIR) + "/tests/lora_references/lora-gemma3-1b-like/adapter";
const std::string kTokenizer = test::fixtures() + "/tokenizers/gemma3_tokenizer.json.xz";
constexpr int kSteps = 8;

using train::load_adapter_view;

class LoraServe : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = load_model(test::hf_tiny("gemma3-1b-like"));
    ASSERT_TRUE(m.ok()) << m.message();
    model_ = std::make_unique<Model>(std::move(m).value());
    be_ = make_cpu_backend();
    // A: rank 8 on every projection; B: rank 4 on q, v and down. Random B (a
    // fresh adapter's is zero) large enough that each changes the replies.
    dir_a_ = test::temp_path("adapter_a");
    dir_b_ = test::temp_path("adapter_b");
    train::LoraConfig cfg;
    cfg.rank = 8;
    write_random_adapter(dir_a_, cfg, 5);
    cfg.rank = 4;
    cfg.targets = {Projection::Q, Projection::V, Projection::Down};
    write_random_adapter(dir_b_, cfg, 7);
  }
  void TearDown() override {
    std::filesystem::remove_all(dir_a_);
    std::filesystem::remove_all(dir_b_);
  }
  void write_random_adapter(const std::string& dir, const train::LoraConfig& cfg, uint64_t seed) {
    std::filesystem::create_directories(dir);
    auto a = train::make_adapter(model_->spec, cfg, seed);
    ASSERT_TRUE(a.ok()) << a.message();
    std::mt19937 rng(static_cast<uint32_t>(seed));
    std::normal_distribution<float> nd(0.0f, 0.3f);
    for (auto& mat : a->mats)
      for (float& x : mat.B) x = nd(rng);
    ASSERT_TRUE(train::save_adapter(dir, *a, {"hf-tiny", "model"}).ok());
  }

  std::unique_ptr<Decoder> decoder(const std::string& lora = "") {
    if (lora.empty()) return std::move(Decoder::create(*model_, *be_)).value();
    auto a = load_adapter_view(lora, model_->spec);
    EXPECT_TRUE(a.ok()) << a.message();
    return std::move(Decoder::create(*model_, *be_, a->view)).value();
  }
  static std::shared_ptr<EngineRequest> request(const std::vector<int32_t>& prompt, int adapter) {
    auto r = std::make_shared<EngineRequest>();
    r->prompt = prompt;
    r->max_tokens = kSteps;
    r->sampling.temperature = 0;
    r->top_logprobs = 3;
    r->adapter = adapter;
    return r;
  }
  static std::vector<int32_t> prompt(int n, int salt) {
    std::vector<int32_t> p = {2};
    for (int i = 1; i < n; ++i) p.push_back(3 + (i * 37 + salt * 11) % 500);
    return p;
  }
  static EngineOptions options() {
    EngineOptions o;
    o.kv_blocks = 64;
    o.block_size = 16;
    o.max_step_tokens = 256;
    return o;
  }
  // Runs the requests on an engine core over dec to the end; returns the first step's plan size.
  static size_t run(Decoder& dec, const std::vector<std::shared_ptr<EngineRequest>>& rs, EngineCore** keep = nullptr) {
    auto runner = DecoderRunner::create(dec, options().kv_blocks, options().block_size);
    EXPECT_TRUE(runner.ok());
    EngineCore core(**runner, options());
    for (auto& r : rs) core.add(r);
    StepPlan first;
    core.step(&first);
    while (core.step()) {
    }
    return first.chunks.size();
  }
  static void expect_same(const EngineRequest& got, const EngineRequest& want, const std::string& what) {
    ASSERT_EQ(got.finish_reason, want.finish_reason) << what << ": " << got.error;
    ASSERT_EQ(got.tokens.size(), want.tokens.size()) << what;
    double worst = 0;
    for (size_t i = 0; i < got.tokens.size(); ++i) {
      EXPECT_EQ(got.tokens[i].id, want.tokens[i].id) << what << " token " << i;
      worst = std::max(worst, std::fabs(static_cast<double>(got.tokens[i].logprob - want.tokens[i].logprob)));
      ASSERT_EQ(got.tokens[i].top.size(), want.tokens[i].top.size());
      for (size_t k = 0; k < got.tokens[i].top.size(); ++k) {
        EXPECT_EQ(got.tokens[i].top[k].first, want.tokens[i].top[k].first) << what << " token " << i << " alternative " << k;
        worst = std::max(worst, std::fabs(static_cast<double>(got.tokens[i].top[k].second - want.tokens[i].top[k].second)));
      }
    }
    std::printf("[ %s ] max |logprob - alone| = %.3g over %zu tokens\n", what.c_str(), worst, got.tokens.size());
    EXPECT_LE(worst, 1e-4) << what;
  }
  // Replies that differ in a token or in an alternative's log-prob by > 0.1
  // (the fixture's replies are nearly certain: the alternatives show an adapter).
  static bool differ(const EngineRequest& a, const EngineRequest& b) {
    if (a.tokens.size() != b.tokens.size()) return true;
    for (size_t i = 0; i < a.tokens.size(); ++i) {
      if (a.tokens[i].id != b.tokens[i].id || a.tokens[i].top.size() != b.tokens[i].top.size()) return true;
      for (size_t k = 0; k < a.tokens[i].top.size(); ++k)
        if (a.tokens[i].top[k].first != b.tokens[i].top[k].first || std::fabs(a.tokens[i].top[k].second - b.tokens[i].top[k].second) > 0.1)
          return true;
    }
    return false;
  }

  std::unique_ptr<Model> model_;
  std::unique_ptr<Backend> be_;
  std::string dir_a_, dir_b_;
};

TEST_F(LoraServe, MixedBatchEqualsEachAdapterServedAlone) {
  // One batch: A (prompt 1), B (prompt 2), base (prompt 3), A (prompt 2: B's prompt under A).
  auto mixed = decoder();
  for (const auto& [id, dir] : {std::pair{1, dir_a_}, {2, dir_b_}}) {
    auto a = load_adapter_view(dir, model_->spec);
    ASSERT_TRUE(a.ok()) << a.message();
    ASSERT_TRUE(mixed->add_adapter(id, a->view).ok());
  }
  const auto p1 = prompt(21, 1), p2 = prompt(9, 2), p3 = prompt(14, 3);
  std::vector<std::shared_ptr<EngineRequest>> rs = {request(p1, 1), request(p2, 2), request(p3, 0), request(p2, 1)};
  EXPECT_EQ(run(*mixed, rs), 4u);  // all four in the first step: one batch of three adapters

  auto alone_a = decoder(dir_a_), alone_b = decoder(dir_b_), base = decoder();
  auto a1 = request(p1, 0), b2 = request(p2, 0), base3 = request(p3, 0), a2 = request(p2, 0);
  run(*alone_a, {a1});
  run(*alone_a, {a2});
  run(*alone_b, {b2});
  run(*base, {base3});
  expect_same(*rs[0], *a1, "adapter A in the mixed batch");
  expect_same(*rs[1], *b2, "adapter B in the mixed batch");
  expect_same(*rs[2], *base3, "base in the mixed batch");
  expect_same(*rs[3], *a2, "adapter A on B's prompt");
  // The adapters matter: the same prompt under A, B and the base model replies differently.
  auto base2 = request(p2, 0);
  run(*base, {base2});
  EXPECT_TRUE(differ(*a2, *b2));
  EXPECT_TRUE(differ(*a2, *base2));
  EXPECT_TRUE(differ(*b2, *base2));
}

TEST_F(LoraServe, PrefixCacheIsKeyedByAdapter) {
  auto dec = decoder();
  auto a = load_adapter_view(dir_a_, model_->spec), b = load_adapter_view(dir_b_, model_->spec);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(dec->add_adapter(1, a->view).ok());
  ASSERT_TRUE(dec->add_adapter(2, b->view).ok());
  auto runner = DecoderRunner::create(*dec, options().kv_blocks, options().block_size);
  ASSERT_TRUE(runner.ok());
  EngineCore core(**runner, options());
  const auto p = prompt(50, 9);  // three full blocks
  auto finish = [&](int adapter) {
    auto r = request(p, adapter);
    core.add(r);
    while (core.step()) {
    }
    return r;
  };
  auto first_a = finish(1);
  const int64_t hits0 = core.metrics().prefix_hit_tokens_total;
  EXPECT_EQ(hits0, 0);
  auto then_b = finish(2);
  EXPECT_EQ(core.metrics().prefix_hit_tokens_total, hits0) << "B was given blocks A computed";
  auto then_base = finish(0);
  EXPECT_EQ(core.metrics().prefix_hit_tokens_total, hits0) << "the base model was given an adapter's blocks";
  auto again_a = finish(1);
  EXPECT_EQ(core.metrics().prefix_hit_tokens_total, hits0 + 48) << "A's own blocks are reused";
  expect_same(*again_a, *first_a, "A from its cached prefix");
  // And B's reply is B's (what a cache mix-up would change).
  auto alone_b = decoder(dir_b_);
  auto want_b = request(p, 0);
  run(*alone_b, {want_b});
  expect_same(*then_b, *want_b, "B after A's prompt");
}

TEST_F(LoraServe, AnAdapterInUseIsNotUnloaded) {
  auto dec = decoder();
  auto engine = Engine::create(*dec, options());
  ASSERT_TRUE(engine.ok());
  AdapterRegistry reg(**engine, [&](const std::string& d) { return load_adapter_view(d, model_->spec); }, "base");
  ASSERT_EQ(reg.load("a", dir_a_).status, AdapterStatus::Ok);
  EXPECT_EQ(reg.load("a", dir_b_).status, AdapterStatus::Exists);
  EXPECT_EQ(reg.load("base", dir_b_).status, AdapterStatus::Invalid);
  auto r = std::make_shared<EngineRequest>();
  ASSERT_TRUE(reg.bind("a", *r));
  EXPECT_GT(r->adapter, 0);
  const AdapterOutcome busy = reg.unload("a");
  EXPECT_EQ(busy.status, AdapterStatus::InUse) << busy.message;
  EXPECT_NE(busy.message.find("in flight"), std::string::npos) << busy.message;
  r.reset();  // the request has finished
  EXPECT_EQ(reg.unload("a").status, AdapterStatus::Ok);
  EXPECT_EQ(reg.unload("a").status, AdapterStatus::NotFound);
  // A reload under the same name gets a new id: the prefix cache cannot mistake it for the old one.
  ASSERT_EQ(reg.load("a", dir_b_).status, AdapterStatus::Ok);
  EngineRequest again;
  ASSERT_TRUE(reg.bind("a", again));
  EXPECT_GT(again.adapter, 1);
}

// The HTTP side: one server with adapters a and b, one with only `--lora A`.
class LoraServeHttp : public LoraServe {
 protected:
  struct Served {
    std::unique_ptr<Decoder> dec;
    std::unique_ptr<Engine> engine;
    std::unique_ptr<AdapterRegistry> reg;
    std::unique_ptr<OpenAiServer> server;
    std::thread thread;
    int port = 0;
    ~Served() {
      if (server) server->stop();
      if (thread.joinable()) thread.join();
      server.reset();
      reg.reset();
      engine.reset();
    }
  };
  void SetUp() override {
    LoraServe::SetUp();
    auto t = Tokenizer::from_path(kTokenizer);
    ASSERT_TRUE(t.ok()) << t.message();
    tok_ = std::make_unique<Tokenizer>(std::move(t).value());
  }
  std::unique_ptr<Served> serve(std::unique_ptr<Decoder> dec, const std::vector<std::pair<std::string, std::string>>& named) {
    auto s = std::make_unique<Served>();
    s->dec = std::move(dec);
    s->engine = std::move(Engine::create(*s->dec, options())).value();
    s->reg = std::make_unique<AdapterRegistry>(*s->engine, [this](const std::string& d) { return load_adapter_view(d, model_->spec); }, "tiny");
    for (const auto& [name, dir] : named) EXPECT_EQ(s->reg->load(name, dir).status, AdapterStatus::Ok) << name;
    ServerOptions so;
    so.api_key = "sekret";
    so.model_name = "tiny";
    so.adapters = s->reg.get();
    s->server = std::make_unique<OpenAiServer>(*s->engine, *tok_, nullptr, model_->spec.eos_token_ids, so);
    auto port = s->server->bind_any();
    EXPECT_TRUE(port.ok());
    s->port = *port;
    s->thread = std::thread([p = s.get()] { (void)p->server->serve_bound(); });
    return s;
  }
  static json call(int port, const std::string& method, const std::string& path, const json& body, int* status,
                   const std::string& key = "sekret") {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(300, 0);
    if (!key.empty()) c.set_bearer_token_auth(key.c_str());
    auto r = method == "GET" ? c.Get(path.c_str()) : c.Post(path.c_str(), body.dump(), "application/json");
    if (!r) return json();
    *status = r->status;
    return json::parse(r->body, nullptr, false);
  }
  static json complete(int port, const std::string& model, const std::vector<int32_t>& ids, int* status) {
    return call(port, "POST", "/v1/completions",
                {{"model", model}, {"prompt", ids}, {"max_tokens", kSteps}, {"temperature", 0}, {"logprobs", 2}}, status);
  }
  static void expect_same_reply(const json& got, const json& want, const std::string& what) {
    ASSERT_TRUE(got.contains("choices")) << what << ": " << got.dump();
    ASSERT_TRUE(want.contains("choices")) << what << ": " << want.dump();
    const json &g = got["choices"][0], &w = want["choices"][0];
    EXPECT_EQ(g["text"], w["text"]) << what;
    EXPECT_EQ(g["logprobs"]["tokens"], w["logprobs"]["tokens"]) << what;
    const json &gl = g["logprobs"]["token_logprobs"], &wl = w["logprobs"]["token_logprobs"];
    ASSERT_EQ(gl.size(), wl.size()) << what;
    for (size_t i = 0; i < gl.size(); ++i) EXPECT_NEAR(gl[i].get<double>(), wl[i].get<double>(), 1e-4) << what << " token " << i;
  }
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(LoraServeHttp, ModelPicksTheAdapterAndConcurrentRequestsMatchAlone) {
  auto multi = serve(decoder(), {{"a", dir_a_}, {"b", dir_b_}});
  auto only_a = serve(decoder(dir_a_), {});
  int st = 0;
  const json models = call(multi->port, "GET", "/v1/models", nullptr, &st);
  ASSERT_EQ(st, 200) << models.dump();
  ASSERT_EQ(models["data"].size(), 3u) << models.dump();
  EXPECT_EQ(models["data"][0]["id"], "tiny");
  EXPECT_TRUE(models["data"][0]["parent"].is_null());
  EXPECT_EQ(models["data"][1]["id"], "a");
  EXPECT_EQ(models["data"][1]["parent"], "tiny");
  EXPECT_EQ(models["data"][1]["root"], dir_a_);
  EXPECT_EQ(models["data"][2]["id"], "b");

  // a, b and the base model at once; a's reply is the one `--lora A` gives alone.
  const auto ids = prompt(17, 5);
  json replies[3];
  int codes[3] = {0, 0, 0};
  const char* names[3] = {"a", "b", "tiny"};
  std::vector<std::thread> ts;
  for (int i = 0; i < 3; ++i) ts.emplace_back([&, i] { replies[i] = complete(multi->port, names[i], ids, &codes[i]); });
  for (auto& t : ts) t.join();
  for (int i = 0; i < 3; ++i) ASSERT_EQ(codes[i], 200) << names[i] << ": " << replies[i].dump();
  EXPECT_EQ(replies[0]["model"], "a");
  const json alone = complete(only_a->port, "whatever", ids, &st);
  ASSERT_EQ(st, 200);
  expect_same_reply(replies[0], alone, "a beside b and the base model vs --lora A alone");
  EXPECT_NE(replies[0]["choices"][0]["logprobs"]["token_logprobs"], replies[2]["choices"][0]["logprobs"]["token_logprobs"]);
  EXPECT_NE(replies[1]["choices"][0]["logprobs"]["token_logprobs"], replies[2]["choices"][0]["logprobs"]["token_logprobs"]);

  // An unknown model is a 404 that lists what is served.
  const json unknown = complete(multi->port, "c", ids, &st);
  EXPECT_EQ(st, 404);
  const std::string msg = unknown["error"]["message"];
  EXPECT_NE(msg.find("\"a\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("\"tiny\""), std::string::npos) << msg;
}

TEST_F(LoraServeHttp, LoadUseUnloadBehindTheApiKey) {
  auto s = serve(decoder(), {{"a", dir_a_}});
  const auto ids = prompt(12, 8);
  int st = 0;
  // The key guards every adapter route.
  call(s->port, "POST", "/v1/load_lora_adapter", {{"lora_name", "c"}, {"lora_path", dir_b_}}, &st, "");
  EXPECT_EQ(st, 401);
  call(s->port, "POST", "/v1/unload_lora_adapter", {{"lora_name", "a"}}, &st, "wrong");
  EXPECT_EQ(st, 401);
  call(s->port, "GET", "/v1/models", nullptr, &st, "");
  EXPECT_EQ(st, 401);
  complete(s->port, "c", ids, &st);
  EXPECT_EQ(st, 404);

  json r = call(s->port, "POST", "/v1/load_lora_adapter", {{"lora_name", "c"}, {"lora_path", dir_b_}}, &st);
  ASSERT_EQ(st, 200) << r.dump();
  const json via_c = complete(s->port, "c", ids, &st);
  ASSERT_EQ(st, 200) << via_c.dump();
  EXPECT_EQ(via_c["model"], "c");
  // c is adapter B: what a decoder with only B gives.
  auto only_b = serve(decoder(dir_b_), {});
  expect_same_reply(via_c, complete(only_b->port, "tiny", ids, &st), "loaded at run time vs --lora B");
  EXPECT_EQ(call(s->port, "GET", "/v1/models", nullptr, &st)["data"].size(), 3u);

  // A request in flight on c (held here, as the server holds a running one): unloading is refused.
  auto in_flight = std::make_shared<EngineRequest>();
  ASSERT_TRUE(s->reg->bind("c", *in_flight));
  r = call(s->port, "POST", "/v1/unload_lora_adapter", {{"lora_name", "c"}}, &st);
  EXPECT_EQ(st, 409) << r.dump();
  in_flight.reset();
  r = call(s->port, "POST", "/v1/unload_lora_adapter", {{"lora_name", "c"}}, &st);
  ASSERT_EQ(st, 200) << r.dump();
  complete(s->port, "c", ids, &st);
  EXPECT_EQ(st, 404);
  r = call(s->port, "POST", "/v1/unload_lora_adapter", {{"lora_name", "c"}}, &st);
  EXPECT_EQ(st, 404) << r.dump();
  EXPECT_EQ(call(s->port, "GET", "/v1/models", nullptr, &st)["data"].size(), 2u);
  complete(s->port, "a", ids, &st);
  EXPECT_EQ(st, 200);
}

TEST_F(LoraServeHttp, BadAdaptersAreClear400s) {
  auto s = serve(decoder(), {});
  int st = 0;
  auto load = [&](const json& body) {
    const json r = call(s->port, "POST", "/v1/load_lora_adapter", body, &st);
    return r.contains("error") ? r["error"]["message"].get<std::string>() : r.dump();
  };
  std::string m = load({{"lora_name", "x"}, {"lora_path", "/no/such/dir"}});
  EXPECT_EQ(st, 400);
  EXPECT_NE(m.find("/no/such/dir"), std::string::npos) << m;
  m = load({{"lora_name", "x"}});
  EXPECT_EQ(st, 400);
  EXPECT_NE(m.find("lora_path"), std::string::npos) << m;
  m = load({{"lora_name", "tiny"}, {"lora_path", dir_b_}});
  EXPECT_EQ(st, 400);
  EXPECT_NE(m.find("base model"), std::string::npos) << m;
  // An adapter for another model (hidden size 256, not 64).
  const std::string other = test::temp_path("adapter_other");
  std::filesystem::create_directories(other);
  auto g2 = load_model(test::hf_tiny("gemma3-hd256"));
  ASSERT_TRUE(g2.ok());
  train::LoraConfig cfg;
  cfg.rank = 2;
  auto ad = train::make_adapter(g2->spec, cfg, 1);
  ASSERT_TRUE(ad.ok());
  ASSERT_TRUE(train::save_adapter(other, *ad, {"gemma3-hd256", "model"}).ok());
  m = load({{"lora_name", "x"}, {"lora_path", other}});
  EXPECT_EQ(st, 400);
  EXPECT_NE(m.find("cannot load adapter"), std::string::npos) << m;
  // A config whose rank disagrees with the tensors.
  std::filesystem::copy(dir_b_, other, std::filesystem::copy_options::overwrite_existing | std::filesystem::copy_options::recursive);
  std::string cfg_text = test::read_bytes(other + "/adapter_config.json");
  cfg_text.replace(cfg_text.find("\"r\": 4"), 6, "\"r\": 2");
  test::write_bytes(other + "/adapter_config.json", cfg_text);
  m = load({{"lora_name", "x"}, {"lora_path", other}});
  EXPECT_EQ(st, 400);
  EXPECT_NE(m.find("has shape"), std::string::npos) << m;
  std::filesystem::remove_all(other);
  EXPECT_EQ(call(s->port, "GET", "/v1/models", nullptr, &st)["data"].size(), 1u);  // nothing half-loaded
}

// The command line: `serve --lora NAME=DIR` twice serves both (and /v1/models says so).
TEST(LoraServeCli, NamedAdaptersOnTheCommandLine) {
  const int port = 20000 + static_cast<int>(::getpid() % 20000);
  const std::string log = test::temp_path("serve.log");
  const std::string cmd = std::string(GEMFORGE_BINARY) + " serve -m " + test::hf_tiny("gemma3-1b-like") + " --tokenizer " + kTokenizer +
                          " --port " + std::to_string(port) + " --kv-tokens 1024 --lora a=" + kPeftAdapter + " --lora b=" + kPeftAdapter +
                          " > " + log + " 2>&1 & echo $!";
  const int pid = std::atoi(test::run_command(cmd).c_str());
  ASSERT_GT(pid, 0);
  httplib::Client c("127.0.0.1", port);
  std::string body;
  for (int i = 0; i < 200 && body.empty(); ++i) {
    if (auto r = c.Get("/v1/models")) body = r->body;
    else std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::kill(pid, SIGTERM);
  ASSERT_FALSE(body.empty()) << test::read_bytes(log);
  const json j = json::parse(body);
  ASSERT_EQ(j["data"].size(), 3u) << body;
  EXPECT_EQ(j["data"][1]["id"], "a");
  EXPECT_EQ(j["data"][2]["parent"], "gemma3-1b-like");
  // Plain --lora DIR with a named one is refused.
  int rc = 0;
  const std::string out = test::run_command(std::string(GEMFORGE_BINARY) + " serve -m " + test::hf_tiny("gemma3-1b-like") + " --tokenizer " +
                                                kTokenizer + " --lora " + kPeftAdapter + " --lora a=" + kPeftAdapter + " 2>&1",
                                            &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("named adapters"), std::string::npos) << out;
  std::remove(log.c_str());
}

}  // namespace
}  // namespace gf
