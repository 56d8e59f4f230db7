// Gemma4OutputParser (src/server/gemma4_output.h): thinking, tool calls and
// plain content from Gemma 4 reply text, fed whole and split at every position.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <variant>

#include <httplib.h>

#include <thread>

#include "gemma4_test_vocab.h"
#include "backend/backend.h"
#include "core/mapped_file.h"
#include "model/decoder.h"
#include "runtime/engine.h"
#include "server/gemma4_output.h"
#include "server/openai_api.h"
#include "server/openai_server.h"

namespace gf {
namespace {

using json = nlohmann::json;

const char* const kControl[] = {"<|\"|>", "<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<|turn>", "<turn|>", "<|tool_response>"};

Gemma4Delta feed(const std::vector<std::string>& pieces) {
  Gemma4OutputParser p;
  Gemma4Delta all;
  for (const auto& s : pieces) all.append(p.push(s));
  all.append(p.finish());
  return all;
}

void expect_same(const Gemma4Delta& a, const Gemma4Delta& b, const std::string& where) {
  EXPECT_EQ(a.content, b.content) << where;
  EXPECT_EQ(a.reasoning, b.reasoning) << where;
  ASSERT_EQ(a.tool_calls.size(), b.tool_calls.size()) << where;
  for (size_t i = 0; i < a.tool_calls.size(); ++i) {
    EXPECT_EQ(a.tool_calls[i].name, b.tool_calls[i].name) << where;
    EXPECT_EQ(a.tool_calls[i].arguments, b.tool_calls[i].arguments) << where;
  }
}

void expect_no_control(const Gemma4Delta& d) {
  for (const char* m : kControl) {
    EXPECT_EQ(d.content.find(m), std::string::npos) << m << " in content: " << d.content;
    EXPECT_EQ(d.reasoning.find(m), std::string::npos) << m << " in reasoning: " << d.reasoning;
  }
}

// The whole text at once, every split into two and three pieces, and one byte at a time agree.
Gemma4Delta check_splits(const std::string& text) {
  const Gemma4Delta whole = feed({text});
  expect_no_control(whole);
  for (size_t i = 0; i <= text.size(); ++i) {
    expect_same(feed({text.substr(0, i), text.substr(i)}), whole, "split at " + std::to_string(i));
    for (size_t k = i; k <= text.size(); k += 3)
      expect_same(feed({text.substr(0, i), text.substr(i, k - i), text.substr(k)}), whole,
                  "split at " + std::to_string(i) + "," + std::to_string(k));
  }
  std::vector<std::string> bytes;
  for (char c : text) bytes.push_back(std::string(1, c));
  expect_same(feed(bytes), whole, "byte by byte");
  return whole;
}

TEST(Gemma4Output, PlainTextPassesThrough) {
  const auto d = check_splits("Hello <b>world</b> a < b | c");
  EXPECT_EQ(d.content, "Hello <b>world</b> a < b | c");
  EXPECT_EQ(d.reasoning, "");
  EXPECT_TRUE(d.tool_calls.empty());
}

TEST(Gemma4Output, ThinkingGoesToReasoning) {
  const auto d = check_splits("<|channel>thought\nLet me think.\nOK.<channel|>The answer is 4.");
  EXPECT_EQ(d.reasoning, "Let me think.\nOK.");
  EXPECT_EQ(d.content, "The answer is 4.");
  // The empty thought channel, and one never closed (cut off by max_tokens).
  EXPECT_EQ(check_splits("<|channel>thought\n<channel|>Hi").content, "Hi");
  EXPECT_EQ(check_splits("<|channel>thought\n<channel|>Hi").reasoning, "");
  const auto cut = check_splits("<|channel>thought\nstill thinking");
  EXPECT_EQ(cut.reasoning, "still thinking");
  EXPECT_EQ(cut.content, "");
}

TEST(Gemma4Output, ToolCallBecomesJsonArguments) {
  const auto d = check_splits(
      "<|tool_call>call:get_weather{city:<|\"|>Paris, \"FR\"<|\"|>,days:3,metric:true,ratio:0.5,none:null}<tool_call|>");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].name, "get_weather");
  EXPECT_EQ(json::parse(d.tool_calls[0].arguments),
            json::parse(R"({"city": "Paris, \"FR\"", "days": 3, "metric": true, "ratio": 0.5, "none": null})"));
  EXPECT_EQ(d.content, "");
}

