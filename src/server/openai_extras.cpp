// The request fields beyond the basic completion: several choices, structured
// outputs, logit_bias and stop token ids. Split from openai_api.cpp so that
// each stays small; same rules: every accepted field is honoured or refused.
#include "server/openai_api.h"

namespace gf {
namespace {

using json = nlohmann::json;

constexpr int kMaxChoices = 16;
constexpr size_t kMaxBiases = 300;  // OpenAI's limit
constexpr size_t kMaxStopIds = 64;

std::optional<ApiError> response_format(const json& rf, GenParams& p) {
  const char* shape = "\"response_format\" must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or "
                      "{\"type\": \"json_schema\", \"json_schema\": {\"name\": ..., \"schema\": {...}}}";
  if (!rf.is_object() || !rf.contains("type") || !rf["type"].is_string()) return bad(shape, "response_format");
  for (auto it = rf.begin(); it != rf.end(); ++it)
    if (it.key() != "type" && it.key() != "json_schema") return bad("unknown response_format field \"" + it.key() + "\"", "response_format");
  const std::string type = rf["type"];
  if (type == "text") return std::nullopt;
  if (type == "json_object") {
    p.schema = std::make_shared<const JsonSchema>(JsonSchema::any_object());
    p.schema_key = "json_object";
    return std::nullopt;
  }
  if (type != "json_schema") return bad(shape, "response_format");
  if (!rf.contains("json_schema") || !rf["json_schema"].is_object()) return bad(shape, "response_format");
  const json& js = rf["json_schema"];
  for (auto it = js.begin(); it != js.end(); ++it) {
    const std::string& k = it.key();
    if (k != "name" && k != "schema" && k != "strict" && k != "description")
      return bad("unknown response_format.json_schema field \"" + k + "\" (name, schema, strict, description)", "response_format");
  }
  if (js.contains("name") && !js["name"].is_string()) return bad("\"response_format.json_schema.name\" must be a string", "response_format");
  if (js.contains("strict") && !js["strict"].is_null() && !js["strict"].is_boolean())
    return bad("\"response_format.json_schema.strict\" must be true or false", "response_format");
  // strict or not, the schema is enforced: it is what the reply is constrained to.
  if (!js.contains("schema")) return bad("\"response_format.json_schema.schema\" is required", "response_format");
  auto s = JsonSchema::compile(js["schema"]);
  if (!s.ok()) return bad("response_format.json_schema." + s.message(), "response_format");
  p.schema = std::make_shared<const JsonSchema>(std::move(*s));
  p.schema_key = js["schema"].dump();
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> parse_extras(const json& j, bool chat, GenParams& p) {
  auto given = [&](const char* k) { return j.contains(k) && !j[k].is_null(); };
  if (given("n")) {
    if (!j["n"].is_number_integer() || j["n"].get<int64_t>() < 1 || j["n"].get<int64_t>() > kMaxChoices)
      return bad("\"n\" must be an integer in [1, " + std::to_string(kMaxChoices) + "]", "n");
    p.n = static_cast<int>(j["n"].get<int64_t>());
    if (p.n > 1 && p.echo) return bad("\"n\" > 1 cannot be combined with \"echo\"", "n");
  }
  if (!chat && given("best_of") && !(j["best_of"].is_number_integer() && j["best_of"].get<int64_t>() == p.n))
    return bad("\"best_of\" is not supported (it would rank candidates by log-prob); use \"n\" for several choices", "best_of");
  if (given("response_format"))
    if (auto e = response_format(j["response_format"], p)) return e;
  if (given("logit_bias")) {
    const json& b = j["logit_bias"];
    const char* what = "\"logit_bias\" must map token ids (as strings) to numbers in [-100, 100]";
    if (!b.is_object() || b.size() > kMaxBiases) return bad(what, "logit_bias");
    for (auto it = b.begin(); it != b.end(); ++it) {
      size_t used = 0;
      long long id = -1;
      try {
        id = std::stoll(it.key(), &used);
      } catch (...) {
        used = 0;
      }
      if (used == 0 || used != it.key().size() || id < 0 || id > INT32_MAX || !it.value().is_number() ||
          !(it.value().get<double>() >= -100 && it.value().get<double>() <= 100))
        return bad(what, "logit_bias");
      p.sampling.logit_bias.emplace_back(static_cast<int32_t>(id), it.value().get<float>());
    }
  }
  if (given("stop_token_ids")) {
    const json& s = j["stop_token_ids"];
    if (!s.is_array() || s.size() > kMaxStopIds) return bad("\"stop_token_ids\" must be an array of token ids", "stop_token_ids");
    for (const auto& id : s) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
        return bad("\"stop_token_ids\" must be an array of token ids", "stop_token_ids");
      p.stop_ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
  }
  return std::nullopt;
}

std::optional<ApiError> check_token_ids(const GenParams& p, const Tokenizer& tok) {
  for (const auto& [id, b] : p.sampling.logit_bias)
    if (!tok.valid_id(id)) return bad("\"logit_bias\": token id " + std::to_string(id) + " is not in the vocabulary", "logit_bias");
  for (int32_t id : p.stop_ids)
    if (!tok.valid_id(id)) return bad("\"stop_token_ids\": token id " + std::to_string(id) + " is not in the vocabulary", "stop_token_ids");
  return std::nullopt;
}

}  // namespace gf
