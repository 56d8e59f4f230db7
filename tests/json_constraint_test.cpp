// Structured outputs: the JSON-Schema automaton accepts exactly the prefixes
// of valid values (judged by nlohmann::json's parser and by hand-written
// cases), refuses unsupported schemas with the keyword named, and the token
// constraint's masks over a small vocabulary allow exactly the tokens that
// keep the text valid, with the stop id only once the value is complete.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/sampling.h"
#include "runtime/json_constraint.h"

namespace gf {
namespace {

using json = nlohmann::json;

JsonSchema schema(const char* text) {
  auto s = JsonSchema::compile(json::parse(text));
  EXPECT_TRUE(s.ok()) << s.message();
  return s.ok() ? *s : JsonSchema::any_object();
}

// Whether the whole text passes and is a complete value.
bool accepts(const JsonSchema& s, const std::string& text) {
  JsonAutomaton a(s);
  return a.step(text) && a.can_end();
}
// Whether the text passes as a prefix (some completion may follow).
bool prefix_ok(const JsonSchema& s, const std::string& text) {
  JsonAutomaton a(s);
  return a.step(text);
}

TEST(JsonAutomaton, AnyObjectAcceptsValidJsonObjects) {
  const JsonSchema s = JsonSchema::any_object();
  for (const char* ok : {"{}", "{ }", "{\"a\":1}", "{\"a\": [1, -2.5e+3, 0, \"x\\n\\u00e9\", true, false, null, {\"b\": {}}]}",
                         "{\n  \"k\": \"v\",\n  \"n\": -0.0E1\n}", "{ \"a\" : [ 1 , 2 ] }", "{\"\":[[],[{}]]}"})
    EXPECT_TRUE(accepts(s, ok)) << ok;
  for (const char* bad : {"[1]", "1", "\"x\"", "{\"a\" 1}", "{,}", "{\"a\":01}", "{\"a\":1,}", "{\"a\":1}}", "{\"a\":\"x\ny\"}",
                          "{\"a\":tru}", "{\"a\":.5}", "{\"a\":1.}", "{\"a\":-}", "{\"a\":\"\\x\"}", "{a:1}", "{\"a\":[1,]}"})
    EXPECT_FALSE(accepts(s, bad)) << bad;
  EXPECT_TRUE(prefix_ok(s, "{\"a\": [1, {\"b\": \"unfinished"));
  EXPECT_FALSE(accepts(s, "{\"a\": [1"));
  JsonAutomaton a(s);
  ASSERT_TRUE(a.step(std::string("{}")));
  EXPECT_TRUE(a.finished());
  EXPECT_FALSE(a.step(' '));  // nothing after the value: the reply must end
}

// Random byte strings over JSON's alphabet: whatever the automaton accepts as
// complete, nlohmann::json parses as an object (the converse is tested above).
TEST(JsonAutomaton, WhatItAcceptsParses) {
  const JsonSchema s = JsonSchema::any_object();
  const std::string alphabet = "{}[]\":,0123456789-.eE+ tfalsenurx\\";
  std::mt19937 rng(7);
  int complete = 0;
  for (int trial = 0; trial < 200000; ++trial) {
    JsonAutomaton a(s);
    std::string text;
    for (int i = 0; i < 24; ++i) {
      // Grow only along accepted bytes, so that long valid texts come up.
      const char c = alphabet[rng() % alphabet.size()];
      JsonAutomaton t = a;
      if (!t.step(static_cast<unsigned char>(c))) continue;
      a = t;
      text += c;
      if (a.can_end()) break;
    }
    if (!a.can_end()) continue;
    ++complete;
    const json j = json::parse(text, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << text;
    EXPECT_TRUE(j.is_object()) << text;
  }
  EXPECT_GT(complete, 1000);
}

TEST(JsonAutomaton, SchemaObjectsPropertiesRequired) {
  const JsonSchema s = schema(R"({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
      "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
      "kind": {"enum": ["cat", "dog", 3]}, "ok": {"type": "boolean"}, "note": {"type": ["string", "null"]}},
      "required": ["name", "age"], "additionalProperties": false})");
  for (const char* ok : {R"({"name": "x", "age": 3})", R"({"age": -12, "name": ""})", R"({"name": "a", "age": 0, "tags": ["p"]})",
                         R"({"name": "a", "age": 1, "tags": ["p", "q"], "kind": "dog", "ok": false, "note": null})",
                         R"({"name": "a", "age": 1, "kind": 3, "note": "n"})"})
    EXPECT_TRUE(accepts(s, ok)) << ok;
  for (const char* bad : {R"({"name": "x"})", R"({"age": 3})", R"({"name": "x", "age": 3.5})", R"({"name": 1, "age": 3})",
                          R"({"name": "x", "age": 3, "extra": 1})", R"({"name": "x", "name": "y", "age": 3})",
                          R"({"name": "x", "age": 3, "tags": []})", R"({"name": "x", "age": 3, "tags": ["a", "b", "c"]})",
                          R"({"name": "x", "age": 3, "kind": "cow"})", R"({"name": "x", "age": 3, "kind": 33})",
                          R"({"name": "x", "age": 3, "ok": null})", R"({"name": "x", "age": 3, "note": 1})", R"(["x"])"})
    EXPECT_FALSE(accepts(s, bad)) << bad;
  // Once every property was given, no comma may follow.
  EXPECT_FALSE(prefix_ok(s, R"({"name": "a", "age": 1, "tags": ["p"], "kind": "dog", "ok": true, "note": null,)"));
}

TEST(JsonAutomaton, TopLevelScalarsEnumsAnyOf) {
  EXPECT_TRUE(accepts(schema(R"({"type": "integer"})"), "-120"));
  EXPECT_FALSE(accepts(schema(R"({"type": "integer"})"), "1e3"));
  EXPECT_TRUE(accepts(schema(R"({"type": "number"})"), "1e3"));
  EXPECT_TRUE(accepts(schema(R"({"enum": [1, 10]})"), "1"));
  EXPECT_TRUE(accepts(schema(R"({"enum": [1, 10]})"), "10"));
  EXPECT_FALSE(accepts(schema(R"({"enum": [1, 10]})"), "100"));
  EXPECT_TRUE(accepts(schema(R"({"const": {"a": [1]}})"), R"({"a":[1]})"));
  const JsonSchema any_of = schema(R"({"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "string"}]})");
  EXPECT_TRUE(accepts(any_of, "[1,2]"));
  EXPECT_TRUE(accepts(any_of, "\"s\""));
  EXPECT_FALSE(accepts(any_of, "1"));
  EXPECT_TRUE(accepts(schema(R"({"type": "object", "additionalProperties": {"type": "number"}})"), R"({"x": 1, "y": 2.5})"));
  EXPECT_FALSE(accepts(schema(R"({"type": "object", "additionalProperties": {"type": "number"}})"), R"({"x": "1"})"));
  EXPECT_TRUE(accepts(schema(R"({"type": "object", "additionalProperties": false})"), "{}"));
  EXPECT_FALSE(accepts(schema(R"({"type": "object", "additionalProperties": false})"), R"({"a": 1})"));
}

