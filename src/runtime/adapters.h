// The LoRA adapters served beside the base model, by name (serve --lora
// name=DIR, POST /v1/load_lora_adapter). Each load gets a fresh engine id, so
// the prefix cache never mixes the KV of two adapters, not even of one name
// reloaded from another folder. A request holds a use mark on its adapter
// while it lives; an adapter in use is not unloaded (InUse: the caller
// retries once its requests have finished), so no step ever runs an adapter
// that is gone.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "model/adapter.h"
#include "runtime/engine.h"

namespace gf {

// An adapter read from disk: `view` points into `storage`.
struct LoadedAdapter {
  Adapter view;
  std::shared_ptr<const void> storage;
};
// Reads the adapter in dir for the engine's model; an error says what is wrong with it.
using AdapterLoader = std::function<Result<LoadedAdapter>(const std::string& dir)>;

enum class AdapterStatus { Ok, NotFound, Exists, InUse, Invalid };
struct AdapterOutcome {
  AdapterStatus status = AdapterStatus::Ok;
  std::string message;
};

class AdapterRegistry {
 public:
  // base_name: the base model's name, which no adapter may take.
  AdapterRegistry(Engine& engine, AdapterLoader loader, std::string base_name)
      : engine_(engine), loader_(std::move(loader)), base_name_(std::move(base_name)) {}

  AdapterOutcome load(const std::string& name, const std::string& dir);
  AdapterOutcome unload(const std::string& name);
  // Sets r to run with adapter `name` (and marks it in use while r lives); false if none has that name.
  bool bind(const std::string& name, EngineRequest& r) const;

  struct Info {
    std::string name, path;
  };
  std::vector<Info> list() const;  // by name

 private:
  struct Entry {
    std::string path;
    int id = 0;
    std::shared_ptr<const int> use;  // one reference here, one per request that runs with it
  };
  Engine& engine_;
  AdapterLoader loader_;
  std::string base_name_;
  std::mutex change_mu_;   // one load or unload at a time
  mutable std::mutex mu_;  // by_name_
  std::map<std::string, Entry> by_name_;
  int next_id_ = 1;
};

}  // namespace gf
