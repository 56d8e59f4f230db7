#include "runtime/json_schema.h"

#include <set>

namespace gf {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxNodes = 4096;
constexpr int kMaxDepth = 32;
constexpr size_t kMaxChoices = 64;  // properties per object, enum values (bit sets of 64)

class Compiler {
 public:
  explicit Compiler(JsonSchema& s) : s_(s) {}

  Result<int> node(const json& j, const std::string& path, int depth) {
    if (depth > kMaxDepth) return Err(path + ": the schema nests more than " + std::to_string(kMaxDepth) + " deep");
    if (j.is_boolean() && j.get<bool>()) return 0;
    if (!j.is_object()) return Err(path + ": a schema must be an object (or true)");
    static const std::set<std::string> known = {"type", "properties", "required", "additionalProperties", "items", "minItems",
                                                "maxItems", "enum", "const", "anyOf", "title", "description", "$schema",
                                                "default", "examples"};
    for (auto it = j.begin(); it != j.end(); ++it)
      if (!known.count(it.key()))
        return Err(path + ": the keyword \"" + it.key() + "\" is not supported by structured outputs (supported: type, properties, "
                   "required, additionalProperties, items, minItems, maxItems, enum, const, anyOf)");
    if (j.contains("enum") || j.contains("const")) return literal(j, path);
    if (j.contains("anyOf")) {
      const json& a = j["anyOf"];
      // Alternatives differ in their first character: there cannot be more than a few.
      if (!a.is_array() || a.empty() || a.size() > 8) return Err(path + ".anyOf: must be an array of 1 to 8 schemas");
      std::vector<int> alts;
      for (size_t i = 0; i < a.size(); ++i) {
        GF_ASSIGN_OR_RETURN(int n, node(a[i], path + ".anyOf[" + std::to_string(i) + "]", depth + 1));
        alts.push_back(n);
      }
      return union_of(std::move(alts), path + ".anyOf");
    }
    if (!j.contains("type")) {
      if (j.contains("properties") || j.contains("required") || j.contains("additionalProperties")) return typed(j, "object", path, depth);
      if (j.contains("items") || j.contains("minItems") || j.contains("maxItems")) return typed(j, "array", path, depth);
      return 0;
    }
    const json& t = j["type"];
    if (t.is_string()) return typed(j, t.get<std::string>(), path, depth);
    if (!t.is_array() || t.empty()) return Err(path + ".type: must be a type name or a non-empty list of them");
    std::vector<int> alts;
    std::set<std::string> names;
    for (const auto& one : t) {
      if (!one.is_string()) return Err(path + ".type: must be a type name or a non-empty list of them");
      names.insert(one.get<std::string>());
    }
    if (names.count("number")) names.erase("integer");  // every integer is a number
    for (const auto& name : names) {
      GF_ASSIGN_OR_RETURN(int n, typed(j, name, path, depth));
      alts.push_back(n);
    }
    return union_of(std::move(alts), path + ".type");
  }

 private:
  int add(SchemaNode n) {
    s_.nodes.push_back(std::move(n));
    return static_cast<int>(s_.nodes.size()) - 1;
  }

  Result<int> literal(const json& j, const std::string& path) {
    SchemaNode n;
    n.kind = SchemaNode::Literal;
    if (j.contains("const")) n.literals.push_back(j["const"].dump());
    if (j.contains("enum")) {
      const json& e = j["enum"];
      if (!e.is_array() || e.empty() || e.size() > kMaxChoices)
        return Err(path + ".enum: must be an array of 1 to " + std::to_string(kMaxChoices) + " values");
      if (j.contains("const")) return Err(path + ": give one of \"enum\" and \"const\"");
      std::set<std::string> seen;
      for (const auto& v : e)
        if (seen.insert(v.dump()).second) n.literals.push_back(v.dump());
    }
    return add(std::move(n));
  }

  Result<int> union_of(std::vector<int> alts, const std::string& path) {
    if (alts.size() == 1) return alts[0];
    for (size_t a = 0; a < alts.size(); ++a)
      for (size_t b = a + 1; b < alts.size(); ++b)
        for (int c = 0; c < 256; ++c)
          if (s_.may_start(alts[a], static_cast<unsigned char>(c)) && s_.may_start(alts[b], static_cast<unsigned char>(c)))
            return Err(path + ": alternatives " + std::to_string(a) + " and " + std::to_string(b) +
                       " can both start with '" + std::string(1, static_cast<char>(c)) +
                       "'; only alternatives of different JSON types are supported");
    SchemaNode n;
    n.kind = SchemaNode::Union;
    n.alts = std::move(alts);
    return add(std::move(n));
  }

  Result<int> count(const json& j, const char* k, const std::string& path, int& out) {
    if (!j.contains(k)) return 0;
    if (!j[k].is_number_integer() || j[k].get<int64_t>() < 0 || j[k].get<int64_t>() > 100000)
      return Err(path + "." + k + ": must be an integer in [0, 100000]");
    out = static_cast<int>(j[k].get<int64_t>());
    return 0;
  }

