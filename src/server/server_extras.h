// Endpoints and helpers beside the OpenAI completions: llama-server's
// /tokenize and /detokenize, the refusal of /v1/embeddings, and the grammars
// of structured outputs shared by the requests that use the same schema.
#pragma once
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <variant>
#include <vector>

#include "runtime/json_constraint.h"
#include "server/openai_api.h"
#include "tokenizer/tokenizer.h"

namespace gf {

// POST /tokenize: {"content": "...", "add_special": false, "parse_special": true,
// "with_pieces": false} -> {"tokens": [ids]} (with_pieces: [{"id", "piece"}], the
// piece a string, or its bytes as numbers when they are not UTF-8 on their own).
std::variant<std::string, ApiError> tokenize_json(const std::string& body, const Tokenizer& tok);
// POST /detokenize: {"tokens": [ids]} -> {"content": "..."} (control tokens written out, as Hugging Face decodes).
std::variant<std::string, ApiError> detokenize_json(const std::string& body, const Tokenizer& tok);
// What /v1/embeddings answers: 501, a generation model has no embeddings endpoint.
ApiError embeddings_refusal();

// JsonGrammars by schema, least recently used dropped beyond a few (each holds
// its mask cache), over the vocabulary's bytes (control tokens excluded).
class GrammarCache {
 public:
  explicit GrammarCache(const Tokenizer& tok) : tok_(tok) {}
  std::shared_ptr<const JsonGrammar> get(const GenParams& p);
  // The constraint for one choice of a request with p.schema set.
  std::unique_ptr<TokenConstraint> constraint(const GenParams& p, const std::vector<int32_t>& stop_ids);

 private:
  static constexpr size_t kMaxGrammars = 8;
  const Tokenizer& tok_;
  std::mutex mu_;
  std::shared_ptr<const ConstraintVocab> vocab_;
  std::list<std::pair<std::string, std::shared_ptr<const JsonGrammar>>> lru_;  // most recent first
};

}  // namespace gf