TEST(Gemma4Output, NestedObjectsAndArrays) {
  const auto d = check_splits(
      "<|channel>thought\nplan<channel|>Sure.<|tool_call>call:f{a:{b:[1,2,{c:<|\"|>x}]{<|\"|>}],d:{}},e:[],"
      "g:[<|\"|>p<|\"|>,[false,-3e2]]}<tool_call|><|tool_call>call:g{}<tool_call|>");
  EXPECT_EQ(d.reasoning, "plan");
  EXPECT_EQ(d.content, "Sure.");
  ASSERT_EQ(d.tool_calls.size(), 2u);
  EXPECT_EQ(d.tool_calls[0].name, "f");
  EXPECT_EQ(json::parse(d.tool_calls[0].arguments),
            json::parse(R"({"a": {"b": [1, 2, {"c": "x}]{"}], "d": {}}, "e": [], "g": ["p", [false, -300.0]]})"));
  EXPECT_EQ(d.tool_calls[1].name, "g");
  EXPECT_EQ(d.tool_calls[1].arguments, "{}");
  // Keys keep the model's order.
  EXPECT_EQ(check_splits("<|tool_call>call:h{z:1,a:2}<tool_call|>").tool_calls.at(0).arguments, R"({"z":1,"a":2})");
}

TEST(Gemma4Output, MalformedToolCallsDegradeToContent) {
  // Unterminated string, missing braces, no "call:", cut off by max_tokens: content, no markers.
  auto d = check_splits("<|tool_call>call:f{a:<|\"|>open}<tool_call|>after");
  EXPECT_TRUE(d.tool_calls.empty());
  EXPECT_EQ(d.content, "call:f{a:\"open}after");
  d = check_splits("<|tool_call>call:f{a:1<tool_call|>");
  EXPECT_TRUE(d.tool_calls.empty());
  EXPECT_EQ(d.content, "call:f{a:1");
  d = check_splits("<|tool_call>f{a:1}<tool_call|>");
  EXPECT_TRUE(d.tool_calls.empty());
  d = check_splits("x<|tool_call>call:f{a:<|\"|>unterminated");
  EXPECT_TRUE(d.tool_calls.empty());
  EXPECT_EQ(d.content, "xcall:f{a:\"unterminated");
  // A call whose closing marker never came but whose text is whole still counts.
  d = check_splits("<|tool_call>call:f{a:1}");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].arguments, R"({"a":1})");
  // Stray markers and other control tokens are dropped, never shown.
  d = check_splits("a<channel|>b<tool_call|>c<|\"|>d<turn|>e<|tool_response>f");
  EXPECT_EQ(d.content, "abcdef");
  // Deep nesting is refused, not a crash.
  std::string deep = "<|tool_call>call:f{a:" + std::string(5000, '[') + std::string(5000, ']') + "}<tool_call|>";
  d = feed({deep});
  EXPECT_TRUE(d.tool_calls.empty());
}

TEST(Gemma4Output, ArgumentsGrammar) {
  EXPECT_EQ(json::parse(gemma4_arguments_json(R"({"q": "a,b", <|"|>k<|"|>:x y})")->dump()), json::parse(R"({"q": "a,b", "k": "x y"})"));
  EXPECT_FALSE(gemma4_arguments_json("{a:1}}"));
  EXPECT_FALSE(gemma4_arguments_json("[1]"));
  EXPECT_FALSE(gemma4_arguments_json("{:1}"));
  // A quoted key at the very end, or one without its colon (no read past the text).
  EXPECT_FALSE(gemma4_arguments_json("{<|\"|>k<|\"|>"));
  EXPECT_FALSE(gemma4_arguments_json("{\"k\""));
  EXPECT_FALSE(gemma4_arguments_json("{\"k\" 1}"));
  EXPECT_EQ(gemma4_arguments_json("{\"k\" : 1}")->dump(), R"({"k":1})");
  EXPECT_FALSE(gemma4_parse_call("call:{a:1}"));
  EXPECT_TRUE(gemma4_parse_call("call:ns.tool-1{ }"));
}