  Result<int> typed(const json& j, const std::string& type, const std::string& path, int depth) {
    if (s_.nodes.size() > kMaxNodes) return Err(path + ": the schema is too large");
    SchemaNode n;
    if (type == "string") n.kind = SchemaNode::String;
    else if (type == "number") n.kind = SchemaNode::Number;
    else if (type == "integer") n.kind = SchemaNode::Integer;
    else if (type == "boolean") n.kind = SchemaNode::Boolean;
    else if (type == "null") n.kind = SchemaNode::Null;
    else if (type == "array") {
      n.kind = SchemaNode::Array;
      if (j.contains("items")) {
        GF_ASSIGN_OR_RETURN(n.items, node(j["items"], path + ".items", depth + 1));
      }
      GF_RETURN_IF_ERROR(count(j, "minItems", path, n.min_items).status());
      GF_RETURN_IF_ERROR(count(j, "maxItems", path, n.max_items).status());
      if (n.max_items >= 0 && n.max_items < n.min_items) return Err(path + ": maxItems is less than minItems");
    } else if (type == "object") {
      n.kind = SchemaNode::Object;
      if (auto e = object(j, path, depth, n); !e.ok()) return Err(e.message());
    } else {
      return Err(path + ".type: unknown type \"" + type + "\" (object, array, string, number, integer, boolean, null)");
    }
    return add(std::move(n));
  }

  Status object(const json& j, const std::string& path, int depth, SchemaNode& n) {
    n.values = 0;
    if (j.contains("properties")) {
      const json& p = j["properties"];
      if (!p.is_object() || p.size() > kMaxChoices)
        return Err(path + ".properties: must be an object of at most " + std::to_string(kMaxChoices) + " properties");
      for (auto it = p.begin(); it != p.end(); ++it) {
        GF_ASSIGN_OR_RETURN(int v, node(it.value(), path + ".properties." + it.key(), depth + 1));
        n.props.emplace_back(json(it.key()).dump(), v);
      }
    }
    if (j.contains("required")) {
      const json& r = j["required"];
      if (!r.is_array()) return Err(path + ".required: must be an array of property names");
      for (const auto& name : r) {
        size_t i = 0;
        while (i < n.props.size() && !(name.is_string() && n.props[i].first == name.dump())) ++i;
        if (i == n.props.size()) return Err(path + ".required: \"" + (name.is_string() ? name.get<std::string>() : name.dump()) +
                                             "\" is not in properties");
        n.required |= uint64_t{1} << i;
      }
    }
    if (j.contains("additionalProperties")) {
      const json& a = j["additionalProperties"];
      if (a.is_object() && n.props.empty()) {
        GF_ASSIGN_OR_RETURN(n.values, node(a, path + ".additionalProperties", depth + 1));
      } else if (!a.is_boolean() && !a.is_object()) {
        return Err(path + ".additionalProperties: must be true, false or a schema");
      } else if (a.is_object()) {
        return Err(path + ".additionalProperties: a schema beside \"properties\" is not supported");
      } else if (!a.get<bool>() && n.props.empty()) {
        n.kind = SchemaNode::Object;  // no properties allowed: only {}
        n.props.clear();
        n.values = -1;
      }
    }
    return Ok();
  }

  JsonSchema& s_;
};

void add_builtins(JsonSchema& s) {
  s.nodes.resize(5);
  s.nodes[0].kind = SchemaNode::Any;
  s.nodes[3].kind = SchemaNode::Boolean;
  s.nodes[4].kind = SchemaNode::Null;
  s.nodes[1].kind = SchemaNode::Object;  // any keys, any values
  s.nodes[1].values = 0;
  s.nodes[2].kind = SchemaNode::Array;  // anything
  s.nodes[2].items = 0;
}

}  // namespace

JsonSchema JsonSchema::any_object() {
  JsonSchema s;
  add_builtins(s);
  s.root = 1;
  return s;
}

Result<JsonSchema> JsonSchema::compile(const json& schema) {
  JsonSchema s;
  add_builtins(s);
  Compiler c(s);
  GF_ASSIGN_OR_RETURN(s.root, c.node(schema, "schema", 0));
  return s;
}

bool JsonSchema::may_start(int n, unsigned char c) const {
  const SchemaNode& s = nodes[static_cast<size_t>(n)];
  const bool num = c == '-' || (c >= '0' && c <= '9');
  switch (s.kind) {
    case SchemaNode::Any: return c == '{' || c == '[' || c == '"' || num || c == 't' || c == 'f' || c == 'n';
    case SchemaNode::Object: return c == '{';
    case SchemaNode::Array: return c == '[';
    case SchemaNode::String: return c == '"';
    case SchemaNode::Number:
    case SchemaNode::Integer: return num;
    case SchemaNode::Boolean: return c == 't' || c == 'f';
    case SchemaNode::Null: return c == 'n';
    case SchemaNode::Literal:
      for (const auto& l : s.literals)
        if (static_cast<unsigned char>(l[0]) == c) return true;
      return false;
    case SchemaNode::Union:
      for (int a : s.alts)
        if (may_start(a, c)) return true;
      return false;
  }
  return false;
}

}  // namespace gf
