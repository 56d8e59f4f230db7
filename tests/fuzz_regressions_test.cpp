// Inputs that crashed a fuzz harness (fuzz/), and the bugs found reading the
// parsers while writing the harnesses (marked "review"): each test feeds the
// input to the harness's entry point and checks for a clean result or error.
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "../fuzz/fuzz_common.h"
#include "model/spec_from_hf_config.h"
#include "server/openai_api.h"
#include "tokenizer/chat_format.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"

namespace gf {
namespace {

using json = nlohmann::json;

const Tokenizer& tiny(fuzz::TinyStyle style = fuzz::TinyStyle::Gemma3) {
  static const Tokenizer t3 = Tokenizer::from_json_text(fuzz::tiny_tokenizer_json(fuzz::TinyStyle::Gemma3)).value();
  static const Tokenizer t4 = Tokenizer::from_json_text(fuzz::tiny_tokenizer_json(fuzz::TinyStyle::Gemma4)).value();
  return style == fuzz::TinyStyle::Gemma3 ? t3 : t4;
}

bool parses(const std::string& s) { return !json::parse(s, nullptr, false).is_discarded(); }

// openai_request_fuzz, its own seed (completion_ids): logprobs of byte-fallback
// tokens put one byte of a UTF-8 character in a JSON string, and
// nlohmann::json::dump() threw type_error 316 out of the response writer (the
// server answered 500, or broke the SSE stream).
TEST(FuzzRegressions, LogprobsOfByteTokensAreValidJson) {
  const Tokenizer& tok = tiny();
  auto parsed = parse_openai_request(R"({"prompt":[2,300,301,302],"max_tokens":4,"logprobs":3,"echo":false,"seed":42})", false, tok, nullptr);
  ASSERT_TRUE(std::holds_alternative<OpenAiRequest>(parsed));
  EXPECT_EQ(std::get<OpenAiRequest>(parsed).params.top_logprobs, 3);
  const int32_t e3 = *tok.token_to_id("<0xE3>"), a9 = *tok.token_to_id("<0xA9>");
  for (bool chat : {false, true}) {
    const ResponseWriter w{tok, "cmpl-1", 1, "gemma", chat};
    const json lp = w.logprobs(e3, -0.5f, {{a9, -1.0f}, {e3, -2.0f}});
    const std::string event = w.sse_delta("", nullptr, lp);
    ASSERT_EQ(event.rfind("data: ", 0), 0u);
    ASSERT_TRUE(parses(event.substr(6))) << event;
    // A lone byte token is named by its byte, as OpenAI does ("bytes:\xe3"; distinct tokens keep distinct
    // top_logprobs keys); a lone byte in text becomes U+FFFD.
    EXPECT_NE(event.find("bytes:\\\\xe3"), std::string::npos) << event;
    const std::string whole = w.whole("\xE3", "length", json::array({lp}), 4, 1);
    ASSERT_TRUE(parses(whole));
    EXPECT_NE(whole.find("\xEF\xBF\xBD"), std::string::npos) << "the lone byte becomes U+FFFD";
    const std::string err = w.sse_error("bad \xFF byte");
    ASSERT_TRUE(parses(err.substr(6))) << err;
  }
}

// Review (tokenizer_fuzz's entry point): a piece that looks like a byte token but is not hex
// ("<0xZZ>") made std::stoi throw out of the loader, and "<0x-1>" indexed
// byte_ids_[-1]. Both are ordinary pieces now.
TEST(FuzzRegressions, NonHexBytePiecesAreOrdinaryPieces) {
  std::string j = fuzz::tiny_tokenizer_json(fuzz::TinyStyle::Gemma3);
  const size_t at = j.find("},\"merges\"");
  ASSERT_NE(at, std::string::npos);
  ASSERT_EQ(Tokenizer::from_json_text(j)->vocab_size(), 314);
  j.insert(at, ",\"<0xZZ>\":314,\"<0x-1>\":315,\"<0x 1>\":316");
  auto t = Tokenizer::from_json_text(j);
  ASSERT_TRUE(t.ok()) << t.message();
  for (const char* p : {"<0xZZ>", "<0x-1>", "<0x 1>"}) {
    const auto id = t->token_to_id(p);
    ASSERT_TRUE(id.has_value()) << p;
    EXPECT_EQ(t->token_bytes(*id), p);
    EXPECT_EQ(t->decode({*id}), p);
  }
  EXPECT_EQ(t->decode({*t->token_to_id("<0x41>")}), "A");
}

// Review (tokenizer_fuzz's entry point): without <bos>/<eos>/<pad>/unk_token the ids default to
// 2/1/0/3; with a smaller vocabulary encode(add_bos) returned an id outside
// it and decode, the chat format and the model indexed past their tables.
TEST(FuzzRegressions, DefaultSpecialIdsOutsideATinyVocabularyAreAnError) {
  auto t = Tokenizer::from_json_text(R"({"model":{"type":"BPE","vocab":{"a":0,"b":1},"merges":[]}})");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.message().find("special token id 2"), std::string::npos) << t.message();
  EXPECT_EQ(t.message().find('\n'), std::string::npos);
  // Four pieces are enough for the defaults.
  auto ok = Tokenizer::from_json_text(R"({"model":{"type":"BPE","vocab":{"a":0,"b":1,"c":2,"d":3},"merges":[["a","b"]]}})");
  ASSERT_TRUE(ok.ok()) << ok.message();
  for (int32_t id : ok->encode("abc xyz", true)) EXPECT_TRUE(ok->valid_id(id)) << id;
}

// Review (tokenizer_fuzz's entry point): an added token with id 16777216 sized the tables for 16M
// pieces (~600 MB under ASan: out of memory) before finding the gaps.
TEST(FuzzRegressions, SparseAddedTokenIdsFailBeforeAllocating) {
  auto t = Tokenizer::from_json_text(
      R"({"added_tokens":[{"id":16777216,"content":"<x>","special":true}],"model":{"type":"BPE","vocab":{"a":0},"merges":[]}})");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.message().find("token ids go up to 16777216 but there are only 2"), std::string::npos) << t.message();
}