// Random replies built from markers and argument syntax: no crash, no control token in content or
// reasoning, and the same result however the text is split.
TEST(Gemma4Output, RandomRepliesNeverLeakOrDependOnSplits) {
  const std::vector<std::string> frags = {"<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<|\"|>", "<turn|>", "thought\n",
                                          "call:", "f", "{", "}", "[", "]", ":", ",", "a", "1", "true", " ", "\n", "x y", "\""};
  uint64_t state = 12345;
  auto rnd = [&](uint64_t n) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return (state >> 33) % n;
  };
  for (int iter = 0; iter < 3000; ++iter) {
    std::string text;
    const uint64_t n = 1 + rnd(30);
    for (uint64_t i = 0; i < n; ++i) text += frags[rnd(frags.size())];
    const Gemma4Delta whole = feed({text});
    expect_no_control(whole);
    for (const auto& c : whole.tool_calls) EXPECT_TRUE(json::parse(c.arguments, nullptr, false).is_object()) << text;
    const size_t a = rnd(text.size() + 1), b = a + rnd(text.size() - a + 1);
    expect_same(feed({text.substr(0, a), text.substr(a, b - a), text.substr(b)}), whole, text);
    if (HasFailure()) break;
  }
}

TEST(Gemma4Output, FinishIsFinal) {
  Gemma4OutputParser p;
  auto d = p.push("ab<|chan");
  EXPECT_EQ(d.content, "ab");  // "<|chan" could still be a marker
  d = p.finish();
  EXPECT_EQ(d.content, "<|chan");
  EXPECT_TRUE(p.push("more").empty());
  EXPECT_TRUE(p.finish().empty());
}

// ---- the parser behind the OpenAI request parse and response writer, on a tiny Gemma 4 vocabulary ----


const Tokenizer& tiny() {
  static const Tokenizer t = std::move(Tokenizer::from_json_text(test::gemma4_tokenizer_json())).value();
  return t;
}

int32_t id_of(const char* piece) { return *tiny().token_to_id(piece); }

size_t count(const std::vector<int32_t>& ids, int32_t id) { return static_cast<size_t>(std::count(ids.begin(), ids.end(), id)); }

std::variant<OpenAiRequest, ApiError> parse_chat(const json& body) {
  static const ChatFormat fmt = *ChatFormat::for_tokenizer(tiny());
  return parse_openai_request(body.dump(), true, tiny(), &fmt);
}

TEST(Gemma4Serve, RequestRendersToolsThinkingAndHistory) {
  const json tools = json::parse(R"([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])");
  const json history = json::parse(R"([
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
      {"role": "assistant", "content": null,
       "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}])");
  auto r = parse_chat({{"messages", history}, {"tools", tools}, {"chat_template_kwargs", {{"enable_thinking", true}}}});
  ASSERT_TRUE(std::holds_alternative<OpenAiRequest>(r)) << std::get<ApiError>(r).message;
  const auto& q = std::get<OpenAiRequest>(r);
  EXPECT_TRUE(q.gemma4_output);
  const auto& ids = q.prompts[0].ids;
  EXPECT_EQ(count(ids, id_of("<|think|>")), 1u);
  EXPECT_EQ(count(ids, id_of("<|tool>")), 1u);
  EXPECT_EQ(count(ids, id_of("<|tool_call>")), 1u);
  EXPECT_EQ(count(ids, id_of("<|tool_response>")), 1u);
  // The arguments text was parsed: the call renders city:<|"|>Paris<|"|>.
  const std::string text = tiny().decode(ids);
  EXPECT_NE(text.find("<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>}<tool_call|>"), std::string::npos) << text;
  EXPECT_NE(text.find("<|tool_response>response:get_weather{value:<|\"|>sunny<|\"|>}<tool_response|>"), std::string::npos) << text;

  // Thinking off by default and with reasoning_effort "none"; on with any other effort.
  const json user = {{{"role", "user"}, {"content", "Hi"}}};
  auto think = [&](const json& body) {
    auto x = parse_chat(body);
    EXPECT_TRUE(std::holds_alternative<OpenAiRequest>(x)) << body.dump();
    return std::holds_alternative<OpenAiRequest>(x) ? count(std::get<OpenAiRequest>(x).prompts[0].ids, id_of("<|think|>")) : 99u;
  };
  EXPECT_EQ(think({{"messages", user}}), 0u);
  EXPECT_EQ(think({{"messages", user}, {"reasoning_effort", "none"}}), 0u);
  EXPECT_EQ(think({{"messages", user}, {"reasoning_effort", "low"}}), 1u);
  EXPECT_EQ(think({{"messages", user}, {"chat_template_kwargs", {{"enable_thinking", false}}}}), 0u);
  // tool_choice "none" leaves the declarations out.
  auto none = parse_chat({{"messages", user}, {"tools", tools}, {"tool_choice", "none"}});
  ASSERT_TRUE(std::holds_alternative<OpenAiRequest>(none));
  EXPECT_EQ(count(std::get<OpenAiRequest>(none).prompts[0].ids, id_of("<|tool>")), 0u);
}

TEST(Gemma4Serve, RequestErrorsAre400) {
  const json user = {{{"role", "user"}, {"content", "Hi"}}};
  for (const json& body : {json{{"messages", user}, {"chat_template_kwargs", {{"foo", 1}}}},
                           json{{"messages", user}, {"chat_template_kwargs", {{"enable_thinking", "yes"}}}},
                           json{{"messages", user}, {"chat_template_kwargs", 3}},
                           json{{"messages", user}, {"reasoning_effort", 1}},
                           json{{"messages", user}, {"tools", json::parse(R"([{"type": "function"}])")}},
                           json{{"messages", user}, {"tool_choice", "required"}},
                           json::parse(R"({"messages": [{"role": "tool", "content": "x", "tool_call_id": "c"}]})"),
                           json::parse(R"({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "not json"}}]}]})"),
                           json::parse(R"({"messages": [{"role": "user", "content": "x", "bogus": 1}]})")}) {
    auto r = parse_chat(body);
    ASSERT_TRUE(std::holds_alternative<ApiError>(r)) << body.dump();
    EXPECT_EQ(std::get<ApiError>(r).status, 400);
  }
  // Deep nesting (the renderer recurses into arguments) is refused, not a stack overflow.
  std::string deep(100000, '[');
  deep += std::string(100000, ']');
  const std::string body = R"({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {"a": )" + deep +
                           R"(}}}]}, {"role": "user", "content": "x"}]})";
  static const ChatFormat fmt = *ChatFormat::for_tokenizer(tiny());
  auto deep_r = parse_openai_request(body, true, tiny(), &fmt);
  ASSERT_TRUE(std::holds_alternative<ApiError>(deep_r));
  EXPECT_EQ(std::get<ApiError>(deep_r).status, 400);
  // Formats without tools or thinking refuse those fields.
  const ChatFormat g3 = ChatFormat::text_only(ChatStyle::Gemma3);
  std::vector<int32_t> ids;
  auto e = parse_chat_messages(json{{"messages", user}, {"reasoning_effort", "high"}}, tiny(), &g3, ids);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status, 400);
}

