#include "server/adapter_routes.h"

namespace gf {

using json = nlohmann::json;

json models_json(const std::string& base, int64_t max_model_len, const AdapterRegistry* adapters) {
  json data = json::array();
  data.push_back({{"id", base}, {"object", "model"}, {"created", 0}, {"owned_by", "gemforge"}, {"root", base}, {"parent", nullptr},
                  {"max_model_len", max_model_len}});
  if (adapters)
    for (const auto& a : adapters->list())
      data.push_back({{"id", a.name}, {"object", "model"}, {"created", 0}, {"owned_by", "gemforge"}, {"root", a.path}, {"parent", base},
                      {"max_model_len", max_model_len}});
  return {{"object", "list"}, {"data", data}};
}

namespace {

void reply(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(error_json(e), "application/json");
}

// The body's string field `key` (required), or the 400 saying what is wrong.
std::optional<ApiError> string_field(const json& j, const char* key, std::string& out) {
  if (!j.is_object()) return bad("the body must be a JSON object");
  if (!j.contains(key) || !j[key].is_string()) return bad(std::string("\"") + key + "\" (a string) is required", key);
  out = j[key].get<std::string>();
  return std::nullopt;
}

void answer(httplib::Response& res, const AdapterOutcome& o, const std::string& ok_text, const char* param) {
  switch (o.status) {
    case AdapterStatus::Ok: res.set_content(json_text(json{{"status", "ok"}, {"message", ok_text}}), "application/json"); return;
    case AdapterStatus::NotFound: return reply(res, {404, "not_found_error", o.message, param});
    case AdapterStatus::Exists: return reply(res, {400, "invalid_request_error", o.message, param});
    case AdapterStatus::InUse: return reply(res, {409, "conflict_error", o.message, param});
    case AdapterStatus::Invalid: return reply(res, bad(o.message, param));
  }
}

}  // namespace

void add_adapter_routes(httplib::Server& svr, AdapterRegistry& adapters) {
  svr.Post("/v1/load_lora_adapter", [&adapters](const httplib::Request& req, httplib::Response& res) {
    const json j = json::parse(req.body, nullptr, false);
    std::string name, path;
    if (auto e = string_field(j, "lora_name", name)) return reply(res, *e);
    if (auto e = string_field(j, "lora_path", path)) return reply(res, *e);
    answer(res, adapters.load(name, path), "adapter \"" + name + "\" loaded", "lora_path");
  });
  svr.Post("/v1/unload_lora_adapter", [&adapters](const httplib::Request& req, httplib::Response& res) {
    const json j = json::parse(req.body, nullptr, false);
    std::string name;
    if (auto e = string_field(j, "lora_name", name)) return reply(res, *e);
    answer(res, adapters.unload(name), "adapter \"" + name + "\" unloaded", "lora_name");
  });
}

std::optional<ApiError> bind_model(const std::string& model, const std::string& base, const AdapterRegistry* adapters, EngineRequest& r) {
  if (!adapters || model.empty() || model == base || adapters->bind(model, r)) return std::nullopt;
  const auto served = adapters->list();
  if (served.empty()) return std::nullopt;
  std::string names = "\"" + base + "\"";
  for (const auto& a : served) names += ", \"" + a.name + "\"";
  return ApiError{404, "not_found_error", "the model \"" + model + "\" does not exist; this server serves " + names, "model"};
}

}  // namespace gf