// Found by review, each input confirmed to crash openai_request_fuzz: a
// field of the wrong type that json::value() read threw type_error 302 out of
// the request parser (the server answered 500 "request failed"), and
// integers were narrowed with get<int>() (4294967297 tokens became 1).
TEST(FuzzRegressions, WrongTypesInRequestsAre400s) {
  const Tokenizer& tok = tiny();
  auto chat = ChatFormat::for_tokenizer(tok);
  ASSERT_TRUE(chat.ok());
  struct Case {
    bool is_chat;
    const char* body;
    const char* error;  // nullptr: accepted
  };
  const Case cases[] = {
      {true, R"({"messages":[{"role":"user","content":"x"}],"logprobs":1})", "\"logprobs\" must be true or false"},
      {true, R"({"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":"yes"}})",
       "\"stream_options.include_usage\" must be true or false"},
      {true, R"({"messages":[{"role":"user","content":[{"type":5,"text":"x"}]}]})", "only text content parts"},
      {true, R"({"messages":[{"role":"user","content":[{"text":"x"}]}]})", "only text content parts"},
      {false, R"({"prompt":"x","echo":"yes"})", "\"echo\" must be true or false"},
      {false, R"({"prompt":"x","n":4294967297})", "\"n\" must be an integer in [1, 16]"},
      {false, R"({"prompt":"x","logprobs":4294967298})", "\"logprobs\" must be an integer in [0, 20]"},
      {false, R"({"prompt":[4294967298]})", "valid ids"},
      {false, R"({"prompt":[2, -1]})", "valid ids"},
      {false, R"({"prompt":"x","max_tokens":0})", "at least 1"},
      {false, R"({"prompt":"x","max_tokens":18446744073709551615})", nullptr},
      {false, R"({"prompt":"x","max_tokens":0,"echo":true})", nullptr},
      {true, R"({"messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":4294967296})", "\"top_logprobs\" must be in [0, 20]"},
  };
  for (const Case& c : cases) {
    auto r = parse_openai_request(c.body, c.is_chat, tok, &*chat);
    if (!c.error) {
      ASSERT_TRUE(std::holds_alternative<OpenAiRequest>(r)) << c.body << ": " << std::get<ApiError>(r).message;
      continue;
    }
    ASSERT_TRUE(std::holds_alternative<ApiError>(r)) << c.body;
    const ApiError& e = std::get<ApiError>(r);
    EXPECT_EQ(e.status, 400) << c.body;
    EXPECT_NE(e.message.find(c.error), std::string::npos) << c.body << " gave: " << e.message;
  }
  auto big = parse_openai_request(R"({"prompt":"x","max_tokens":4294967297})", false, tok, nullptr);
  ASSERT_TRUE(std::holds_alternative<OpenAiRequest>(big));
  EXPECT_EQ(std::get<OpenAiRequest>(big).params.max_tokens, INT32_MAX) << "saturated, not wrapped to 1";
}