// Token texts of a reply, one token at a time, through the parser and the writer.
struct Replayed {
  json whole;
  std::vector<json> chunks;
};
Replayed replay(const std::string& reply) {
  const std::vector<int32_t> ids = tiny().encode(reply, false, /*parse_special=*/true);
  const ResponseWriter w{tiny(), "chatcmpl-x", 0, "m", true};
  Gemma4OutputParser whole_p, stream_p;
  Gemma4Delta all;
  Replayed out;
  int sent = 0;
  auto chunk = [&](const Gemma4Delta& d, const json& finish) {
    const std::string ev = w.sse_chat_delta(d.content, d.reasoning, tool_calls_json(d.tool_calls, true, sent), finish, nullptr);
    sent += static_cast<int>(d.tool_calls.size());
    EXPECT_EQ(ev.substr(0, 6), "data: ");
    out.chunks.push_back(json::parse(ev.substr(6)));
  };
  for (int32_t id : ids) {
    const std::string piece = tiny().decode({id});
    all.append(whole_p.push(piece));
    const Gemma4Delta d = stream_p.push(piece);
    if (!d.empty()) chunk(d, nullptr);
  }
  all.append(whole_p.finish());
  const std::string reason = whole_p.tool_calls() ? "tool_calls" : "stop";
  chunk(stream_p.finish(), reason);
  ChoiceOut c{all.content, reason, nullptr, all.reasoning, all.tool_calls.empty() ? json(nullptr) : tool_calls_json(all.tool_calls, false)};
  out.whole = json::parse(w.whole({c}, 5, static_cast<int64_t>(ids.size())));
  return out;
}