TEST(JsonAutomaton, LimitsKeepTheTextFinite) {
  const JsonSchema s = JsonSchema::any_object();
  EXPECT_FALSE(prefix_ok(s, "{\n" + std::string(9, ' ')));  // 4 per level, the object's and the root's
  EXPECT_TRUE(prefix_ok(s, "{\n" + std::string(8, ' ')));
  const std::string deep = "{\"a\":[[[[[[[[";  // 10 levels
  EXPECT_FALSE(prefix_ok(s, deep + "\n" + std::string(JsonAutomaton::kMaxWhitespace + 1, ' ')));
  EXPECT_TRUE(prefix_ok(s, deep + "\n" + std::string(JsonAutomaton::kMaxWhitespace, ' ')));
  EXPECT_FALSE(prefix_ok(s, "{  "));
  EXPECT_FALSE(prefix_ok(s, "{\n\n"));
  EXPECT_FALSE(prefix_ok(s, "{ \n"));
  EXPECT_TRUE(prefix_ok(s, "{\n\t\"a\": 1 , \"b\":\n  2\n}"));
  EXPECT_FALSE(prefix_ok(s, "{\"a\":" + std::string(JsonAutomaton::kMaxDigits + 1, '1')));
  EXPECT_FALSE(prefix_ok(s, "{\"a\":" + std::string(JsonAutomaton::kMaxDepth + 1, '[')));
}

