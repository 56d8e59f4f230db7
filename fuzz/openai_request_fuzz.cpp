// libFuzzer harness: OpenAI request bodies (/v1/completions and
// /v1/chat/completions: sampling fields, stop strings, messages, content
// parts, tools) through parse_openai_request, then the answer a server would
// write for it: token ids taken from the input (byte tokens included) through
// the stream decoder with the request's stop strings, logprobs, SSE events
// and the whole response. Every JSON the writer produces must parse back.
//
// Input: byte 0 picks the endpoint and tokenizer (bit 0: chat, bit 1: a
// Gemma 4 vocabulary, bit 2: no chat format); the rest is the body.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "fuzz_common.h"
#include "server/openai_api.h"
#include "tokenizer/chat_format.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"

namespace {

gf::Tokenizer load(gf::fuzz::TinyStyle style) {
  auto t = gf::Tokenizer::from_json_text(gf::fuzz::tiny_tokenizer_json(style));
  if (!t.ok()) std::abort();
  return std::move(t).value();
}

void must_parse(const std::string& text) {
  if (nlohmann::json::parse(text, nullptr, false).is_discarded()) std::abort();
}

void must_parse_sse(const std::string& event) {
  if (event.rfind("data: ", 0) != 0 || event.size() < 8 || event.compare(event.size() - 2, 2, "\n\n") != 0) std::abort();
  const std::string payload = event.substr(6, event.size() - 8);
  if (payload.find('\n') != std::string::npos) std::abort();  // one event, one line
  if (payload != "[DONE]") must_parse(payload);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const gf::Tokenizer tok3 = load(gf::fuzz::TinyStyle::Gemma3);
  static const gf::Tokenizer tok4 = load(gf::fuzz::TinyStyle::Gemma4);
  static const gf::ChatFormat chat3 = gf::ChatFormat::for_tokenizer(tok3).value();
  static const gf::ChatFormat chat4 = gf::ChatFormat::for_tokenizer(tok4).value();
  if (size < 1) return 0;
  const bool is_chat = data[0] & 1;
  const bool gemma4 = data[0] & 2;
  const gf::Tokenizer& tok = gemma4 ? tok4 : tok3;
  const gf::ChatFormat* chat = (data[0] & 4) ? nullptr : gemma4 ? &chat4 : &chat3;
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);

  auto parsed = gf::parse_openai_request(body, is_chat, tok, chat);
  if (auto* e = std::get_if<gf::ApiError>(&parsed)) {
    if (e->status < 400 || e->status > 599 || e->message.empty()) std::abort();
    must_parse(gf::error_json(*e));
    return 0;
  }
  const gf::OpenAiRequest& r = std::get<gf::OpenAiRequest>(parsed);
  if (r.prompts.empty() || (is_chat && r.prompts.size() != 1)) std::abort();
  for (const gf::PromptIn& in : r.prompts) {
    if (in.ids.empty()) std::abort();
    for (int32_t id : in.ids)
      if (!tok.valid_id(id)) std::abort();
  }
  const gf::GenParams& p = r.params;
  if (p.max_tokens < (p.echo ? 0 : 1) || p.top_logprobs > 20) std::abort();
  const auto prompt_tokens = static_cast<int64_t>(r.prompts[0].ids.size());

  // The "generated" tokens: ids from the body's bytes (byte tokens and text
  // pieces alike), at most 64.
  std::vector<int32_t> gen;
  for (size_t i = 1; i < size && gen.size() < 64; ++i) gen.push_back(static_cast<int32_t>((data[i] * 7u + i) % static_cast<uint32_t>(tok.vocab_size())));
  const gf::ResponseWriter w{tok, "cmpl-fuzz", 1700000000, "gemma", is_chat};
  gf::StreamDecoder sd(tok, p.stop);
  std::string text = p.echo ? r.prompts[0].echo_text : std::string();
  nlohmann::json lps = nlohmann::json::array();
  if (is_chat) must_parse_sse(w.sse_role());
  if (p.echo) must_parse_sse(w.sse_delta(text, nullptr, nullptr));
  for (size_t i = 0; i < gen.size(); ++i) {
    const std::string piece = sd.push(gen[i]);
    text += piece;
    nlohmann::json lp = nullptr;
    if (p.top_logprobs >= 0) {
      std::vector<std::pair<int32_t, float>> top;
      for (int k = 0; k < p.top_logprobs && k < 3; ++k) top.emplace_back(gen[(i + static_cast<size_t>(k) + 1) % gen.size()], -1.0f - static_cast<float>(k));
      lp = w.logprobs(gen[i], -0.5f, top);
      lps.push_back(lp);
    }
    if (!piece.empty() || p.top_logprobs >= 0) must_parse_sse(w.sse_delta(piece, nullptr, lp));
    if (sd.stopped()) break;
  }
  const std::string tail = sd.finish();
  text += tail;
  must_parse_sse(w.sse_delta(tail, sd.stopped() ? "stop" : "length", nullptr));
  must_parse_sse(w.sse_error("engine error: \xFF"));
  if (p.include_usage) must_parse_sse(w.sse_usage(prompt_tokens, static_cast<int64_t>(gen.size())));
  must_parse_sse(gf::ResponseWriter::sse_done());
  must_parse(w.whole(text, "length", p.top_logprobs >= 0 ? lps : nlohmann::json(nullptr), prompt_tokens,
                     static_cast<int64_t>(gen.size())));
  return 0;
}
