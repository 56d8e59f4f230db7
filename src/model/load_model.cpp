// load_model: Hugging Face folders (config.json + safetensors) and GGUF files.
#include <memory>

#include "core/mapped_file.h"
#include "model/spec_from_hf_config.h"
#include "formats/safetensors.h"
#include "model/gguf_model.h"
#include "model/model.h"

namespace gf {
namespace {

class CheckpointLookup final : public TensorLookup {
 public:
  explicit CheckpointLookup(const SafetensorsCheckpoint& ck) : ck_(ck) {}
  const TensorView* find(const std::string& name) const override { return ck_.find(name); }

 private:
  const SafetensorsCheckpoint& ck_;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

Result<Model> load_hf_model(const std::string& dir, const std::string& config_file) {
  Model m;
  m.source = dir;
  m.format = "safetensors";
  GF_ASSIGN_OR_RETURN(m.spec, spec_from_hf_config_file(config_file));
  auto ck = std::make_shared<SafetensorsCheckpoint>();
  {
    auto opened = SafetensorsCheckpoint::open(dir);
    if (!opened.ok()) return opened.error();
    *ck = std::move(opened).value();
  }
  m.tensors = ck->tensors();
  m.keep_alive.push_back(ck);
  if (file_exists(dir + "/tokenizer.json")) m.tokenizer_path = dir;
  if (auto tc = read_text_file(dir + "/tokenizer_config.json"); tc.ok()) m.has_chat_template = tc->find("chat_template") != std::string::npos;
  if (file_exists(dir + "/chat_template.jinja") || file_exists(dir + "/chat_template.json")) m.has_chat_template = true;
  // Text decoder weights sit under one of these prefixes (multimodal wrappers nest them).
  std::string prefix;
  for (const char* p : {"model.", "model.language_model.", "language_model.model.", ""})
    if (ck->find(std::string(p) + "embed_tokens.weight")) {
      prefix = p;
      break;
    }
  if (!m.spec.check_supported().ok()) return m;  // inspect still works; the decoder refuses
  CheckpointLookup lookup(*ck);
  GF_RETURN_IF_ERROR(bind_weights(lookup, NamingScheme::HuggingFace, prefix, m).with_context(dir));
  GF_RETURN_IF_ERROR(check_weights(m).with_context(dir));
  return m;
}

Result<Model> load_model(const std::string& path) {
  if (path.empty()) return Err("no model given: pass -m MODEL (a Hugging Face folder or a .gguf file)");
  if (is_directory(path)) {
    if (!file_exists(path + "/config.json"))
      return Err(path + " has no config.json: a model folder needs config.json and *.safetensors");
    return load_hf_model(path, path + "/config.json");
  }
  if (!file_exists(path)) return Err("model not found: " + path);
  if (ends_with(path, ".gguf")) return load_gguf_model(path);
  if (ends_with(path, ".json")) {  // a config file: its folder holds the weights
    const size_t slash = path.find_last_of('/');
    return load_hf_model(slash == std::string::npos ? "." : path.substr(0, slash), path);
  }
  // Sniff: GGUF files start with the magic "GGUF".
  auto f = MappedFile::open(path);
  if (!f.ok()) return f.error();
  if (f->size() >= 4 && std::string(reinterpret_cast<const char*>(f->data()), 4) == "GGUF") return load_gguf_model(path);
  return Err(path + " is neither a model folder (config.json + safetensors) nor a GGUF file");
}

}  // namespace gf
