// Structured outputs: a TokenConstraint that keeps a reply a valid JSON value
// of a JsonSchema. A token may come next when all its bytes pass the automaton
// from the current state; the reply may end (a stop id) only when the value is
// complete, and must end once nothing may follow it. Which tokens pass depends
// only on the automaton's state, so a JsonGrammar (one per schema, shared by
// the requests that use it) caches one bitmask over the vocabulary per state:
// after the first reply the per-step cost is applying a cached mask.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/json_automaton.h"
#include "runtime/json_schema.h"
#include "runtime/token_constraint.h"

namespace gf {

// The vocabulary as bytes: bytes[id] is what token id adds to the text; empty
// for tokens a constrained reply never contains (control tokens).
struct ConstraintVocab {
  std::vector<std::string> bytes;
};

class JsonGrammar {
 public:
  JsonGrammar(JsonSchema schema, std::shared_ptr<const ConstraintVocab> vocab);
  const JsonSchema& schema() const { return schema_; }
  const ConstraintVocab& vocab() const { return *vocab_; }
  // Bit i set: token i's bytes may follow state `a`.
  std::shared_ptr<const std::vector<uint64_t>> allowed(const JsonAutomaton& a) const;

 private:
  std::vector<uint64_t> compute(const JsonAutomaton& a) const;
  static constexpr size_t kMaxStates = 512;  // 32 KB each for Gemma's 262k tokens

  JsonSchema schema_;
  std::shared_ptr<const ConstraintVocab> vocab_;
  std::vector<std::vector<int32_t>> by_first_byte_;  // token ids by their first byte
  mutable std::mutex mu_;
  mutable std::unordered_map<std::string, std::shared_ptr<const std::vector<uint64_t>>> cache_;
};

class JsonConstraint final : public TokenConstraint {
 public:
  // end_ids: the request's stop ids (allowed once the value is complete).
  JsonConstraint(std::shared_ptr<const JsonGrammar> g, std::vector<int32_t> end_ids)
      : g_(std::move(g)), a_(g_->schema()), end_ids_(std::move(end_ids)) {}
  std::span<const uint64_t> allowed() override;
  void accept(int32_t id) override;
  std::unique_ptr<TokenConstraint> clone() const override { return std::make_unique<JsonConstraint>(*this); }
  const JsonAutomaton& automaton() const { return a_; }

 private:
  std::shared_ptr<const JsonGrammar> g_;
  JsonAutomaton a_;
  std::vector<int32_t> end_ids_;
  std::vector<uint64_t> bits_;  // what allowed() returned last
};

}  // namespace gf