TEST(Gemma4Serve, WriterShowsReasoningAndToolCalls) {
  const auto r = replay("<|channel>thought\nneed weather<channel|>Checking.<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>,"
                        "opts:{days:[1,2],metric:true}}<tool_call|>");
  const json& msg = r.whole["choices"][0]["message"];
  EXPECT_EQ(msg["content"], "Checking.");
  EXPECT_EQ(msg["reasoning_content"], "need weather");
  ASSERT_EQ(msg["tool_calls"].size(), 1u);
  const json& call = msg["tool_calls"][0];
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["id"].get<std::string>().rfind("call_", 0), 0u);
  EXPECT_EQ(call["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(call["function"]["arguments"].get<std::string>()),
            json::parse(R"({"city": "Paris", "opts": {"days": [1, 2], "metric": true}})"));
  EXPECT_FALSE(call.contains("index"));
  EXPECT_EQ(r.whole["choices"][0]["finish_reason"], "tool_calls");
  // The stream says the same in deltas, the tool call with its index.
  std::string content, reasoning;
  json calls = json::array();
  for (const json& c : r.chunks) {
    const json& d = c["choices"][0]["delta"];
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    if (d.contains("content")) content += d["content"].get<std::string>();
    if (d.contains("reasoning_content")) reasoning += d["reasoning_content"].get<std::string>();
    if (d.contains("tool_calls"))
      for (const json& t : d["tool_calls"]) calls.push_back(t);
  }
  EXPECT_EQ(content, "Checking.");
  EXPECT_EQ(reasoning, "need weather");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0]["index"], 0);
  EXPECT_EQ(calls[0]["function"]["arguments"], call["function"]["arguments"]);
  EXPECT_EQ(r.chunks.back()["choices"][0]["finish_reason"], "tool_calls");
  for (const json& c : r.chunks) {
    const std::string dump = c.dump();
    for (const char* m : test::kGemma4Markers) EXPECT_EQ(dump.find(m), std::string::npos) << dump;
  }
}

TEST(Gemma4Serve, WriterPlainAndMalformedReplies) {
  auto r = replay("Just text.");
  EXPECT_EQ(r.whole["choices"][0]["message"]["content"], "Just text.");
  EXPECT_FALSE(r.whole["choices"][0]["message"].contains("tool_calls"));
  EXPECT_FALSE(r.whole["choices"][0]["message"].contains("reasoning_content"));
  EXPECT_EQ(r.whole["choices"][0]["finish_reason"], "stop");
  r = replay("<|tool_call>call:f{a:<|\"|>cut");
  EXPECT_EQ(r.whole["choices"][0]["message"]["content"], "call:f{a:\"cut");
  EXPECT_EQ(r.whole["choices"][0]["finish_reason"], "stop");
  // Two calls: indexes 0 and 1 in the stream, content null in the message.
  r = replay("<|tool_call>call:a{}<tool_call|><|tool_call>call:b{x:1}<tool_call|>");
  EXPECT_TRUE(r.whole["choices"][0]["message"]["content"].is_null());
  EXPECT_EQ(r.whole["choices"][0]["message"]["tool_calls"].size(), 2u);
  std::vector<int> idx;
  for (const json& c : r.chunks)
    if (c["choices"][0]["delta"].contains("tool_calls"))
      for (const json& t : c["choices"][0]["delta"]["tool_calls"]) idx.push_back(t["index"]);
  EXPECT_EQ(idx, (std::vector<int>{0, 1}));
}

// The real server on a tiny random Gemma 4 (hf-tiny/gemma4-e2b-like, vocabulary 512) with the tiny
// Gemma 4 tokenizer above: its text is random, so this checks the request side (the prompt the server
// rendered has the tools and thinking in it: usage.prompt_tokens is the rendered length) and that
// whatever comes back is OpenAI-shaped with no control token in it.
class Gemma4ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = std::string(GEMFORGE_FIXTURES) + "/hf-tiny/gemma4-e2b-like";
    if (!file_exists(dir + "/model.safetensors")) GTEST_SKIP() << dir << " is absent";
    auto m = load_model(dir);
    ASSERT_TRUE(m.ok()) << m.message();
    model_ = std::make_unique<Model>(std::move(m).value());
    fmt_ = std::make_unique<ChatFormat>(*ChatFormat::for_tokenizer(tiny()));
    be_ = make_cpu_backend();
    dec_ = std::move(Decoder::create(*model_, *be_)).value();
    EngineOptions eo;
    eo.kv_blocks = 64;
    eo.max_running = 4;
    eo.max_step_tokens = 256;
    engine_ = std::move(Engine::create(*dec_, eo)).value();
    ServerOptions so;
    so.model_name = "tiny-gemma4";
    server_ = std::make_unique<OpenAiServer>(*engine_, tiny(), fmt_.get(), model_->spec.eos_token_ids, so);
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
  std::string post(const json& body, int* status) {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(300, 0);
    auto r = c.Post("/v1/chat/completions", body.dump(), "application/json");
    if (!r) return "";
    *status = r->status;
    return r->body;
  }
  size_t rendered(const std::vector<ChatMessage>& msgs, const ChatOptions& opt) {
    auto ids = fmt_->render_ids(msgs, opt);
    EXPECT_TRUE(ids.ok()) << ids.message();
    return ids.ok() ? ids->size() : 0;
  }
  std::unique_ptr<Model> model_;
  std::unique_ptr<ChatFormat> fmt_;
  std::unique_ptr<Backend> be_;
  std::unique_ptr<Decoder> dec_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<OpenAiServer> server_;
  std::thread thread_;
  int port_ = 0;
};

