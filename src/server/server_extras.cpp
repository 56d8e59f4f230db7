#include "server/server_extras.h"

namespace gf {
namespace {

using json = nlohmann::json;

bool is_utf8(const std::string& s) {
  try {
    (void)json(s).dump();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

std::optional<ApiError> flag(const json& j, const char* k, bool& out) {
  if (!j.contains(k) || j[k].is_null()) return std::nullopt;
  if (!j[k].is_boolean()) return bad(std::string("\"") + k + "\" must be true or false", k);
  out = j[k].get<bool>();
  return std::nullopt;
}

}  // namespace

std::variant<std::string, ApiError> tokenize_json(const std::string& body, const Tokenizer& tok) {
  const json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("the body must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "content" && it.key() != "add_special" && it.key() != "parse_special" && it.key() != "with_pieces")
      return bad("unknown field \"" + it.key() + "\" (content, add_special, parse_special, with_pieces)", it.key());
  if (!j.contains("content") || !j["content"].is_string()) return bad("\"content\" must be a string", "content");
  bool add_special = false, parse_special = true, with_pieces = false;
  for (auto [k, v] : {std::pair{"add_special", &add_special}, {"parse_special", &parse_special}, {"with_pieces", &with_pieces}})
    if (auto e = flag(j, k, *v)) return *e;
  const std::vector<int32_t> ids = tok.encode(j["content"].get<std::string>(), add_special, parse_special);
  json tokens = json::array();
  for (int32_t id : ids) {
    if (!with_pieces) {
      tokens.push_back(id);
      continue;
    }
    const std::string& b = tok.token_bytes(id);
    json piece = b;
    if (!is_utf8(b)) {  // a byte of a character: its value, as llama-server does
      piece = json::array();
      for (unsigned char c : b) piece.push_back(c);
    }
    tokens.push_back({{"id", id}, {"piece", piece}});
  }
  return json_text(json{{"tokens", tokens}});
}

std::variant<std::string, ApiError> detokenize_json(const std::string& body, const Tokenizer& tok) {
  const json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("the body must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "tokens") return bad("unknown field \"" + it.key() + "\" (tokens)", it.key());
  if (!j.contains("tokens") || !j["tokens"].is_array()) return bad("\"tokens\" must be an array of token ids", "tokens");
  std::vector<int32_t> ids;
  for (const auto& t : j["tokens"]) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= tok.vocab_size())
      return bad("\"tokens\" must be token ids in [0, " + std::to_string(tok.vocab_size()) + ")", "tokens");
    ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return json_text(json{{"content", tok.decode(ids, false)}});
}

ApiError embeddings_refusal() {
  return {501, "not_implemented_error", "/v1/embeddings is not supported: gemforge serves Gemma generation models; use "
          "/v1/completions or /v1/chat/completions", ""};
}

std::shared_ptr<const JsonGrammar> GrammarCache::get(const GenParams& p) {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto it = lru_.begin(); it != lru_.end(); ++it)
    if (it->first == p.schema_key) {
      lru_.splice(lru_.begin(), lru_, it);
      return it->second;
    }
  if (!vocab_) {
    auto v = std::make_shared<ConstraintVocab>();
    v->bytes.resize(static_cast<size_t>(tok_.vocab_size()));
    for (int32_t i = 0; i < tok_.vocab_size(); ++i)
      if (!tok_.is_control(i)) v->bytes[static_cast<size_t>(i)] = tok_.token_bytes(i);
    vocab_ = std::move(v);
  }
  auto g = std::make_shared<const JsonGrammar>(*p.schema, vocab_);
  lru_.emplace_front(p.schema_key, g);
  if (lru_.size() > kMaxGrammars) lru_.pop_back();
  return g;
}

std::unique_ptr<TokenConstraint> GrammarCache::constraint(const GenParams& p, const std::vector<int32_t>& stop_ids) {
  return std::make_unique<JsonConstraint>(get(p), stop_ids);
}

}  // namespace gf
