// LoRA adapters over HTTP, with vLLM's names and shapes: /v1/models lists the
// base model and the adapters (each with `parent`), POST /v1/load_lora_adapter
// {"lora_name", "lora_path"} and /v1/unload_lora_adapter {"lora_name"} change
// them at run time (behind the API key like every route but /health), and a
// request's "model" picks its adapter.
#pragma once
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "runtime/adapters.h"
#include "server/openai_api.h"

namespace gf {

// /v1/models' body.
nlohmann::json models_json(const std::string& base, int64_t max_model_len, const AdapterRegistry* adapters);
// Registers the load and unload routes.
void add_adapter_routes(httplib::Server& svr, AdapterRegistry& adapters);
// Sets r's adapter from the request's "model": the base model's name (or none)
// runs the base model, an adapter's name that adapter. An unknown name is a
// 404 that lists the names served, once any adapter is loaded; before that
// the server serves one model and takes any name, as OpenAI clients send one.
std::optional<ApiError> bind_model(const std::string& model, const std::string& base, const AdapterRegistry* adapters, EngineRequest& r);

}  // namespace gf
