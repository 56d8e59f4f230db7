// A byte-level pushdown automaton for JSON text that follows a JsonSchema:
// step() accepts a byte or refuses it, so a prefix is accepted exactly when
// some completion of it is a valid JSON value of the schema (within limits
// that keep the text finite: whitespace runs, number digits, nesting).
// Structured outputs run a token's bytes through a copy of the state to
// decide whether the token may come next (json_constraint.h).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/json_schema.h"

namespace gf {

class JsonAutomaton {
 public:
  // Whitespace between tokens is one ' ', or a '\n' and an indent of up to 4
  // per nesting level and at most this many spaces or tabs (after llama.cpp's
  // JSON grammar): a sampled reply cannot drift into blank space.
  static constexpr int kMaxWhitespace = 20;
  static constexpr int kMaxDigits = 18;      // per part of a number
  static constexpr int kMaxDepth = 24;       // nested objects and arrays

  // `schema` must outlive the automaton.
  explicit JsonAutomaton(const JsonSchema& schema);
  // False (and the state is then undefined) if `c` cannot come next.
  bool step(unsigned char c);
  bool step(std::string_view bytes) {
    for (char c : bytes)
      if (!step(static_cast<unsigned char>(c))) return false;
    return true;
  }
  // The text so far is a complete value (the reply may end here).
  bool can_end() const;
  // The text so far is a complete value that nothing may follow.
  bool finished() const;
  // Identifies the state: equal keys accept the same continuations.
  std::string key() const;

 private:
  enum Type : uint8_t { Root, Value, Object, Array, Str, Num, Lit };
  struct Frame {
    Type type;
    uint8_t phase = 0;
    uint8_t flag = 0;   // Str/Lit: a key; Num: an integer
    uint8_t small = 0;  // Str: escape state; Num: digits in the current part
    int16_t node = 0;
    int16_t aux = 0;    // Object: the current property (-1 free key); Lit: bytes matched
    uint32_t count = 0; // Array: items so far (capped)
    uint64_t set = 0;   // Object: properties seen; Lit: candidates left
  };
  bool space(unsigned char c);  // whitespace where the grammar allows it
  bool value_start(unsigned char c);
  bool object_step(Frame& f, unsigned char c);
  bool array_step(Frame& f, unsigned char c);
  bool string_step(unsigned char c);
  bool number_step(unsigned char c);
  bool literal_step(unsigned char c);
  void pop();  // the top value is complete
  // Candidate i of a literal frame: a key's JSON text, an enum value, true/false/null.
  const std::string& literal(const Frame& f, int i) const;
  size_t depth_frames() const { return stack_.size(); }

  const JsonSchema* s_;
  std::vector<Frame> stack_;
  int ws_ = 0;
};

}  // namespace gf