void expect_clean(const std::string& text) {
  for (const char* m : test::kGemma4Markers) EXPECT_EQ(text.find(m), std::string::npos) << m << " in " << text;
}

TEST_F(Gemma4ServerTest, ToolsAndThinkingReachThePrompt) {
  const json tools = json::parse(R"([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])");
  const json user = {{{"role", "user"}, {"content", "Weather in Paris?"}}};
  ChatOptions opt;
  const std::vector<ChatMessage> msgs = {{"user", "Weather in Paris?"}};
  const size_t plain = rendered(msgs, opt);
  opt.enable_thinking = true;
  const size_t thinking = rendered(msgs, opt);
  opt.tools = nlohmann::ordered_json::parse(tools.dump());
  const size_t both = rendered(msgs, opt);
  ASSERT_LT(plain, thinking);
  ASSERT_LT(thinking, both);
  for (const auto& [body, want] : std::vector<std::pair<json, size_t>>{
           {{{"messages", user}}, plain},
           {{{"messages", user}, {"reasoning_effort", "high"}}, thinking},
           {{{"messages", user}, {"tools", tools}, {"chat_template_kwargs", {{"enable_thinking", true}}}}, both}}) {
    json b = body;
    b["max_tokens"] = 8;
    b["temperature"] = 0;
    int status = 0;
    const std::string text = post(b, &status);
    ASSERT_EQ(status, 200) << text;
    expect_clean(text);
    const json r = json::parse(text);
    EXPECT_EQ(r["usage"]["prompt_tokens"], want) << b.dump();
    const json& c = r["choices"][0];
    EXPECT_TRUE(c["finish_reason"] == "stop" || c["finish_reason"] == "length" || c["finish_reason"] == "tool_calls") << text;
    EXPECT_TRUE(c["message"]["content"].is_string() || c["message"].contains("tool_calls")) << text;
  }
  // Streaming: every event is JSON, none carries a marker, the last chunk has the finish_reason.
  int status = 0;
  const std::string sse = post({{"messages", user}, {"tools", tools}, {"max_tokens", 8}, {"temperature", 0}, {"stream", true}, {"reasoning_effort", "low"}}, &status);
  ASSERT_EQ(status, 200) << sse;
  expect_clean(sse);
  EXPECT_NE(sse.find("data: [DONE]"), std::string::npos);
  EXPECT_TRUE(sse.find("\"finish_reason\":\"length\"") != std::string::npos || sse.find("\"finish_reason\":\"stop\"") != std::string::npos ||
              sse.find("\"finish_reason\":\"tool_calls\"") != std::string::npos)
      << sse;
  // Unknown template kwargs are a 400.
  const std::string err = post({{"messages", user}, {"chat_template_kwargs", {{"thinking", true}}}}, &status);
  EXPECT_EQ(status, 400) << err;
}

TEST_F(Gemma4ServerTest, ToolResultHistoryIsAccepted) {
  const json body = json::parse(R"({"max_tokens": 4, "messages": [
      {"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "content": "", "reasoning_content": "call the tool",
       "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "sunny, 21 C"}]})");
  ChatMessage call{"assistant", ""};
  call.reasoning = "call the tool";
  call.tool_calls.push_back({std::string("c1"), "get_weather", nlohmann::ordered_json{{"city", "Paris"}}});
  ChatMessage result{"tool", "sunny, 21 C"};
  result.tool_call_id = "c1";
  const size_t want = rendered({{"user", "Weather in Paris?"}, call, result}, ChatOptions{});
  int status = 0;
  const std::string text = post(body, &status);
  ASSERT_EQ(status, 200) << text;
  expect_clean(text);
  EXPECT_EQ(json::parse(text)["usage"]["prompt_tokens"], want);
}

}  // namespace
}  // namespace gf
