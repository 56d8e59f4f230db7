// Chat templates rendered byte-exact: the Gemma 4 goldens (the official 31B
// template rendered by jinja2: ../shared/fixtures/chat-templates/
// chat_gemma4_goldens.json) and the Gemma 1/2/3 fixtures' rendered text,
// through the library (ChatFormat + chat_json) and through
// `gemforge template`, as external checks run it. A wider differential check
// against jinja2 (random conversations) is tests/chat_template_vs_jinja.py.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "gemma4_test_vocab.h"
#include "test_util.h"
#include "tokenizer/chat_format.h"
#include "tokenizer/chat_json.h"
#include "tokenizer_fixture.h"

namespace gf {
namespace {

using json = nlohmann::ordered_json;

std::string bin() { return GEMFORGE_BINARY; }

json load(const std::string& rel) {
  std::ifstream in(test::fixtures() + "/" + rel);
  return json::parse(in);
}

const json& goldens() {
  static const json g = load("chat-templates/chat_gemma4_goldens.json");
  return g;
}

ChatFormat gemma4_31b() {
  ChatFormat f = ChatFormat::text_only(ChatStyle::Gemma4);
  f.set_empty_thought_channel(true);
  return f;
}


const Tokenizer& gemma4_tokenizer() {
  static const Tokenizer tok = [] {
    auto t = Tokenizer::from_json_text(test::gemma4_tokenizer_json());
    EXPECT_TRUE(t.ok()) << t.message();
    return std::move(t).value();
  }();
  return tok;
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + what.size())) ++n;
  return n;
}

// Runs the binary; stdout in the result, stderr in *err, exit code in *rc.
std::string run_cli(const std::string& args, int* rc, std::string* err = nullptr) {
  const std::string err_path = test::temp_path("template_stderr.txt");
  const std::string out = test::run_command(bin() + " template " + args + " 2> " + err_path, rc);
  if (err) *err = test::read_bytes(err_path);
  std::remove(err_path.c_str());
  return out;
}

std::string write_temp(const std::string& name, const std::string& bytes) {
  const std::string p = test::temp_path(name);
  test::write_bytes(p, bytes);
  return p;
}

TEST(ChatTemplate, Gemma4GoldensAreElevenCases) {
  ASSERT_EQ(goldens()["cases"].size(), 11u);
  EXPECT_EQ(goldens()["template"], "gemma4-31b-it.jinja");
}

TEST(ChatTemplate, Gemma4GoldensByteExactThroughTheLibrary) {
  const ChatFormat f = gemma4_31b();
  for (const auto& c : goldens()["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    auto req = chat_request_from_json(c["input"]);
    ASSERT_TRUE(req.ok()) << req.message();
    auto text = f.render_text(req->messages, req->options);
    ASSERT_TRUE(text.ok()) << text.message();
    EXPECT_EQ(*text, c["text"].get<std::string>());
  }
}

TEST(ChatTemplate, Gemma4GoldensAsIdsKeepContentOutOfControlTokens) {
  const Tokenizer& t = gemma4_tokenizer();
  auto f = ChatFormat::for_tokenizer(t);
  ASSERT_TRUE(f.ok()) << f.message();
  ASSERT_EQ(f->style(), ChatStyle::Gemma4);
  f->set_empty_thought_channel(true);
  for (const auto& c : goldens()["cases"]) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    const std::string want = c["text"];
    auto req = chat_request_from_json(c["input"]);
    ASSERT_TRUE(req.ok()) << req.message();
    auto text = f->render_text(req->messages, req->options);
    auto ids = f->render_ids(req->messages, req->options);
    ASSERT_TRUE(text.ok() && ids.ok()) << ids.message();
    EXPECT_EQ(*text, want);
    EXPECT_EQ(t.decode(*ids), want);
    // Every marker the template wrote is one control token; in this set only the user of
    // user_types_control_tokens writes markers ("<turn|>" and "<|turn>"), and those stay text.
    size_t markers = 1;  // <bos>
    for (const char* m : test::kGemma4Markers) markers += count(want, m);
    size_t control = 0;
    for (int32_t id : *ids) control += t.is_control(id);
    EXPECT_EQ(control, markers - (name == "user_types_control_tokens" ? 2 : 0));
    if (name == "user_types_control_tokens") {
      const int32_t open = *t.token_to_id("<|turn>"), close = *t.token_to_id("<turn|>");
      EXPECT_EQ(std::count(ids->begin(), ids->end(), open), 2);   // the user's turn and the model's
      EXPECT_EQ(std::count(ids->begin(), ids->end(), close), 1);  // closing the user's turn
    }
  }
}

