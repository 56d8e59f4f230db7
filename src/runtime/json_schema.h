// The JSON-Schema subset structured outputs enforce, compiled to a small graph
// the JSON automaton (json_automaton.h) walks. Supported: "type" (object,
// array, string, number, integer, boolean, null, or a list of them),
// "properties", "required", "additionalProperties" (false, true or a schema
// when there are no properties), "items", "minItems", "maxItems", "enum",
// "const", "anyOf" (alternatives that start with different characters), and
// the annotations title/description/$schema/default/examples. Anything else
// ("$ref", "pattern", "format", "minimum", ...) is an error naming the
// keyword: a constraint we cannot enforce is refused, never ignored.
// Objects with "properties" get only those properties (each at most once);
// the output then validates whatever additionalProperties says.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"

namespace gf {

struct SchemaNode {
  enum Kind : uint8_t { Any, Object, Array, String, Number, Integer, Boolean, Null, Literal, Union };
  Kind kind = Any;
  // Object: the listed properties (name as JSON text with its quotes, value node);
  // without them any key is allowed and every value follows `values`.
  std::vector<std::pair<std::string, int>> props;
  uint64_t required = 0;  // bit i: props[i] is required
  int values = 0;         // free-key objects: the value node
  // Array.
  int items = 0;
  int min_items = 0, max_items = -1;  // -1: no limit
  // Literal (enum/const): the values as compact JSON text.
  std::vector<std::string> literals;
  // Union: alternatives, told apart by their first character.
  std::vector<int> alts;
};

struct JsonSchema {
  // Node 0 is Any (any JSON value), 1 an object with any keys, 2 an array of
  // anything, 3 boolean, 4 null (what Any becomes at its first byte).
  std::vector<SchemaNode> nodes;
  int root = 0;

  // The schema of `{"type": "json_object"}`: any JSON object.
  static JsonSchema any_object();
  // Compiles a JSON Schema; the error says which keyword at which path is wrong or unsupported.
  static Result<JsonSchema> compile(const nlohmann::json& schema);
  // Whether node `n`'s values may start with byte c.
  bool may_start(int n, unsigned char c) const;
};

}  // namespace gf
