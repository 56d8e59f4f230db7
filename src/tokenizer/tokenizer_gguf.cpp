#include "tokenizer/tokenizer_gguf.h"

#include <nlohmann/json.hpp>
#include <set>

#include "formats/gguf_writer.h"
#include "tokenizer/tokenizer.h"

namespace gf {

Status add_gemma4_tokenizer_keys(const std::string& tokenizer_json, const std::string& chat_template, GgufWriter& w) {
  using json = nlohmann::json;
  GF_ASSIGN_OR_RETURN(std::string text, read_maybe_xz(tokenizer_json));
  const json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.contains("model") || !doc["model"].contains("vocab") || !doc["model"]["vocab"].is_object() ||
      !doc["model"].contains("merges") || !doc["model"]["merges"].is_array())
    return Err(tokenizer_json + ": not a BPE tokenizer.json (model.vocab and model.merges)");
  std::vector<std::string> tokens;
  std::vector<uint8_t> control;
  auto put = [&](int64_t id, const std::string& piece) {
    if (id < 0 || id >= (1 << 24)) return false;
    if (static_cast<size_t>(id) >= tokens.size()) {
      tokens.resize(static_cast<size_t>(id) + 1);
      control.resize(tokens.size(), 0);
    }
    tokens[static_cast<size_t>(id)] = piece;
    return true;
  };
  for (auto it = doc["model"]["vocab"].begin(); it != doc["model"]["vocab"].end(); ++it)
    if (!it.value().is_number_integer() || !put(it.value().get<int64_t>(), it.key())) return Err(tokenizer_json + ": bad vocab id");
  if (doc.contains("added_tokens") && doc["added_tokens"].is_array())
    for (const json& a : doc["added_tokens"]) {
      if (!a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") || !a["content"].is_string() ||
          !put(a["id"].get<int64_t>(), a["content"].get<std::string>()))
        return Err(tokenizer_json + ": bad added token");
      if (a.value("special", false)) control[static_cast<size_t>(a["id"].get<int64_t>())] = 1;
    }
  static const std::set<std::string> kUserDefined = {"<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>",
                                                     "<|tool_response>", "<tool_response|>", "<|\"|>"};
  std::vector<int32_t> types(tokens.size());
  int32_t bos = 2, eos = 1, pad = 0, unk = 3;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& p = tokens[i];
    const bool byte = p.size() == 6 && p.compare(0, 3, "<0x") == 0 && p[5] == '>' && std::isxdigit(static_cast<unsigned char>(p[3])) &&
                      std::isxdigit(static_cast<unsigned char>(p[4]));
    types[i] = kUserDefined.count(p) ? 4 : byte ? 6 : control[i] ? 3 : 1;
    const int32_t id = static_cast<int32_t>(i);
    if (p == "<bos>") bos = id;
    if (p == "<eos>") eos = id;
    if (p == "<pad>") pad = id;
    if (p == "<unk>") unk = id;
  }
  std::vector<std::string> merges;
  merges.reserve(doc["model"]["merges"].size());
  for (const json& m : doc["model"]["merges"]) {
    if (m.is_string()) {
      merges.push_back(m.get<std::string>());
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      // llama.cpp's converter writes a space inside a part as U+0120.
      auto part = [](std::string s) {
        std::string out;
        for (char c : s) out += c == ' ' ? std::string("\xC4\xA0") : std::string(1, c);
        return out;
      };
      merges.push_back(part(m[0].get<std::string>()) + " " + part(m[1].get<std::string>()));
    } else {
      return Err(tokenizer_json + ": merge " + std::to_string(merges.size()) + " is neither \"a b\" nor [\"a\", \"b\"]");
    }
  }
  w.add_string("tokenizer.ggml.model", "gemma4");
  w.add_string_array("tokenizer.ggml.tokens", tokens);
  w.add_f32_array("tokenizer.ggml.scores", std::vector<float>(tokens.size(), -1000.0f));
  w.add_i32_array("tokenizer.ggml.token_type", types);
  w.add_string_array("tokenizer.ggml.merges", merges);
  w.add_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(bos));
  w.add_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(eos));
  w.add_u32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(unk));
  w.add_u32("tokenizer.ggml.padding_token_id", static_cast<uint32_t>(pad));
  if (!chat_template.empty()) w.add_string("tokenizer.chat_template", chat_template);
  w.add_bool("tokenizer.ggml.add_space_prefix", false);
  w.add_bool("tokenizer.ggml.add_bos_token", true);
  return Ok();
}

}  // namespace gf