TEST(ChatTemplate, Gemma4GoldensByteExactThroughTheCli) {
  for (const auto& c : goldens()["cases"]) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    const std::string in = write_temp("golden_" + name + ".json", c["input"].dump());
    int rc = -1;
    std::string err;
    EXPECT_EQ(run_cli("--format gemma4 --json " + in, &rc, &err), c["text"].get<std::string>());
    EXPECT_EQ(rc, 0) << err;
    EXPECT_EQ(err, "");
    std::remove(in.c_str());
  }
  // stdin
  int rc = -1;
  const json& c = goldens()["cases"][8];  // tool_call_and_response
  EXPECT_EQ(test::run_command("echo '" + c["input"].dump() + "' | " + bin() + " template --format gemma4 --json -", &rc),
            c["text"].get<std::string>());
  EXPECT_EQ(rc, 0);
}

// Cases beyond the goldens whose expected text jinja2 3.1.6 rendered from the same template
// (tests/chat_template_vs_jinja.py renders such cases at random).
TEST(ChatTemplate, Gemma4ArgumentsNumbersAndSchemasAsJinjaRendersThem) {
  const ChatFormat f = gemma4_31b();
  auto render = [&](const char* in) {
    auto req = parse_chat_request(in);
    EXPECT_TRUE(req.ok()) << req.message();
    auto text = req.ok() ? f.render_text(req->messages, req->options) : Result<std::string>(Err(req.message()));
    EXPECT_TRUE(text.ok()) << text.message();
    return text.ok() ? *text : "";
  };
  // Keys sorted case-insensitively, nested keys unquoted in calls, Python's str() of numbers and None.
  EXPECT_EQ(render(R"({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "", "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": {"n": [1e+16, 1e-05, 0.1, 100.0, -7, true, null], "B": {"z": "s", "a": []}}}}]}, {"role": "tool", "tool_call_id": "1", "content": 3.25}], "add_generation_prompt": true})"),
            "<bos><|turn>user\nx<turn|>\n<|turn>model\n<|tool_call>call:f{B:{a:[],z:<|\"|>s<|\"|>},n:[1e+16,1e-05,0.1,100.0,-7,true,None]}"
            "<tool_call|><|tool_response>response:f{value:3.25}<tool_response|>");
  // Array items, a list-valued type (the template upper-cases Python's str() of the list), nullable, required.
  EXPECT_EQ(render(R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"l": {"type": ["string", "null"]}, "arr": {"type": "array", "items": {"type": "object", "properties": {"b": {"type": "integer", "description": "B"}}, "required": ["b"]}}, "o": {"type": "object", "nullable": true, "required": ["q"]}}}}}], "add_generation_prompt": false})"),
            "<bos><|turn>system\n<|tool>declaration:f{description:<|\"|><|\"|>,parameters:{properties:{arr:{items:{properties:{b:{"
            "description:<|\"|>B<|\"|>,type:<|\"|>INTEGER<|\"|>}},required:[<|\"|>b<|\"|>],type:<|\"|>OBJECT<|\"|>},type:<|\"|>"
            "ARRAY<|\"|>},l:{type:<|\"|>['STRING', 'NULL']<|\"|>},o:{nullable:true,properties:{},required:[<|\"|>q<|\"|>],type:"
            "<|\"|>OBJECT<|\"|>}},type:<|\"|>OBJECT<|\"|>}}<tool|><turn|>\n<|turn>user\nx<turn|>\n");
  // Thinking before a tool call after the last user message is kept; a model message right after an
  // assistant one opens no turn; the tool result leaves the turn open, so no generation prompt.
  EXPECT_EQ(render(R"({"messages": [{"role": "user", "content": " q "}, {"role": "assistant", "content": "", "reasoning_content": "why", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{\"raw\": 1}"}}]}, {"role": "tool", "tool_call_id": "a", "content": [{"type": "text", "text": "r1 "}, {"type": "text", "text": "r2"}]}], "add_generation_prompt": true})"),
            "<bos><|turn>user\nq<turn|>\n<|turn>model\n<|channel>thought\nwhy\n<channel|><|tool_call>call:f{{\"raw\": 1}}<tool_call|>"
            "<|tool_response>response:f{value:<|\"|>r1 r2<|\"|>}<tool_response|>");
  // Unicode whitespace is trimmed as Python's str.strip() does; images are markers.
  EXPECT_EQ(render("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image\"}, {\"type\": \"text\", \"text\": \"\\u3000look\\u00a0\"}]}], \"add_generation_prompt\": true, \"enable_thinking\": true}"),
            "<bos><|turn>system\n<|think|>\n<turn|>\n<|turn>user\n<|image|>look<turn|>\n<|turn>model\n");
}

