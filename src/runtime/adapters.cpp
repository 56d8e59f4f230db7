#include "runtime/adapters.h"

namespace gf {

Status Engine::add_adapter(int id, const Adapter& adapter) {
  std::lock_guard<std::mutex> step(step_mu_);
  return dec_.add_adapter(id, adapter);
}

void Engine::remove_adapter(int id) {
  std::lock_guard<std::mutex> step(step_mu_);
  dec_.remove_adapter(id);
}

AdapterOutcome AdapterRegistry::load(const std::string& name, const std::string& dir) {
  if (name.empty() || name.size() > 256 || name.find_first_of(" \t\r\n") != std::string::npos)
    return {AdapterStatus::Invalid, "an adapter name must be 1-256 characters without spaces"};
  if (name == base_name_) return {AdapterStatus::Invalid, "\"" + name + "\" is the base model's name"};
  if (dir.empty()) return {AdapterStatus::Invalid, "no adapter folder given"};
  std::lock_guard<std::mutex> change(change_mu_);
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (by_name_.count(name)) return {AdapterStatus::Exists, "an adapter named \"" + name + "\" is already loaded (unload it first)"};
  }
  auto a = loader_(dir);
  if (!a.ok()) return {AdapterStatus::Invalid, "cannot load adapter \"" + name + "\" from " + dir + ": " + a.message()};
  const int id = next_id_++;
  if (Status s = engine_.add_adapter(id, a->view); !s.ok())
    return {AdapterStatus::Invalid, "adapter \"" + name + "\" from " + dir + " does not fit the model: " + s.message()};
  std::lock_guard<std::mutex> lk(mu_);
  by_name_[name] = Entry{dir, id, std::make_shared<const int>(id)};
  return {};
}

AdapterOutcome AdapterRegistry::unload(const std::string& name) {
  std::lock_guard<std::mutex> change(change_mu_);
  int id = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = by_name_.find(name);
    if (it == by_name_.end()) return {AdapterStatus::NotFound, "no adapter named \"" + name + "\" is loaded"};
    // bind() takes mu_ too: no request can start using it between this check and the erase.
    const long users = it->second.use.use_count() - 1;
    if (users > 0)
      return {AdapterStatus::InUse, "adapter \"" + name + "\" has " + std::to_string(users) +
                                        " request(s) in flight; retry once they have finished"};
    id = it->second.id;
    by_name_.erase(it);
  }
  engine_.remove_adapter(id);
  return {};
}

bool AdapterRegistry::bind(const std::string& name, EngineRequest& r) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = by_name_.find(name);
  if (it == by_name_.end()) return false;
  r.adapter = it->second.id;
  r.adapter_use = it->second.use;
  return true;
}

std::vector<AdapterRegistry::Info> AdapterRegistry::list() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<Info> out;
  for (const auto& [name, e] : by_name_) out.push_back({name, e.path});
  return out;
}

}  // namespace gf