// hf_config_fuzz (after ~5 min): a config whose top-level "model_type" was a
// number (262144) made json::value() throw type_error 302 out of
// spec_from_hf_config_text; the top-level "torch_dtype" was read the same way.
// Review of the same reader: integers were narrowed with get<int>()
// ("hidden_size": 4294967360 became 64).
TEST(FuzzRegressions, ConfigFieldsOfTheWrongTypeOrRangeAreErrors) {
  const std::string body = R"("hidden_size":64,"num_hidden_layers":1,"intermediate_size":8,"num_attention_heads":1)";
  struct Case {
    std::string json, error;
  };
  const Case cases[] = {
      {R"({"model_type":262144,)" + body + "}", "\"model_type\" must be a string"},
      {R"({"model_type":"gemma3","torch_dtype":5,"text_config":{"model_type":"gemma3_text",)" + body + "}}", "\"torch_dtype\" must be a string"},
      {R"({"model_type":"gemma","hidden_size":4294967360,"num_hidden_layers":1,"intermediate_size":8,"num_attention_heads":1})",
       "\"hidden_size\" must be an integer that fits 32 bits"},
      {R"({"model_type":"gemma","num_hidden_layers":-4294967295,"hidden_size":64,"intermediate_size":8,"num_attention_heads":1})",
       "\"num_hidden_layers\" must be an integer that fits 32 bits"},
      {R"({"model_type":"gemma","eos_token_id":[1,4294967297],)" + body + "}", "eos_token_id"},
      // hf_config_fuzz (second run): a string from the file put a newline in the message.
      {R"({"model_type":"gemma","layer_types":["full_attention\n\n"],"num_hidden_layers":1,"hidden_size":64,"intermediate_size":8,"num_attention_heads":1})",
       "layer_types[0] is \"full_attention\\x0a\\x0a\""},
      {R"({"model_type":"gemma\n",)" + body + "}", "model_type \"gemma\\x0a\" is not"},
      {R"({"model_type":"gemma","hidden_act":"relu\r",)" + body + "}", "hidden_activation \"relu\\x0d\""},
  };
  for (const Case& c : cases) {
    auto s = spec_from_hf_config_text(c.json);
    ASSERT_FALSE(s.ok()) << c.json;
    EXPECT_NE(s.message().find(c.error), std::string::npos) << c.json << " gave: " << s.message();
    EXPECT_EQ(s.message().find('\n'), std::string::npos);
  }
  EXPECT_TRUE(spec_from_hf_config_text(R"({"model_type":"gemma",)" + body + "}").ok());
}

// The harness's view of a request: the parse the server does, chat included.
TEST(FuzzRegressions, ChatRequestsRenderWithTheTinyVocabularies) {
  for (auto style : {fuzz::TinyStyle::Gemma3, fuzz::TinyStyle::Gemma4}) {
    const Tokenizer& tok = tiny(style);
    auto chat = ChatFormat::for_tokenizer(tok);
    ASSERT_TRUE(chat.ok()) << chat.message();
    auto r = parse_openai_request(
        R"({"messages":[{"role":"user","content":[{"type":"text","text":"hello "},{"type":"text","text":"world"}]}],"stop":"or","stream":true})",
        true, tok, &*chat);
    ASSERT_TRUE(std::holds_alternative<OpenAiRequest>(r)) << std::get<ApiError>(r).message;
    const OpenAiRequest& q = std::get<OpenAiRequest>(r);
    ASSERT_EQ(q.prompts.size(), 1u);
    EXPECT_EQ(q.prompts[0].ids, *chat->render_ids({{"user", "hello world"}}));
    EXPECT_EQ(q.extra_stop_ids, chat->stop_ids());
    EXPECT_TRUE(q.params.stream);
    ASSERT_EQ(q.params.stop.size(), 1u);
  }
}

}  // namespace
}  // namespace gf