TEST(ChatTemplate, Gemma4Refusals) {
  const ChatFormat f = gemma4_31b();
  auto error = [&](const char* in) -> std::string {
    auto req = parse_chat_request(in);
    if (!req.ok()) return req.message();
    auto text = f.render_text(req->messages, req->options);
    return text.ok() ? "rendered: " + *text : text.message();
  };
  EXPECT_NE(error(R"({"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "r"}]})").find("must follow an assistant message with tool_calls"), std::string::npos);
  EXPECT_NE(error(R"({"messages": [{"role": "narrator", "content": "x"}]})").find("unknown chat role"), std::string::npos);
  EXPECT_NE(error(R"({"messages": []})").find("non-empty"), std::string::npos);
  EXPECT_NE(error(R"({"messages": [{"role": "user", "content": "x"}], "temperature": 1})").find("unknown field \"temperature\""), std::string::npos);
  EXPECT_NE(error(R"({"messages": [{"role": "user", "content": "x"}])").find("malformed JSON"), std::string::npos);
  EXPECT_NE(error(R"({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "", "tool_calls": [{"id": "a", "function": {"name": "f"}}]}, {"role": "tool", "tool_call_id": "b", "content": "r"}]})").find("matches no call"), std::string::npos);
  EXPECT_NE(error(R"({"messages": [{"role": "user", "content": "x"}], "add_generation_prompt": "yes"})").find("true or false"), std::string::npos);
}

TEST(ChatTemplate, Gemma123FixturesRenderedTextThroughTheLibraryAndCli) {
  struct Fmt {
    const char* fixture;
    const char* format;
    ChatStyle style;
  };
  for (const Fmt& fm : {Fmt{"chat_gemma.json", "gemma", ChatStyle::Gemma}, Fmt{"chat_gemma.json", "gemma2", ChatStyle::Gemma},
                        Fmt{"chat_gemma3.json", "gemma3", ChatStyle::Gemma3}}) {
    const json cases = load(std::string("tokenizers/") + fm.fixture);
    ASSERT_GE(cases.size(), 4u);
    const ChatFormat f = ChatFormat::text_only(fm.style);
    size_t i = 0;
    for (const auto& c : cases) {
      SCOPED_TRACE(std::string(fm.format) + " case " + std::to_string(i));
      const json in = {{"messages", c["messages"]}, {"add_generation_prompt", true}};
      auto req = chat_request_from_json(in);
      ASSERT_TRUE(req.ok()) << req.message();
      auto text = f.render_text(req->messages, req->options);
      const std::string path = write_temp("fixture_" + std::string(fm.format) + std::to_string(i++) + ".json", in.dump());
      int rc = -1;
      std::string err;
      const std::string out = run_cli(std::string("--format ") + fm.format + " --json " + path, &rc, &err);
      std::remove(path.c_str());
      if (c.contains("error")) {
        ASSERT_FALSE(text.ok());
        EXPECT_NE(text.message().find(c["error"].get<std::string>()), std::string::npos) << text.message();
        EXPECT_NE(rc, 0);
        EXPECT_EQ(out, "");
        EXPECT_NE(err.find(c["error"].get<std::string>()), std::string::npos) << err;
        continue;
      }
      ASSERT_TRUE(text.ok()) << text.message();
      EXPECT_EQ(*text, c["rendered"].get<std::string>());
      EXPECT_EQ(out, c["rendered"].get<std::string>());
      EXPECT_EQ(rc, 0) << err;
    }
  }
}