TEST(JsonSchema, RefusesWhatItCannotEnforce) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"$ref": "#/$defs/x"})", "$ref"},
      {R"({"type": "string", "pattern": "a+"})", "pattern"},
      {R"({"type": "string", "format": "date"})", "format"},
      {R"({"type": "integer", "minimum": 0})", "minimum"},
      {R"({"type": "object", "properties": {"a": {}}, "required": ["b"]})", "\"b\" is not in properties"},
      {R"({"anyOf": [{"type": "string"}, {"enum": ["x"]}]})", "can both start with"},
      {R"({"type": "strin"})", "unknown type"},
      {R"({"type": "array", "minItems": 3, "maxItems": 2})", "maxItems"},
      {R"("x")", "must be an object"},
  };
  for (const auto& [text, why] : cases) {
    auto s = JsonSchema::compile(json::parse(text));
    ASSERT_FALSE(s.ok()) << text;
    EXPECT_NE(s.message().find(why), std::string::npos) << text << " -> " << s.message();
  }
}

// A toy vocabulary: the masks are the tokens whose bytes keep the text valid.
TEST(JsonConstraint, MasksFollowTheSchemaAndEndOnlyWhenComplete) {
  auto vocab = std::make_shared<ConstraintVocab>();
  vocab->bytes = {"{", "}", "\"", "name", "\":", " ", "1", "12", "", "\"}", "a\"", "x", ",", "<ctl>"};
  vocab->bytes[13].clear();  // a control token: never generated under a constraint
  const int32_t kEnd = 8;
  auto g = std::make_shared<JsonGrammar>(
      schema(R"({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"], "additionalProperties": false})"),
      vocab);
  JsonConstraint c(g, {kEnd});
  auto allowed = [&] {
    std::vector<float> logits(vocab->bytes.size(), 1.0f);
    const auto bits = c.allowed();
    apply_allowed(bits.data(), static_cast<int64_t>(bits.size()), logits.data(), static_cast<int64_t>(logits.size()));
    std::vector<std::string> out;
    for (size_t i = 0; i < logits.size(); ++i)
      if (logits[i] != -INFINITY) out.push_back(i == kEnd ? "<end>" : vocab->bytes[i]);
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(allowed(), (V{"{", " "}));
  c.accept(0);
  EXPECT_EQ(allowed(), (V{"\"", " "}));  // "}" is refused: "name" is required
  c.accept(2);
  EXPECT_EQ(allowed(), (V{"name"}));
  c.accept(3);
  EXPECT_EQ(allowed(), (V{"\"", "\":"}));  // the key's closing quote, alone or with the colon
  c.accept(4);
  EXPECT_EQ(allowed(), (V{"\"", "\":", " ", "\"}"}));  // a string value starts (and may hold ":" or "}")
  c.accept(2);
  // Inside the string: anything but a closing quote followed by more than "}".
  EXPECT_EQ(allowed(), (V{"{", "}", "\"", "name", " ", "1", "12", "\"}", "a\"", "x", ","}));
  c.accept(9);  // "} closes the string and the object
  EXPECT_EQ(allowed(), (V{"<end>"}));
  auto copy = c.clone();  // the clone is in the same state
  std::vector<float> logits(vocab->bytes.size(), 1.0f);
  const auto bits = copy->allowed();
  apply_allowed(bits.data(), static_cast<int64_t>(bits.size()), logits.data(), static_cast<int64_t>(logits.size()));
  EXPECT_EQ(logits[kEnd], 1.0f);
  EXPECT_EQ(logits[0], -INFINITY);
}

}  // namespace
}  // namespace gf