TEST(ChatTemplate, Gemma3ContentPartsAndNoToolCalls) {
  const ChatFormat g3 = ChatFormat::text_only(ChatStyle::Gemma3);
  auto req = parse_chat_request(R"({"messages": [{"role": "system", "content": [{"type": "text", "text": "Sys "}]}, {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " What is this? "}]}], "add_generation_prompt": true})");
  ASSERT_TRUE(req.ok()) << req.message();
  EXPECT_EQ(*g3.render_text(req->messages, req->options),
            "<bos><start_of_turn>user\nSys \n\n<start_of_image>What is this?<end_of_turn>\n<start_of_turn>model\n");
  // Through the real Gemma 3 tokenizer the image marker is its control token.
  auto f = ChatFormat::for_tokenizer(test::fixture_tokenizer("gemma3"));
  auto ids = f->render_ids(req->messages, req->options);
  ASSERT_TRUE(ids.ok()) << ids.message();
  EXPECT_EQ(std::count(ids->begin(), ids->end(), *test::fixture_tokenizer("gemma3").token_to_id("<start_of_image>")), 1);
  auto calls = parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]}]})");
  ASSERT_TRUE(calls.ok());
  EXPECT_FALSE(g3.render_text(calls->messages, calls->options).ok());
  // Gemma 1/2 take string content only; a text-only format has no ids.
  EXPECT_FALSE(ChatFormat::text_only(ChatStyle::Gemma).render_text(req->messages, req->options).ok());
  EXPECT_FALSE(g3.render_ids(req->messages, req->options).ok());
}

TEST(ChatTemplate, CliErrorsAreOneLineWithNonZeroExit) {
  struct Case {
    std::string args, json, expect;
  };
  const std::string ok = R"({"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": true})";
  for (const Case& c : {
           Case{"--format gemma2", R"({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]})", "System role not supported"},
           Case{"--format gemma3", R"({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]})", "Conversation roles must alternate"},
           Case{"--format gemma4", R"({"messages": [{"role": "user", "content": )", "malformed JSON"},
           Case{"--format gemma4", R"({"messages": "hi"})", "\"messages\" must be a non-empty list"},
           Case{"--format gemma5", ok, "unknown --format"},
           Case{"", ok, "exactly one of -m MODEL or --format"},
       }) {
    SCOPED_TRACE(c.args + " " + c.json);
    const std::string path = write_temp("cli_error.json", c.json);
    int rc = -1;
    std::string err;
    EXPECT_EQ(run_cli(c.args + " --json " + path, &rc, &err), "");
    std::remove(path.c_str());
    EXPECT_NE(rc, 0);
    EXPECT_EQ(err.rfind("error: ", 0), 0u) << err;
    EXPECT_NE(err.find(c.expect), std::string::npos) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  }
  int rc = -1;
  std::string err;
  run_cli("--format gemma4 --json /nonexistent/x.json", &rc, &err);
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find("cannot read"), std::string::npos) << err;
  // --help explains the file.
  const std::string help = test::run_command(bin() + " template --help", &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_NE(help.find("add_generation_prompt"), std::string::npos);
  EXPECT_NE(help.find("--format"), std::string::npos);
}

TEST(ChatTemplate, CliModelTokenizerPicksTheFormat) {
  const std::string in = write_temp("model_pick.json", R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "add_generation_prompt": true})");
  int rc = -1;
  std::string err;
  // Gemma 3: system folded into the first user turn.
  EXPECT_EQ(run_cli("-m " + test::fixtures() + "/tokenizers/gemma3_tokenizer.json.xz --json " + in, &rc, &err),
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n");
  EXPECT_EQ(rc, 0) << err;
  // Gemma 1/2: refused.
  EXPECT_EQ(run_cli("-m " + test::fixtures() + "/tokenizers/gemma_tokenizer.json.xz --json " + in, &rc, &err), "");
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find("System role not supported"), std::string::npos) << err;
  // A Gemma 4 vocabulary: the 31B template unless the model's own template lacks the empty thought block.
  const std::string dir = test::temp_path("gemma4_model");
  ASSERT_EQ(std::system(("mkdir -p " + dir).c_str()), 0);
  test::write_bytes(dir + "/tokenizer.json", test::gemma4_tokenizer_json());
  const std::string g4 = "<bos><|turn>system\nBe brief.<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\n";
  EXPECT_EQ(run_cli("-m " + dir + " --json " + in, &rc, &err), g4 + "<|channel>thought\n<channel|>");
  EXPECT_EQ(rc, 0) << err;
  test::write_bytes(dir + "/chat_template.jinja", "{{- '<|turn>model\\n' -}}");
  EXPECT_EQ(run_cli("-m " + dir + " --json " + in, &rc, &err), g4);
  EXPECT_EQ(rc, 0) << err;
  std::system(("rm -rf " + dir).c_str());
  std::remove(in.c_str());
}

}  // namespace
}  // namespace gf
